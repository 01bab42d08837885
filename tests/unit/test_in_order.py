"""Agents process each partition in offset order without gaps (streams/in_order.py), whatever the
fetcher hands them: jumps rewind, records before the first seek wait, old records are skipped."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from hypothesis import given, settings, strategies as st

from streams.in_order import (
    REWIND_AGAIN_AFTER_S,
    REWIND_IDLE_AFTER_S,
    RESEEK_WAITING_AFTER_S,
    REWIND_STALLED_AFTER_S,
    OffsetCursor,
    ReadOffsets,
    Verdict,
    guard_topics,
    in_offset_order,
)
from streams import rewinder as rewinder_module
from streams.rewinder import Rewinder

TOPIC = "t.movements"


def test_a_partition_waits_until_a_seek_says_where_it_starts():
    cursor = OffsetCursor(frozenset({TOPIC}))
    assert cursor.admit((TOPIC, 0), 67, now=1.0) is Verdict.WAIT
    cursor.reset({(TOPIC, 0): 2})
    assert cursor.admit((TOPIC, 0), 2, now=2.0) is Verdict.NEXT
    assert cursor.admit((TOPIC, 0), 16, now=2.0) is Verdict.GAP
    assert cursor.admit((TOPIC, 0), 1, now=2.0) is Verdict.DONE


def test_no_committed_offset_takes_what_comes():
    cursor = OffsetCursor(frozenset({TOPIC}))
    cursor.reset({(TOPIC, 0): None, (TOPIC, 1): -1001})
    assert cursor.admit((TOPIC, 0), 5, now=1.0) is Verdict.NEXT
    assert cursor.admit((TOPIC, 1), 0, now=1.0) is Verdict.NEXT


def test_other_topics_are_left_alone_by_reset():
    cursor = OffsetCursor(frozenset({TOPIC}))
    cursor.reset({("t.stock-changelog", 0): 4})
    assert ("t.stock-changelog", 0) not in cursor.next_offsets
    assert not cursor.guards("t.stock-changelog")


def test_a_partition_waiting_too_long_asks_for_a_seek_to_the_committed_offsets():
    cursor = OffsetCursor(frozenset({TOPIC}))
    cursor.admit((TOPIC, 0), 5, now=100.0)
    assert cursor.reseek_due(now=105.0) == []
    assert cursor.reseek_due(now=100.0 + RESEEK_WAITING_AFTER_S) == [(TOPIC, 0)]
    assert cursor.reseek_due(now=100.0 + RESEEK_WAITING_AFTER_S + 1) == []  # asked again only after another wait
    cursor.reset({(TOPIC, 0): 3})
    assert cursor.waiting_since == {}


def test_a_rewind_is_asked_once_per_gap_and_again_if_it_did_not_take():
    cursor = OffsetCursor(frozenset({TOPIC}))
    cursor.reset({(TOPIC, 0): 6})
    assigned = [(TOPIC, 0)]
    cursor.admit((TOPIC, 0), 9, now=100.0)
    cursor.admit((TOPIC, 0), 10, now=100.0)
    assert cursor.rewinds_due(100.0, assigned) == {(TOPIC, 0): 6}
    assert cursor.rewinds_due(100.5, assigned) == {}
    assert cursor.rewinds_due(100.0 + REWIND_AGAIN_AFTER_S, assigned) == {(TOPIC, 0): 6}
    cursor.processed((TOPIC, 0), 6, now=101.0)
    assert cursor.rewinds_due(200.0, assigned) == {}


def test_a_partition_that_lost_its_records_is_rewound_once_it_stalls():
    # Seen on the real broker: records fetched before the first seek were dropped as too early,
    # and the seek did not move the fetcher back (no committed offset): nothing came again.
    # The agent is busy with another partition: the records may be waiting in its buffer.
    cursor = OffsetCursor(frozenset({TOPIC}))
    cursor.reset({(TOPIC, 0): 0, (TOPIC, 1): 0}, now=100.0)
    for second in range(100, 100 + int(REWIND_STALLED_AFTER_S)):
        cursor.admit((TOPIC, 1), second, now=float(second))
        cursor.processed((TOPIC, 1), second, now=float(second))
        cursor.awaiting(TOPIC, now=float(second))
    assert cursor.note_stalls(100.0, {(TOPIC, 0): 10}) == []  # its records first seen
    assert cursor.note_stalls(105.0, {(TOPIC, 0): 10}) == []
    assert cursor.note_stalls(100.0 + REWIND_STALLED_AFTER_S, {(TOPIC, 0): 10}) == [(TOPIC, 0)]
    assert cursor.rewinds_due(100.0 + REWIND_STALLED_AFTER_S, [(TOPIC, 0)]) == {(TOPIC, 0): 0}
    cursor.processed((TOPIC, 0), 9, now=120.0)
    assert cursor.note_stalls(500.0, {(TOPIC, 0): 10}) == []  # caught up: nothing to fetch


def test_a_partition_of_an_idle_agent_is_rewound_soon():
    # Seen after a restart that recovered a table: the partition's last record was fetched and
    # dropped during the recovery, so nothing later showed a jump, and nothing else came.
    cursor = OffsetCursor(frozenset({TOPIC}))
    cursor.reset({(TOPIC, 0): 1}, now=100.0)
    assert cursor.note_stalls(100.0, {(TOPIC, 0): 2}) == []
    assert cursor.note_stalls(100.0 + REWIND_IDLE_AFTER_S / 2, {(TOPIC, 0): 2}) == []
    assert cursor.note_stalls(100.0 + REWIND_IDLE_AFTER_S, {(TOPIC, 0): 2}) == [(TOPIC, 0)]
    assert cursor.rewinds_due(100.0 + REWIND_IDLE_AFTER_S, [(TOPIC, 0)]) == {(TOPIC, 0): 1}


def test_records_after_a_quiet_spell_are_given_time_before_a_rewind():
    # An idle agent whose partition gets its next record after a long quiet spell: the record
    # has not waited for the spell. (Seen: every burst after 2 s of quiet rewound all four
    # partitions of the stock agent.)
    cursor = OffsetCursor(frozenset({TOPIC}))
    cursor.reset({(TOPIC, 0): 5}, now=100.0)
    cursor.admit((TOPIC, 0), 5, now=100.0)
    cursor.processed((TOPIC, 0), 5, now=100.0)
    cursor.awaiting(TOPIC, now=100.0)
    assert cursor.note_stalls(499.0, {(TOPIC, 0): 6}) == []  # caught up, quiet since 100
    assert cursor.note_stalls(500.0, {(TOPIC, 0): 7}) == []  # its next record has just come
    assert cursor.note_stalls(500.0 + REWIND_IDLE_AFTER_S / 2, {(TOPIC, 0): 7}) == []
    assert cursor.note_stalls(500.0 + REWIND_IDLE_AFTER_S, {(TOPIC, 0): 7}) == [(TOPIC, 0)]  # still nothing came


def test_a_partition_that_caught_up_starts_its_wait_again():
    cursor = OffsetCursor(frozenset({TOPIC}))
    cursor.reset({(TOPIC, 0): 5}, now=100.0)
    assert cursor.note_stalls(100.0, {(TOPIC, 0): 6}) == []
    cursor.admit((TOPIC, 0), 5, now=100.5)
    cursor.processed((TOPIC, 0), 5, now=100.5)
    cursor.awaiting(TOPIC, now=100.5)
    assert cursor.note_stalls(101.0, {(TOPIC, 0): 6}) == []  # caught up
    assert cursor.note_stalls(300.0, {(TOPIC, 0): 7}) == []  # a new record: its wait starts now
    assert cursor.note_stalls(300.0 + REWIND_IDLE_AFTER_S, {(TOPIC, 0): 7}) == [(TOPIC, 0)]


def test_an_agent_busy_with_a_record_is_not_idle():
    # e.g. a long batch, or sends waiting for the producer: its buffer may hold the records
    cursor = OffsetCursor(frozenset({TOPIC}))
    cursor.reset({(TOPIC, 0): 1, (TOPIC, 1): 0}, now=100.0)
    cursor.admit((TOPIC, 1), 0, now=100.5)
    assert cursor.note_stalls(100.0 + 5 * REWIND_IDLE_AFTER_S, {(TOPIC, 0): 2}) == []
    cursor.processed((TOPIC, 1), 0, now=101.0 + 5 * REWIND_IDLE_AFTER_S)
    cursor.awaiting(TOPIC, now=101.0 + 5 * REWIND_IDLE_AFTER_S)
    assert cursor.note_stalls(101.0 + 6 * REWIND_IDLE_AFTER_S, {(TOPIC, 0): 2}) == [(TOPIC, 0)]


def test_an_idle_partition_is_not_rewound():
    cursor = OffsetCursor(frozenset({TOPIC}))
    cursor.reset({(TOPIC, 0): 7, (TOPIC, 1): None}, now=100.0)
    assert cursor.note_stalls(1000.0, {(TOPIC, 0): 7, (TOPIC, 1): 50}) == []


def test_the_gaps_of_a_revoked_partition_are_forgotten():
    cursor = OffsetCursor(frozenset({TOPIC}))
    cursor.reset({(TOPIC, 0): 6, (TOPIC, 1): 0})
    cursor.admit((TOPIC, 0), 9, now=1.0)
    cursor.admit((TOPIC, 1), 4, now=1.0)
    assert cursor.rewinds_due(1.0, assigned=[(TOPIC, 1)]) == {(TOPIC, 1): 0}
    assert (TOPIC, 0) not in cursor.gaps


def test_a_hanging_seek_does_not_stop_the_rewinder(monkeypatch):
    monkeypatch.setattr(rewinder_module, "SEEK_TIMEOUT_S", 0.05)
    cursor = OffsetCursor(frozenset({TOPIC}))
    cursor.reset({(TOPIC, 0): 6})
    cursor.admit((TOPIC, 0), 9, now=1.0)
    calls: list[int] = []

    async def hanging_seek(tp, offset):
        calls.append(offset)
        await asyncio.sleep(3600)

    async def seek_to_committed():
        return {}

    async def scenario():
        rewinder = Rewinder(cursor, hanging_seek, seek_to_committed, lambda: [(TOPIC, 0)], lambda tp: None)
        await asyncio.wait_for(rewinder.run_once(now=1.0), timeout=5)
        await asyncio.wait_for(rewinder.run_once(now=1.0 + REWIND_AGAIN_AFTER_S), timeout=5)

    asyncio.run(scenario())
    assert calls == [6, 6]


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


class FakeStream:
    def __init__(self, log: FakeLog) -> None:
        self.log = log
        self.stopped = False

    async def events(self):
        while not self.stopped:
            await asyncio.sleep(0)  # the rewinder runs between records, as on the real event loop
            if self.log.script:
                offset = self.log.script.pop(0)
            elif self.log.position < self.log.end:
                offset = self.log.position
                self.log.position += 1
            else:
                continue
            yield FakeEvent(FakeMessage(TOPIC, 0, offset))


def run_agent(log: FakeLog, committed: int) -> tuple[list[int], list[FakeMessage]]:
    consumer = FakeConsumer(log)
    cursor = guard_topics(consumer, [TOPIC])
    cursor.reset({(TOPIC, 0): committed})
    processed: list[int] = []
    seen: list[FakeMessage] = []
    stream = FakeStream(log)

    async def seek(tp, offset) -> None:
        log.seeks.append(offset)
        log.position = offset
        log.script = []

    async def seek_to_committed():
        return {}

    async def agent() -> None:
        async for event in in_offset_order(consumer, stream, "test"):
            seen.append(event.message)
            processed.append(event.message.offset)

    async def rewinds() -> None:
        rewinder = Rewinder(cursor, seek, seek_to_committed, lambda: [(TOPIC, 0)], lambda tp: log.end)
        clock = 0.0
        for _round in range(10_000):
            if processed[-1:] == [log.end - 1]:
                break
            await rewinder.run_once(now=clock)
            clock += 1.0
            await asyncio.sleep(0)
        stream.stopped = True

    async def both() -> None:
        await asyncio.gather(agent(), rewinds())

    asyncio.run(both())
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
    script=st.lists(st.integers(0, 39), max_size=60),
)
def test_whatever_the_fetcher_delivers_each_offset_is_processed_once_in_order(committed, script):
    log = FakeLog(end=40, script=list(script))
    processed, _seen = run_agent(log, committed=committed)
    assert processed == list(range(committed, 40))


# --- records deleted by retention before they were processed ----------------------------------


def test_a_rewind_that_did_not_take_is_checked_against_the_log_start():
    cursor = OffsetCursor(frozenset({TOPIC}))
    cursor.reset({(TOPIC, 0): 6, (TOPIC, 1): 3})
    cursor.admit((TOPIC, 0), 9, now=100.0)
    cursor.admit((TOPIC, 1), 8, now=100.0)
    assigned = [(TOPIC, 0), (TOPIC, 1)]
    first = cursor.rewinds_due(100.0, assigned)
    assert cursor.repeated(first) == []
    again = cursor.rewinds_due(100.0 + REWIND_AGAIN_AFTER_S, assigned)
    assert sorted(cursor.repeated(again)) == assigned
    assert cursor.skip_expired((TOPIC, 0), log_start=4) == 0  # 6 is still in the log: rewind again
    assert cursor.expected((TOPIC, 0)) == 6 and (TOPIC, 0) in cursor.gaps
    assert cursor.skip_expired((TOPIC, 1), log_start=8) == 5  # 3..7 are gone
    assert cursor.expected((TOPIC, 1)) == 8 and (TOPIC, 1) not in cursor.gaps
    assert cursor.admit((TOPIC, 1), 8, now=101.0) is Verdict.NEXT


def test_an_expired_offset_does_not_loop_rewinds_for_good():
    # The fetcher resets an out-of-range position to the log start, past the expected offset: a
    # rewind to the expected offset never takes. The rewinder checks the log start and goes on.
    cursor = OffsetCursor(frozenset({TOPIC}))
    cursor.reset({(TOPIC, 0): 2})
    cursor.admit((TOPIC, 0), 10, now=1.0)
    seeks: list[int] = []
    lookups: list[list] = []

    async def seek(tp, offset):
        seeks.append(offset)

    async def seek_to_committed():
        return {}

    async def log_starts(tps):
        lookups.append(list(tps))
        return {tp: 10 for tp in tps}

    async def scenario():
        rewinder = Rewinder(cursor, seek, seek_to_committed, lambda: [(TOPIC, 0)], lambda tp: 20, log_starts)
        await rewinder.run_once(now=1.0)
        await rewinder.run_once(now=1.0 + REWIND_AGAIN_AFTER_S)
        await rewinder.run_once(now=1.0 + 2 * REWIND_AGAIN_AFTER_S)

    expired_before = _expired_count()
    asyncio.run(scenario())
    assert seeks == [2]  # the first rewind only; the second found 2..9 deleted
    assert lookups == [[(TOPIC, 0)]]
    assert cursor.expected((TOPIC, 0)) == 10 and cursor.gaps == {}
    assert _expired_count() - expired_before == 8


def _expired_count() -> float:
    from streams import metrics

    return metrics.REGISTRY.get_sample_value("stockstream_input_expired_records_total", {"topic": TOPIC}) or 0.0
