"""Agents process each partition in offset order without gaps (streams/in_order.py), whatever the
fetcher hands them: jumps rewind, records before the first seek wait, old records are skipped."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from hypothesis import given, settings, strategies as st

from streams.in_order import REWIND_AGAIN_AFTER_S, OffsetCursor, ReadOffsets, Verdict, guard_topics, in_offset_order

TOPIC = "t.movements"


def test_a_partition_waits_until_a_seek_says_where_it_starts():
    cursor = OffsetCursor(frozenset({TOPIC}))
    assert cursor.admit((TOPIC, 0), 67) is Verdict.WAIT
    cursor.reset({(TOPIC, 0): 2})
    assert cursor.admit((TOPIC, 0), 2) is Verdict.NEXT
    assert cursor.admit((TOPIC, 0), 16) is Verdict.GAP
    assert cursor.admit((TOPIC, 0), 1) is Verdict.DONE


def test_no_committed_offset_takes_what_comes():
    cursor = OffsetCursor(frozenset({TOPIC}))
    cursor.reset({(TOPIC, 0): None, (TOPIC, 1): -1001})
    assert cursor.admit((TOPIC, 0), 5) is Verdict.NEXT
    assert cursor.admit((TOPIC, 1), 0) is Verdict.NEXT


def test_other_topics_are_left_alone_by_reset():
    cursor = OffsetCursor(frozenset({TOPIC}))
    cursor.reset({("t.stock-changelog", 0): 4})
    assert ("t.stock-changelog", 0) not in cursor.next_offsets
    assert not cursor.guards("t.stock-changelog")


def test_a_partition_waiting_too_long_asks_for_a_seek_to_the_committed_offsets():
    cursor = OffsetCursor(frozenset({TOPIC}))
    assert not cursor.should_reseek(now=100.0)
    assert not cursor.should_reseek(now=105.0)
    assert cursor.should_reseek(now=111.0)
    cursor.reset({(TOPIC, 0): 3})
    assert cursor.waiting_since is None


def test_a_rewind_is_asked_once_per_gap_and_again_if_it_did_not_take():
    cursor = OffsetCursor(frozenset({TOPIC}))
    cursor.reset({(TOPIC, 0): 6})
    assert cursor.should_rewind((TOPIC, 0), now=100.0)
    assert not cursor.should_rewind((TOPIC, 0), now=100.5)
    assert cursor.should_rewind((TOPIC, 0), now=100.0 + REWIND_AGAIN_AFTER_S + 0.1)


def test_faust_keeps_no_last_read_offset_for_guarded_topics():
    # Faust drops records below it and counts jumps past it as gaps: for guarded topics, the
    # agent's cursor does that job instead.
    offsets = ReadOffsets(frozenset({TOPIC}), {("t.stock-changelog", 0): 7})
    offsets[(TOPIC, 0)] = 90
    assert offsets[(TOPIC, 0)] is None
    assert offsets[("t.stock-changelog", 0)] == 7
    assert offsets[("t.stock-changelog", 1)] is None


# --- the agent loop over a fake consumer and stream ------------------------------------------


@dataclass(eq=False)
class FakeMessage:
    topic: str
    partition: int
    offset: int
    acked: bool = False

    @property
    def tp(self):
        return (self.topic, self.partition)


@dataclass
class FakeEvent:
    message: FakeMessage

    def ack(self) -> None:
        self.message.acked = True


@dataclass
class FakeLog:
    """A partition's log behind a fetcher that can misbehave: it delivers `script` first (any
    order, gaps, repeats), then everything from wherever the last seek put it."""

    end: int
    script: list[int]
    position: int = 0
    seeks: list[int] = field(default_factory=list)


class FakeConsumer:
    def __init__(self, log: FakeLog) -> None:
        self.log = log
        self._unacked_messages: set = set()
        self._read_offset: dict = {}

    async def seek_wait(self, partitions) -> None:
        ((_tp, offset),) = partitions.items()
        self.log.seeks.append(offset)
        self.log.position = offset
        self.log.script = []


class FakeStream:
    def __init__(self, log: FakeLog) -> None:
        self.log = log

    async def events(self):
        while self.log.script or self.log.position < self.log.end:
            if self.log.script:
                offset = self.log.script.pop(0)
            else:
                offset = self.log.position
                self.log.position += 1
            yield FakeEvent(FakeMessage(TOPIC, 0, offset))


def run_agent(log: FakeLog, committed: int) -> tuple[list[int], list[FakeMessage]]:
    consumer = FakeConsumer(log)
    cursor = guard_topics(consumer, [TOPIC])
    cursor.reset({(TOPIC, 0): committed})
    processed: list[int] = []
    seen: list[FakeMessage] = []

    async def agent() -> None:
        async for event in in_offset_order(consumer, FakeStream(log), "test"):
            seen.append(event.message)
            processed.append(event.message.offset)

    asyncio.run(agent())
    return processed, seen


def test_a_jump_after_a_seek_rewinds_and_nothing_is_skipped():
    # Seen on the real broker: 2..5, then 16 while 6 was next.
    log = FakeLog(end=20, script=[2, 3, 4, 5, 16, 17, 18])
    processed, seen = run_agent(log, committed=2)
    assert processed == list(range(2, 20))
    assert log.seeks == [6]
    assert all(message.acked for message in seen)


@settings(max_examples=300, deadline=None)
@given(
    committed=st.integers(0, 30),
    script=st.lists(st.integers(0, 40), max_size=60),
)
def test_whatever_the_fetcher_delivers_each_offset_is_processed_once_in_order(committed, script):
    log = FakeLog(end=40, script=list(script))
    processed, _seen = run_agent(log, committed=committed)
    assert processed == list(range(committed, 40))
