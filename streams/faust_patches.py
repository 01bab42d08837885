"""Fixes to faust-streaming 0.15.3 that the exactness of the tables depends on.

1. Changelog records acknowledged before an offset commit (below).
2. No gap in an agent topic counted as processed (`_add_gap`, with streams/in_order.py).

Changelog before commit.

Faust commits a consumer offset only after ``producer.flush()``, so that the changelog records of
the table writes made by the events before that offset are in Kafka first. But its
``ProducerBuffer.flush`` waits at most 0.1 s for *one* message to leave the buffer and then
returns, whatever is still queued; and a message leaves the queue before aiokafka has it. Under
load the offset is then committed while changelog records are still in this process. A worker
killed at that moment keeps those writes in its local RocksDB, but whoever recovers the partition
from the changelog (the worker taking it over, or a worker that lost its disk) never sees them,
and the input that made them is never processed again: the table is stale for good. Seen here as
a two-worker takeover ending a few units off on many SKUs.

The fix: the buffer remembers every message put into it until the broker acknowledged it, and
``flush`` returns only when none of those put before it began is left. A message that failed to send makes the next flush
raise, so the offset is not committed and the worker stops (its successor re-processes the input)
instead of going on without the write. Producers of the app's own (streams/outputs.py) are
flushed by the same call: `flush_with(app, flush)`.
"""

from __future__ import annotations

import asyncio
from typing import Any, Awaitable, Callable

from faust.transport.consumer import Consumer
from faust.transport.producer import ProducerBuffer

from streams.in_order import cursor_of

_UNACKED = "_stockstream_unacked"
_FAILED = "_stockstream_send_failures"
_ALSO_FLUSH = "_stockstream_also_flush"
_installed = False


def _unacked(buffer: Any) -> set:
    pending = buffer.__dict__.get(_UNACKED)
    if pending is None:
        pending = buffer.__dict__[_UNACKED] = set()
    return pending


def _failures(buffer: Any) -> list:
    failed = buffer.__dict__.get(_FAILED)
    if failed is None:
        failed = buffer.__dict__[_FAILED] = []
    return failed


def track(pending: set, failed: list, fut: asyncio.Future) -> None:
    """Keep `fut` in `pending` until it is done; remember it in `failed` if it failed."""

    def done(f: asyncio.Future) -> None:
        pending.discard(f)
        if not f.cancelled() and f.exception() is not None:
            failed.append(f.exception())

    pending.add(fut)
    fut.add_done_callback(done)


async def wait_acknowledged(pending: set, failed: list, poll_s: float = 0.5) -> None:
    """Returns once every future in `pending` at the call is done; raises if any failed. Futures
    added meanwhile are the next flush's: waiting for an empty set could last as long as the
    agents keep sending, and the offset commit waiting on it with it."""
    waiting = [fut for fut in pending if not fut.done()]
    while waiting:
        _, not_done = await asyncio.wait(waiting, timeout=poll_s)
        waiting = list(not_done)
    if failed:
        raise RuntimeError(f"{len(failed)} produced record(s) were not acknowledged, first: {failed[0]!r}")


def flush_with(app: Any, also_flush: Callable[[], Awaitable[None]]) -> None:
    """Make every flush of `app`'s producer (Faust flushes before each offset commit) also await
    `also_flush`."""
    app.producer.buffer.__dict__.setdefault(_ALSO_FLUSH, []).append(also_flush)


def install() -> None:
    global _installed
    if _installed:
        return
    original_put = ProducerBuffer.put
    original_flush = ProducerBuffer.flush

    def put(self: ProducerBuffer, fut: Any) -> None:
        track(_unacked(self), _failures(self), fut)
        original_put(self, fut)

    async def flush(self: ProducerBuffer) -> None:
        await original_flush(self)
        await wait_acknowledged(_unacked(self), _failures(self))
        for also_flush in self.__dict__.get(_ALSO_FLUSH, ()):
            await also_flush()

    ProducerBuffer.put = put  # type: ignore[method-assign]
    ProducerBuffer.flush = flush  # type: ignore[method-assign]
    _install_offset_order()
    _installed = True


def _install_offset_order() -> None:
    """Faust's consumer counts a jump in a partition's offsets as a gap in the log (compaction,
    transaction markers) and the skipped offsets as processed. In the topics streams/in_order.py
    guards, a jump means records were not delivered: they must stay unprocessed, so the commit
    stops before them and the agent rewinds to fetch them. And every seek to the committed
    offsets (after a rebalance or recovery) restarts the agents' expected offsets from there."""
    from faust.transport.drivers.aiokafka import Consumer as AIOKafkaConsumer

    original_add_gap = Consumer._add_gap
    original_seek_to_committed = AIOKafkaConsumer.seek_to_committed

    async def _add_gap(self: Consumer, tp: Any, offset_from: int, offset_to: int) -> None:
        cursor = cursor_of(self)
        if cursor is not None and cursor.guards(tp.topic):
            return
        await original_add_gap(self, tp, offset_from, offset_to)

    async def seek_to_committed(self: Any) -> Any:
        committed = await original_seek_to_committed(self)
        cursor = cursor_of(self)
        if cursor is not None and committed:
            # aiokafka seeks only to committed offsets above 0. A partition with none (or 0)
            # starts at its log start (auto_offset_reset=earliest): seek there too, or records
            # fetched before this seek and dropped as too early are never fetched again (seen
            # here: a partition that waited for its start, then sat with lag for good).
            unseeked = [tp for tp, offset in committed.items() if cursor.guards(tp.topic) and not (offset and offset > 0)]
            starts = await self.earliest_offsets(*unseeked) if unseeked else {}
            thread = self._thread
            for tp, start in starts.items():
                await thread.call_thread(thread.seek, tp, start)
            cursor.reset({**committed, **starts})
        return committed

    Consumer._add_gap = _add_gap  # type: ignore[method-assign]
    AIOKafkaConsumer.seek_to_committed = seek_to_committed  # type: ignore[method-assign]
