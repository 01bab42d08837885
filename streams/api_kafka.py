"""What the API reads straight from Kafka (blocking calls: run them in a thread):

* how many records the quarantine and dead-letter topics hold (end minus start offsets): the same
  number on every worker, since every worker asks the same broker;
* the allocation record behind a channel's published quantity, for the movement ids that caused
  it: the `allocations` topic is the only place that keeps them. The SKU's partition is read
  backwards from its end, a bounded window at a time.
"""

from __future__ import annotations

import threading
import time
from typing import Optional

from confluent_kafka import Consumer, KafkaException, TopicPartition

from schemas import codec
from schemas.errors import CodecError
from schemas.names import ALLOCATION_CHANGE
from stockstream.settings import Settings
from stockstream.topics import ALLOCATIONS
from streams.partitioning import partition_for

COUNTS_TTL_S = 2.0
SCAN_WINDOW = 2_000
SCAN_MAX_RECORDS = 20_000


def _consumer(settings: Settings) -> Consumer:
    return Consumer({
        "bootstrap.servers": settings.bootstrap_servers,
        "group.id": settings.topic("stockstream-api-reader"),  # never subscribes or commits
        "enable.auto.commit": False,
        "enable.partition.eof": False,
    })


class TopicRecordCounts:
    """Records held per topic, cached for a couple of seconds (the dashboard polls every second)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._lock = threading.Lock()
        self._consumer: Optional[Consumer] = None
        self._cached: dict[str, tuple[float, int]] = {}

    def records(self, topic: str) -> Optional[int]:
        """None if the broker did not answer (the dashboard shows it as unknown, not as 0)."""
        with self._lock:
            hit = self._cached.get(topic)
            if hit is not None and time.monotonic() - hit[0] < COUNTS_TTL_S:
                return hit[1]
            if self._consumer is None:
                self._consumer = _consumer(self.settings)
            count = 0
            try:
                for partition in range(self.settings.partitions):
                    low, high = self._consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=5)
                    count += max(high - low, 0)
            except KafkaException:
                return None
            self._cached[topic] = (time.monotonic(), count)
            return count

    def close(self) -> None:
        with self._lock:
            if self._consumer is not None:
                self._consumer.close()
                self._consumer = None


def last_allocation_change(settings: Settings, sku: str, channel: str, version: int) -> Optional[dict]:
    """The AllocationChange record that published `version` of (sku, channel), preferring the
    original over a re-emission (re-emissions after a replay carry no movement ids). None if it
    is not within the last `SCAN_MAX_RECORDS` records of the SKU's partition, or the broker did
    not answer."""
    try:
        return _scan_for_change(settings, sku, channel, version)
    except KafkaException:
        return None


def _scan_for_change(settings: Settings, sku: str, channel: str, version: int) -> Optional[dict]:
    topic = settings.topic(ALLOCATIONS.name)
    partition = partition_for(sku.encode(), settings.partitions)
    consumer = _consumer(settings)
    try:
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
        end = high
        found: Optional[dict] = None
        while end > low and high - end < SCAN_MAX_RECORDS:
            start = max(low, end - SCAN_WINDOW)
            consumer.assign([TopicPartition(topic, partition, start)])
            position = start
            while position < end:
                messages = consumer.consume(num_messages=500, timeout=2.0)
                if not messages:
                    break
                for message in messages:
                    if message.error() is not None or message.offset() >= end:
                        continue
                    position = message.offset() + 1
                    if message.key() != sku.encode():
                        continue
                    try:
                        record = codec.decode(message.value(), ALLOCATION_CHANGE)
                    except CodecError:
                        continue
                    if record["channel"] == channel and record["version"] == version:
                        if record["movement_ids"] or found is None:
                            found = record
            if found is not None and found["movement_ids"]:
                return found
            end = start
        return found
    finally:
        consumer.close()
