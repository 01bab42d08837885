"""Agents process each partition's records in offset order, without gaps.

Every idempotency mark in the tables (stockstream/core/orders.py, stockstream/core/stock.py) says
"everything of this source up to here is applied". That holds only if an agent never processes a
record while an earlier record of the same partition is still unprocessed. Faust does not promise
it. Seen here after a restart: Faust resumed the partitions, its fetcher delivered offsets 2..5,
the seek to the committed offset (2) came after, and the next record the fetcher delivered was 16.
Faust's consumer takes such a jump for a gap in the log (as compaction or transaction markers
leave) and counts 3..15 as processed, so the commit skipped ten records for good and the tables'
marks moved past them (issue 4: SKUs a few units off after kill -9).

Our agent topics (ingest, retry, movements, allocation-commands) are never compacted nor
transactional: their offsets have no holes, so a jump is always a fault of the fetch. Here an
agent processes only the record it expects next, and nothing of a partition before the first
seek to the committed offsets has said where it starts. On a jump it rewinds the consumer to the
expected offset and drops what arrives before it (unacknowledged: it comes again). Records
below the expected offset were processed already by this worker, or committed by someone; they
are acknowledged without processing. Faust's own last-read offsets are switched off for these
topics (`ReadOffsets`): they dropped the records fetched again after a rewind. After every seek to the committed offsets (rebalance,
recovery) the expected offsets restart from the committed ones. streams/faust_patches.py keeps
Faust from counting a gap in these topics as processed.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, AsyncIterator, Iterable, Mapping, Optional

from streams import metrics

log = logging.getLogger(__name__)

# A rewind that does not seem to take (records past the gap keep coming) is repeated this often.
REWIND_AGAIN_AFTER_S = 2.0
# A partition still waiting for its start this long after its first record: seek all partitions
# to their committed offsets again (a safety valve; a fresh-clone CI run stalled once after a
# SIGKILL with this fix, cause not found yet).
RESEEK_WAITING_AFTER_S = 10.0

TopicPartition = tuple[str, int]


class Verdict(Enum):
    NEXT = "next"  # the expected record: process it
    DONE = "done"  # below the expected offset: processed already (or committed by another worker)
    GAP = "gap"  # past the expected offset: records in between were not delivered
    WAIT = "wait"  # no seek to the committed offsets yet: where the partition starts is not known


@dataclass
class OffsetCursor:
    """The next offset each partition's agent must process. A partition is processed only once a
    seek to the committed offsets has said where it starts (None there: take what comes)."""

    topics: frozenset[str]
    next_offsets: dict[TopicPartition, Optional[int]] = field(default_factory=dict)
    waiting_since: Optional[float] = None
    rewound_at: dict[TopicPartition, tuple[int, float]] = field(default_factory=dict)

    def guards(self, topic: str) -> bool:
        return topic in self.topics

    def reset(self, committed: Mapping[Any, Optional[int]]) -> None:
        """After a seek to committed offsets: what each partition must process next."""
        for tp, offset in committed.items():
            topic, partition = tp[0], tp[1]
            if topic in self.topics:
                self.next_offsets[(topic, partition)] = offset if offset is not None and offset >= 0 else None
                self.rewound_at.pop((topic, partition), None)
        self.waiting_since = None

    def admit(self, tp: TopicPartition, offset: int) -> Verdict:
        if tp not in self.next_offsets:
            return Verdict.WAIT
        expected = self.next_offsets[tp]
        if expected is None or offset == expected:
            return Verdict.NEXT
        return Verdict.DONE if offset < expected else Verdict.GAP

    def processed(self, tp: TopicPartition, offset: int) -> None:
        self.next_offsets[tp] = offset + 1
        self.rewound_at.pop(tp, None)

    def expected(self, tp: TopicPartition) -> Optional[int]:
        return self.next_offsets.get(tp)

    def should_reseek(self, now: float) -> bool:
        """Called for a record that must wait: True once it has waited too long (then again later)."""
        if self.waiting_since is None:
            self.waiting_since = now
            return False
        if now - self.waiting_since < RESEEK_WAITING_AFTER_S:
            return False
        self.waiting_since = now
        return True

    def should_rewind(self, tp: TopicPartition, now: float) -> bool:
        """True once per gap, and again if the rewind has not taken after a while."""
        expected = self.next_offsets[tp]
        last = self.rewound_at.get(tp)
        if last is not None and last[0] == expected and now - last[1] < REWIND_AGAIN_AFTER_S:
            return False
        self.rewound_at[tp] = (expected, now)
        return True


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
        verdict = cursor.admit(tp, message.offset) if cursor is not None and cursor.guards(message.topic) else Verdict.NEXT
        if verdict is Verdict.NEXT:
            yield event
            if cursor is not None and cursor.guards(message.topic):
                cursor.processed(tp, message.offset)
            event.ack()
        elif verdict is Verdict.DONE:
            event.ack()
        else:
            # Not acknowledged and not processed: it is read again after the seek or rewind. Faust
            # would wait for its acknowledgement at shutdown; it is not in flight any more.
            consumer._unacked_messages.discard(message)
            if verdict is Verdict.WAIT and cursor.should_reseek(time.monotonic()):
                log.warning("%s: %s/%d still has no start offset: seeking to the committed offsets again", agent, message.topic, message.partition)
                await consumer.perform_seek()
            if verdict is Verdict.GAP and cursor.should_rewind(tp, time.monotonic()):
                expected = cursor.expected(tp)
                metrics.INPUT_GAPS.labels(agent).inc()
                log.warning(
                    "%s: %s/%d delivered offset %d while %d is next: rewinding to %d (nothing is skipped)",
                    agent, message.topic, message.partition, message.offset, expected, expected,
                )
                # In the consumer's own thread (a plain seek from here would race its fetcher).
                await consumer.seek_wait({message.tp: expected})
