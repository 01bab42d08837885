"""Bulk restore of table state from a changelog topic on the real broker: the restored state equals
the latest value of every key (tombstones delete), and a restore stopped part-way leaves state
that is exact up to its offset, from which a second restore completes it."""

from __future__ import annotations

import random
import threading
import time
from typing import Optional

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from streams.changelog_restore import RestoreRange, restore

pytestmark = pytest.mark.integration


class DictState:
    """A partition's state as a dict, plus the offset it holds, written together like RocksDB's batch."""

    def __init__(self, stop_after_writes: Optional[int] = None, stop: Optional[threading.Event] = None) -> None:
        self.values: dict[bytes, bytes] = {}
        self.offset = -1
        self.writes = 0
        self._stop_after, self._stop = stop_after_writes, stop

    def write(self, records: list[tuple[bytes, Optional[bytes]]], offset: int) -> None:
        for key, value in records:
            if value is None:
                self.values.pop(key, None)
            else:
                self.values[key] = value
        self.offset = offset
        self.writes += 1
        if self._stop is not None and self.writes == self._stop_after:
            self._stop.set()


def _changelog(bootstrap: str, topic: str, partitions: int, records: int) -> dict[int, list[tuple[bytes, Optional[bytes]]]]:
    """Publishes `records` writes (overwrites and tombstones); returns each partition's writes in
    order (a new topic and an idempotent producer: the i-th write of a partition is at offset i)."""
    admin = AdminClient({"bootstrap.servers": bootstrap})  # kept alive until the topic exists
    admin.create_topics([NewTopic(topic, partitions, 1)])[topic].result(30)
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "enable.idempotence": True})
    writes: dict[int, list[tuple[bytes, Optional[bytes]]]] = {p: [] for p in range(partitions)}
    rng = random.Random(7)
    for i in range(records):
        partition, key = rng.randrange(partitions), f"SKU-{rng.randrange(3_000):05d}".encode()
        value = None if rng.random() < 0.05 else f'{{"version":{i}}}'.encode()
        producer.produce(topic, value, key, partition=partition)
        writes[partition].append((key, value))
        if i % 10_000 == 0:
            producer.poll(0)
    assert producer.flush(30) == 0
    return writes


def _replayed(writes: list[tuple[bytes, Optional[bytes]]], through: int) -> dict[bytes, bytes]:
    """The oracle: a partition's state after its writes up to offset `through`, one by one."""
    state = DictState()
    state.write(writes[: through + 1], through)
    return state.values


def test_restore_reads_every_partition_to_its_latest_values(kafka_bootstrap, topic_prefix):
    topic = f"{topic_prefix}stock-changelog"
    writes = _changelog(kafka_bootstrap, topic, partitions=3, records=60_000)
    expected = {p: _replayed(w, len(w) - 1) for p, w in writes.items()}
    states = {p: DictState() for p in expected}
    last = {p: _last_offset(kafka_bootstrap, topic, p) for p in expected}
    ranges = [RestoreRange(topic, p, 0, last[p], states[p]) for p in expected]
    result = restore(kafka_bootstrap, ranges, threading.Event(), deadline=time.monotonic() + 60)
    assert result.complete and result.records == 60_000
    for p in expected:
        assert states[p].values == expected[p]
        assert states[p].offset == last[p] == result.reached[(topic, p)]
        assert states[p].writes < 30  # in batches, not per record


def test_a_stopped_restore_is_consistent_and_a_second_one_completes_it(kafka_bootstrap, topic_prefix):
    topic = f"{topic_prefix}orders-changelog"
    writes = _changelog(kafka_bootstrap, topic, partitions=1, records=40_000)[0]
    expected = _replayed(writes, len(writes) - 1)
    last = _last_offset(kafka_bootstrap, topic, 0)
    stop = threading.Event()
    state = DictState(stop_after_writes=1, stop=stop)
    first = restore(kafka_bootstrap, [RestoreRange(topic, 0, 0, last, state)], stop, deadline=time.monotonic() + 60)
    assert not first.complete and 0 <= state.offset < last
    # What is there is exactly the changelog up to the offset written with it.
    assert state.values == _replayed(writes, state.offset)

    second = restore(kafka_bootstrap, [RestoreRange(topic, 0, state.offset + 1, last, state)], threading.Event(),
                     deadline=time.monotonic() + 60)
    assert second.complete and first.records + second.records == 40_000
    assert state.values == expected and state.offset == last


def test_past_its_deadline_a_restore_writes_nothing_and_says_so(kafka_bootstrap, topic_prefix):
    topic = f"{topic_prefix}late-changelog"
    _changelog(kafka_bootstrap, topic, partitions=1, records=100)
    state = DictState()
    result = restore(kafka_bootstrap, [RestoreRange(topic, 0, 0, 99, state)], threading.Event(), deadline=time.monotonic())
    assert not result.complete and result.records == 0 and state.writes == 0


def _last_offset(bootstrap: str, topic: str, partition: int) -> int:
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "watermarks"})
    try:
        _, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=30)
        return high - 1
    finally:
        consumer.close()
