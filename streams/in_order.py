"""Agents process each partition's records in offset order, without gaps.

Every idempotency mark in the tables (stockstream/core/orders.py, stockstream/core/stock.py) says
"everything of this source up to here is applied". That holds only if an agent never processes a
record while an earlier record of the same partition is still unprocessed. Faust does not promise
it. Seen here after a restart: Faust resumed the partitions, its fetcher delivered offsets 2..5,
the seek to the committed offset (2) came after, and the next record the fetcher delivered was 16.
Faust's consumer takes such a jump for a gap in the log (as compaction or transaction markers
leave) and counts 3..15 as processed, so the commit skipped ten records for good and the tables'
marks moved past them (issue 4: SKUs a few units off after kill -9). Faust also drops the records
it fetched for a partition it paused because the agent's buffer was full: the next ones jump.

Our agent topics (ingest, retry, movements, allocation-commands) are never compacted nor
transactional: their offsets have no holes, so a jump is always a fault of the fetch. Here an
agent processes only the record it expects next, and nothing of a partition before the first
seek to the committed offsets has said where it starts. On a jump it asks for a rewind to the
expected offset and drops what arrives before it (unacknowledged: it comes again). Records below
the expected offset were processed already by this worker, or committed by someone; they are
acknowledged without processing. After every seek to the committed offsets (rebalance, recovery)
the expected offsets restart from the committed ones.

The agent never waits for the consumer: it only notes what it needs (a rewind, a start offset),
and streams/rewinder.py does the seeking in the background with bounded waits. An agent that
awaited a seek stalled every partition it handles when the seek hung (seen around a broker
restart). streams/faust_patches.py keeps Faust from counting a gap in these topics as processed,
and `ReadOffsets` switches off Faust's last-read offsets for them: those dropped the records
fetched again after a rewind.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from enum import Enum
from time import monotonic
from typing import Any, AsyncIterator, Iterable, Mapping, Optional

from streams import metrics

log = logging.getLogger(__name__)

# A rewind that has not taken (the expected record has not come) is asked again after this long.
REWIND_AGAIN_AFTER_S = 2.0
# A partition that has records but still no start offset this long after the first one: seek to
# the committed offsets again (its seek was lost, e.g. in a rebalance during a broker restart).
RESEEK_WAITING_AFTER_S = 10.0
# A partition with records past its expected offset that has processed nothing for this long is
# rewound to its expected offset: whatever lost its records (a fetch dropped before a seek, a
# seek that never came), they are fetched again. Long enough that a busy agent working through
# its other partitions is not rewound for nothing (a needless rewind only costs re-fetching).
REWIND_STALLED_AFTER_S = 15.0
# The same, sooner, when the agent has been waiting for its next record this long: its buffer is
# empty, so the records its partition holds are not waiting there, they were lost. Seen after
# every restart that recovered a table: the record Faust fetched during the recovery and dropped
# was the last one of its partition, so no later record showed the jump, and the partition sat
# for the whole 15 s above before its first record was processed.
REWIND_IDLE_AFTER_S = 2.0

TopicPartition = tuple[str, int]


class Verdict(Enum):
    NEXT = "next"  # the expected record: process it
    DONE = "done"  # below the expected offset: processed already (or committed by another worker)
    GAP = "gap"  # past the expected offset: records in between were not delivered
    WAIT = "wait"  # no seek to the committed offsets yet: where the partition starts is not known


@dataclass
class Gap:
    expected: int
    asked_at: Optional[float] = None  # when a rewind was last asked for; None: not yet
    reported: bool = False  # counted and logged once per gap, not once per record past it
    asks: int = 0  # rewinds asked for it: more than one means the first did not take


@dataclass
class OffsetCursor:
    """The next offset each partition's agent must process, and what the agents need from the
    consumer to go on: rewinds past gaps, start offsets for waiting partitions. Pure bookkeeping:
    the agents write it, the rewinder reads it."""

    topics: frozenset[str]
    next_offsets: dict[TopicPartition, Optional[int]] = field(default_factory=dict)
    gaps: dict[TopicPartition, Gap] = field(default_factory=dict)
    waiting_since: dict[TopicPartition, float] = field(default_factory=dict)
    progressed_at: dict[TopicPartition, float] = field(default_factory=dict)
    # since when `note_stalls` has seen the partition's log hold records it has not processed:
    # a partition idle for an hour whose next record just arrived has not stalled
    pending_since: dict[TopicPartition, float] = field(default_factory=dict)
    # topic -> since when its agent has been waiting for a record; absent while it processes one
    # (and before its first: then it has waited since it started)
    awaiting_since: dict[str, float] = field(default_factory=dict)
    delivered: set[str] = field(default_factory=set)  # topics whose agent has had a record

    def guards(self, topic: str) -> bool:
        return topic in self.topics

    def reset(self, committed: Mapping[Any, Optional[int]], now: Optional[float] = None) -> None:
        """After a seek to committed offsets: what each partition must process next (None: no
        committed offset and no known log start; take what comes)."""
        now = monotonic() if now is None else now
        for tp, offset in committed.items():
            topic, partition = tp[0], tp[1]
            if topic in self.topics:
                key = (topic, partition)
                self.next_offsets[key] = offset if offset is not None and offset >= 0 else None
                self.gaps.pop(key, None)
                self.waiting_since.pop(key, None)
                self.pending_since.pop(key, None)
                self.progressed_at[key] = now

    def awaiting(self, topic: str, now: float) -> None:
        """The agent of `topic` is done with its record and waits for the next one."""
        self.awaiting_since[topic] = now

    def idle(self, topic: str, now: float) -> bool:
        if topic not in self.delivered:
            return True
        since = self.awaiting_since.get(topic)
        return since is not None and now - since >= REWIND_IDLE_AFTER_S

    def admit(self, tp: TopicPartition, offset: int, now: float) -> Verdict:
        self.delivered.add(tp[0])
        self.awaiting_since.pop(tp[0], None)
        if tp not in self.next_offsets:
            self.waiting_since.setdefault(tp, now)
            return Verdict.WAIT
        expected = self.next_offsets[tp]
        if expected is None or offset == expected:
            return Verdict.NEXT
        if offset < expected:
            return Verdict.DONE
        gap = self.gaps.get(tp)
        if gap is None or gap.expected != expected:
            self.gaps[tp] = Gap(expected)
        return Verdict.GAP

    def processed(self, tp: TopicPartition, offset: int, now: float) -> None:
        self.next_offsets[tp] = offset + 1
        self.progressed_at[tp] = now
        self.gaps.pop(tp, None)

    def expected(self, tp: TopicPartition) -> Optional[int]:
        return self.next_offsets.get(tp)

    def rewinds_due(self, now: float, assigned: Iterable[Any]) -> dict[TopicPartition, int]:
        """The partitions to rewind now, to their expected offsets: new gaps, and gaps whose
        rewind has not taken for a while. Gaps of partitions no longer assigned are forgotten
        (the next assignment seeks to the committed offsets and resets them)."""
        self._forget_unassigned(assigned)
        due = {}
        for tp, gap in self.gaps.items():
            if gap.asked_at is None or now - gap.asked_at >= REWIND_AGAIN_AFTER_S:
                gap.asked_at = now
                gap.asks += 1
                due[tp] = gap.expected
        return due

    def repeated(self, due: Mapping[TopicPartition, int]) -> list[TopicPartition]:
        """Of the rewinds `due`, those asked before: their first rewind did not take."""
        return [tp for tp in due if tp in self.gaps and self.gaps[tp].asks > 1]

    def skip_expired(self, tp: TopicPartition, log_start: int) -> int:
        """The partition's log now starts past its expected offset: retention deleted records no
        worker processed. They cannot be fetched again, and rewinding to them would loop for good
        (the fetcher resets to the log start, which is past the expected offset: a gap again).
        Go on from the log start; returns how many offsets were lost (0: nothing expired)."""
        expected = self.next_offsets.get(tp)
        if expected is None or log_start <= expected:
            return 0
        self.next_offsets[tp] = log_start
        self.gaps.pop(tp, None)
        return log_start - expected

    def note_stalls(self, now: float, highwaters: Mapping[TopicPartition, Optional[int]]) -> list[TopicPartition]:
        """Partitions whose log holds their expected offset but which processed nothing for a
        while become gaps (rewound by `rewinds_due`); each is looked at again after another wait.
        The while is short when the partition's agent is idle, long when it is busy (its
        buffer may hold the records)."""
        stalled = []
        for tp, highwater in highwaters.items():
            expected = self.next_offsets.get(tp)
            if expected is None or highwater is None or highwater <= expected or tp in self.gaps:
                self.pending_since.pop(tp, None)
                continue
            # Waiting counts from the later of its last progress and its records' first sighting:
            # records that came after a quiet spell have not waited for the whole spell. (Seen:
            # every burst after 2 s of quiet rewound all partitions of the stock agent at once.)
            waiting_since = max(self.progressed_at.get(tp, now), self.pending_since.setdefault(tp, now))
            wait = REWIND_IDLE_AFTER_S if self.idle(tp[0], now) else REWIND_STALLED_AFTER_S
            if now - waiting_since >= wait:
                self.progressed_at[tp] = now
                self.gaps[tp] = Gap(expected, reported=True)
                stalled.append(tp)
        return stalled

    def reseek_due(self, now: float) -> list[TopicPartition]:
        """Partitions that have waited too long for a start offset (each is reported again after
        another wait: the seek may fail too)."""
        late = [tp for tp, since in self.waiting_since.items() if now - since >= RESEEK_WAITING_AFTER_S]
        for tp in late:
            self.waiting_since[tp] = now
        return late

    def _forget_unassigned(self, assigned: Iterable[Any]) -> None:
        assigned_tps = {(tp[0], tp[1]) for tp in assigned}
        for table in (self.gaps, self.waiting_since, self.pending_since):
            for tp in [tp for tp in table if tp not in assigned_tps]:
                del table[tp]


_CURSOR = "_stockstream_offset_cursor"


class ReadOffsets(defaultdict):
    """Faust's last-read offset per partition, except that guarded topics have none. Faust's fetch
    loop drops a record below the last-read offset and counts a jump past it as a gap; after a
    seek, a fetched batch it is still handing out moves that offset past the seek, and the records
    fetched again from the seek are dropped (seen here: every rewind undone). For guarded topics
    every fetched record goes to the agent, which orders them itself."""

    def __init__(self, topics: frozenset[str], offsets: Mapping[Any, Optional[int]]) -> None:
        super().__init__(lambda: None, offsets)
        self.guarded = topics

    def __getitem__(self, tp: Any) -> Optional[int]:
        if tp[0] in self.guarded:
            return None
        return super().__getitem__(tp)


def guard_topics(consumer: Any, topics: Iterable[str]) -> OffsetCursor:
    """Attach a cursor over `topics` to a Faust consumer (once per app), and take those topics
    out of Faust's own last-read bookkeeping."""
    cursor = consumer.__dict__.get(_CURSOR)
    if cursor is None:
        cursor = consumer.__dict__[_CURSOR] = OffsetCursor(frozenset(topics))
        consumer._read_offset = ReadOffsets(cursor.topics, consumer._read_offset)
    return cursor


def cursor_of(consumer: Any) -> Optional[OffsetCursor]:
    return consumer.__dict__.get(_CURSOR)


async def in_offset_order(consumer: Any, stream: Any, agent: str) -> AsyncIterator[Any]:
    """The events of `stream` that are next in their partition, acknowledged once processed (the
    body of the caller's loop has run). `stream` must not acknowledge by itself (`noack()`)."""
    cursor = cursor_of(consumer)
    async for event in stream.events():
        message = event.message
        tp = (message.topic, message.partition)
        if cursor is None or not cursor.guards(message.topic):
            yield event
            event.ack()
            continue
        verdict = cursor.admit(tp, message.offset, monotonic())
        if verdict is Verdict.NEXT:
            yield event
            cursor.processed(tp, message.offset, monotonic())
            event.ack()
        elif verdict is Verdict.DONE:
            event.ack()
        else:
            # Not acknowledged and not processed: it is read again after the rewind or seek.
            # Faust would wait for its acknowledgement at shutdown; it is not in flight any more.
            consumer._unacked_messages.discard(message)
            if verdict is Verdict.GAP:
                gap = cursor.gaps[tp]
                if not gap.reported:
                    gap.reported = True
                    metrics.INPUT_GAPS.labels(agent).inc()
                    log.warning(
                        "%s: %s/%d delivered offset %d while %d is next: rewinding (nothing is skipped)",
                        agent, message.topic, message.partition, message.offset, gap.expected,
                    )
        cursor.awaiting(message.topic, monotonic())
