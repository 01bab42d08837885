"""The agents' librdkafka outputs (streams/outputs.py): a flush returns only once every record is
acknowledged, a failed record fails every later flush, and a full local queue is waited out."""

from __future__ import annotations

import asyncio

import pytest
from confluent_kafka import KafkaError, KafkaException

from streams.outputs import Outputs


class FakeProducer:
    """Delivers (or fails) a record on the poll after the one that saw it produced."""

    def __init__(self, fail: bool = False, full_for: int = 0) -> None:
        self.fail = fail
        self.full_for = full_for  # how many produce calls raise BufferError first
        self.queued: list = []
        self.in_flight: list = []
        self.produced: list[tuple] = []

    def produce(self, topic, value, key=None, on_delivery=None, partition=None):
        if self.full_for:
            self.full_for -= 1
            raise BufferError("queue full")
        self.produced.append((topic, key, value, partition))
        self.queued.append(on_delivery)

    def poll(self, _timeout):
        for callback in self.in_flight:
            callback(KafkaError(KafkaError._MSG_TIMED_OUT) if self.fail else None, None)
        self.in_flight, self.queued = self.queued, []


def test_flush_waits_for_every_acknowledgement():
    fake = FakeProducer()
    outputs = Outputs("unused", producer=fake)

    async def scenario():
        await outputs.send("t.ats", b"v1", b"SKU-1")
        await outputs.send("t.allocations", b"v2", b"SKU-1", 3)
        assert outputs.unacknowledged == 2
        await outputs.flush()
        assert outputs.unacknowledged == 0

    asyncio.run(scenario())
    assert fake.produced == [("t.ats", b"SKU-1", b"v1", None), ("t.allocations", b"SKU-1", b"v2", 3)]


def test_a_failed_record_fails_this_flush_and_every_later_one():
    outputs = Outputs("unused", producer=FakeProducer(fail=True))

    async def scenario():
        await outputs.send("t.ats", b"v", b"k")
        with pytest.raises(KafkaException):
            await outputs.flush()
        with pytest.raises(KafkaException):  # the offset must never be committed past it
            await outputs.flush()

    asyncio.run(scenario())


def test_a_full_queue_is_waited_out_not_dropped():
    fake = FakeProducer(full_for=3)
    outputs = Outputs("unused", producer=fake)

    async def scenario():
        await outputs.send("t.ats", b"v", b"k")
        await outputs.flush()

    asyncio.run(scenario())
    assert fake.produced == [("t.ats", b"k", b"v", None)]


def test_an_app_that_never_sends_flushes_at_once():
    asyncio.run(Outputs("127.0.0.1:1").flush())


def test_a_flush_waits_only_for_the_records_sent_before_it():
    # Agents keep sending while a commit flushes: the flush must not wait for those too.
    fake = FakeProducer()
    outputs = Outputs("unused", producer=fake)

    async def keep_sending(stop: asyncio.Event):
        while not stop.is_set():
            await outputs.send("t.ats", b"v", b"k")
            await asyncio.sleep(0)

    async def scenario():
        await outputs.send("t.ats", b"first", b"k")
        stop = asyncio.Event()
        sender = asyncio.create_task(keep_sending(stop))
        await asyncio.wait_for(outputs.flush(), timeout=5)
        stop.set()
        await sender
        await outputs.flush()
        assert outputs.unacknowledged == 0

    asyncio.run(scenario())


class FakeMessage:
    def __init__(self, topic, partition, offset):
        self._t, self._p, self._o = topic, partition, offset

    def topic(self):
        return self._t

    def partition(self):
        return self._p

    def offset(self):
        return self._o


class OffsetProducer(FakeProducer):
    """Acknowledges with offsets, counted per partition."""

    def __init__(self) -> None:
        super().__init__()
        self.next_offsets: dict = {}

    def produce(self, topic, value, key=None, on_delivery=None, partition=None):
        offset = self.next_offsets.get((topic, partition), 0)
        self.next_offsets[(topic, partition)] = offset + 1
        self.produced.append((topic, key, value, partition))
        self.queued.append(lambda error, _m, cb=on_delivery, m=FakeMessage(topic, partition, offset): cb(error, m))


def test_table_changelog_records_go_through_the_outputs_and_their_offsets_are_persisted_after_a_flush():
    from types import SimpleNamespace

    from streams.changelog import ChangelogSender

    persisted = {}
    table = SimpleNamespace(
        changelog_topic=SimpleNamespace(get_topic_name=lambda: "app-stock-changelog"),
        data=SimpleNamespace(set_persisted_offset=lambda tp, offset: persisted.__setitem__((tp.topic, tp.partition), offset)),
    )
    fake = OffsetProducer()
    outputs = Outputs("unused", producer=fake)
    sender = ChangelogSender(outputs)
    sender.attach(table)

    async def scenario():
        # What Faust's Table.on_key_set does: send, then read the partition of what it sent.
        assert table.send_changelog(2, b"SKU-1", b"v1").message.partition == 2
        table.send_changelog(2, b"SKU-2", b"v2")
        table.send_changelog(0, b"SKU-3", None)  # a delete: a tombstone
        await outputs.send("app-ats", b"snapshot", b"SKU-1")  # not a changelog: not persisted
        await outputs.flush()
        await sender.persist_offsets()

    asyncio.run(scenario())
    assert fake.produced[:3] == [("app-stock-changelog", b"SKU-1", b"v1", 2), ("app-stock-changelog", b"SKU-2", b"v2", 2),
                                 ("app-stock-changelog", b"SKU-3", None, 0)]
    assert persisted == {("app-stock-changelog", 2): 1, ("app-stock-changelog", 0): 0}
