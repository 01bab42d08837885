"""Writing records and waiting for the broker: the dead-letter topic, the reconciliation topic,
retried allocations. Idempotent, acks=all, murmur2 like every stockstream producer."""

from __future__ import annotations

from typing import Iterable, Optional

from confluent_kafka import KafkaException, Producer

from stockstream.settings import Settings

Record = tuple[bytes, bytes, Optional[list[tuple[str, bytes]]]]  # key, value, headers


class TopicWriter:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._producer = Producer(
            {
                "bootstrap.servers": settings.bootstrap_servers,
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": 5,
                "partitioner": "murmur2_random",
            }
        )

    def write(self, name: str, records: Iterable[Record], timeout: float = 30.0) -> int:
        """Write to the logical topic `name`; returns once the broker has them all, raises if not."""
        topic = self.settings.topic(name)
        failures: list = []

        def on_delivery(error, _message) -> None:
            if error is not None:
                failures.append(error)

        count = 0
        for key, value, headers in records:
            while True:
                try:
                    self._producer.produce(topic, key=key, value=value, headers=headers, on_delivery=on_delivery)
                    break
                except BufferError:
                    self._producer.poll(0.05)
            count += 1
        if self._producer.flush(timeout) or failures:
            raise KafkaException(failures[0] if failures else f"{topic}: records not acknowledged in time")
        return count
