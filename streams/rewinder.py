"""Moves the consumer where the agents of streams/in_order.py need it, without making them wait.

An agent that meets a gap only notes it in the offset cursor and goes on with its other
partitions. Every quarter second this service asks Faust's consumer thread to seek each gapped
partition back to its expected offset, and asks again while the expected record has not come.
A partition that has records but no start offset after a while gets a seek to the committed
offsets, which resets its start. A partition whose log holds records past what its agent
processed, and which has made no progress for a while, is rewound too: whatever lost its
records, they are fetched again. A rewind that did not take is checked against the log start:
records deleted by retention before any worker processed them cannot come again, so the
partition goes on from its log start, and the loss is logged and counted (an SRE must know:
those orders and movements are missing from the numbers). Each request is bounded: a seek that hangs (around a broker
restart the consumer's calls can wait for a long time) is abandoned and asked again later.
"""

from __future__ import annotations

import asyncio
import logging
from time import monotonic
from typing import Any, Awaitable, Callable, Iterable, Mapping, Optional

from streams import metrics
from streams.in_order import OffsetCursor, TopicPartition

log = logging.getLogger(__name__)

INTERVAL_S = 0.25
SEEK_TIMEOUT_S = 5.0
RESEEK_TIMEOUT_S = 30.0


class Rewinder:
    """`seek(tp, offset)` moves one partition's fetch position (in the consumer's own thread),
    `seek_to_committed()` moves every assigned partition to its committed offset and resets the
    cursor, `assignment()` is what this worker holds now."""

    def __init__(
        self,
        cursor: OffsetCursor,
        seek: Callable[[TopicPartition, int], Awaitable[None]],
        seek_to_committed: Callable[[], Awaitable[Any]],
        assignment: Callable[[], Iterable[Any]],
        highwater: Callable[[Any], Optional[int]],
        log_starts: Optional[Callable[[list[TopicPartition]], Awaitable[Mapping[Any, int]]]] = None,
    ) -> None:
        self.cursor = cursor
        self._seek = seek
        self._seek_to_committed = seek_to_committed
        self._assignment = assignment
        self._highwater = highwater
        self._log_starts = log_starts

    async def run_once(self, now: Optional[float] = None) -> None:
        now = monotonic() if now is None else now
        try:
            assigned = list(self._assignment())
        except Exception:  # no consumer yet, or it is being rebuilt
            return
        stalled = self.cursor.note_stalls(now, self._highwaters(assigned))
        if stalled:
            log.warning("no progress on %s although their logs hold more: rewinding them", sorted(stalled))
            metrics.INPUT_REWINDS.labels("stalled").inc(len(stalled))
        due = self.cursor.rewinds_due(now, assigned)
        repeated = self.cursor.repeated(due)
        if repeated:
            for tp in await self._skip_expired(repeated):
                del due[tp]
        if due:
            metrics.INPUT_REWINDS.labels("gap").inc(len(due) - len(set(due) & set(stalled)))
            await asyncio.gather(*(self._rewind(tp, offset) for tp, offset in due.items()))
        late = self.cursor.reseek_due(now)
        if late:
            log.warning("no start offset yet for %s: seeking to the committed offsets again", sorted(late))
            metrics.INPUT_REWINDS.labels("start").inc()
            await self._bounded(self._seek_to_committed(), RESEEK_TIMEOUT_S, "seek to the committed offsets")

    def _highwaters(self, assigned: list[Any]) -> dict[TopicPartition, Optional[int]]:
        highwaters = {}
        for tp in assigned:
            if self.cursor.guards(tp[0]):
                try:
                    highwaters[(tp[0], tp[1])] = self._highwater(tp)
                except Exception:  # not fetched yet
                    continue
        return highwaters

    async def _skip_expired(self, tps: list[TopicPartition]) -> list[TopicPartition]:
        if self._log_starts is None:
            return []
        starts = await self._bounded(self._log_starts(tps), SEEK_TIMEOUT_S, f"log start lookup of {sorted(tps)}")
        skipped = []
        for tp, log_start in (starts or {}).items():
            key = (tp[0], tp[1])
            expired = self.cursor.skip_expired(key, log_start)
            if expired:
                log.error(
                    "%s/%d: offsets %d..%d were deleted by retention before they were processed; they are lost, "
                    "going on from %d (the consumer lag exceeded the topic's retention)",
                    key[0], key[1], log_start - expired, log_start - 1, log_start,
                )
                metrics.INPUT_EXPIRED.labels(key[0]).inc(expired)
                skipped.append(key)
        return skipped

    async def _rewind(self, tp: TopicPartition, offset: int) -> None:
        await self._bounded(self._seek(tp, offset), SEEK_TIMEOUT_S, f"rewind of {tp[0]}/{tp[1]} to {offset}")

    @staticmethod
    async def _bounded(call: Awaitable[Any], timeout_s: float, what: str) -> Any:
        # A failed or abandoned request is asked again by the next rounds: the cursor keeps the
        # gap (or the waiting partition) until the expected record is processed.
        try:
            return await asyncio.wait_for(call, timeout_s)
        except asyncio.TimeoutError:
            log.warning("%s did not finish in %.0f s; asking again later", what, timeout_s)
        except Exception as exc:  # e.g. the partition was revoked meanwhile
            log.warning("%s failed (%s: %s); asking again later", what, type(exc).__name__, exc)
        return None


def faust_rewinder(consumer: Any, cursor: OffsetCursor) -> Rewinder:
    """A rewinder over a Faust (aiokafka driver) consumer."""
    from faust.types import TP

    async def seek(tp: TopicPartition, offset: int) -> None:
        # In the consumer thread, like Faust's own seeks: the fetcher lives on that loop. Not
        # Faust's `seek_wait`, which then also waits for the position and can hang.
        thread = consumer._thread
        await thread.call_thread(thread.seek, TP(tp[0], tp[1]), offset)

    async def log_starts(tps: list[TopicPartition]) -> Mapping[Any, int]:
        return await consumer.earliest_offsets(*(TP(tp[0], tp[1]) for tp in tps))

    return Rewinder(cursor, seek, consumer.perform_seek, consumer.assignment, consumer.highwater, log_starts)
