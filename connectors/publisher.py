"""Publishes raw records to `raw.<platform>`: idempotent, acks=all, keyed by order id and
partitioned like every other stockstream producer (murmur2), so one order's records stay in order
on one partition. Adapters acknowledge a platform delivery only after `publish` returned."""

from __future__ import annotations

from typing import Iterable

from confluent_kafka import KafkaException, Producer

from connectors.base import RawRecord
from stockstream.settings import Settings
from stockstream.topics import raw_topic


class RawPublisher:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._producer = Producer(
            {
                "bootstrap.servers": settings.bootstrap_servers,
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": 5,
                "compression.type": "lz4",
                "partitioner": "murmur2_random",
            }
        )

    def publish(self, platform: str, records: Iterable[RawRecord], timeout: float = 30.0) -> int:
        """Write the records and wait until the broker has them all; raise if any failed."""
        return self.publish_all(((platform, record) for record in records), timeout)

    def publish_all(self, items: Iterable[tuple[str, RawRecord]], timeout: float = 30.0) -> int:
        """(platform, record) pairs, in order: one wait for all of them."""
        topics: dict[str, str] = {}
        failures: list = []

        def on_delivery(error, _message) -> None:
            if error is not None:
                failures.append(error)

        count = 0
        for platform, record in items:
            topic = topics.get(platform) or topics.setdefault(platform, self.settings.topic(raw_topic(platform)))
            while True:
                try:
                    self._producer.produce(
                        topic, key=record.key.encode(), value=record.value,
                        headers=record.kafka_headers(), on_delivery=on_delivery,
                    )
                    break
                except BufferError:
                    self._producer.poll(0.05)
            count += 1
        if self._producer.flush(timeout) or failures:
            raise KafkaException(failures[0] if failures else "raw records not acknowledged in time")
        return count
