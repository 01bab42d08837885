"""A fix to faust-streaming 0.15.3 that the exactness of the tables depends on.

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
``flush`` returns only when none is left. A message that failed to send makes the next flush
raise, so the offset is not committed and the worker stops (its successor re-processes the input)
instead of going on without the write.
"""

from __future__ import annotations

import asyncio
from typing import Any

from faust.transport.producer import ProducerBuffer

_UNACKED = "_stockstream_unacked"
_FAILED = "_stockstream_send_failures"
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
    """Returns once every future in `pending` is done; raises if any of them failed."""
    while pending:
        await asyncio.wait(list(pending), timeout=poll_s)
    if failed:
        raise RuntimeError(f"{len(failed)} produced record(s) were not acknowledged, first: {failed[0]!r}")


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

    ProducerBuffer.put = put  # type: ignore[method-assign]
    ProducerBuffer.flush = flush  # type: ignore[method-assign]
    _installed = True
