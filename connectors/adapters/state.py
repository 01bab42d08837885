"""Durable connector cursors in the compacted `connector-state` topic.

Key = `<platform>/<shop_id>` (one cursor per shop), value = JSON `{"cursor_ms": .., "saved_at_ms": ..}`.
`load()` reads the topic from the beginning to the high watermarks as of the call and keeps the
last value per key (compaction keeps at least that one); `save()` returns once the broker has the
record (idempotent producer, acks=all). Both block: call them through `asyncio.to_thread`.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any, Optional, Protocol

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

from stockstream.settings import Settings
from stockstream.topics import CONNECTOR_STATE


class CursorStore(Protocol):
    def load(self) -> dict[str, dict[str, Any]]: ...

    def save(self, key: str, value: dict[str, Any]) -> None: ...


class MemoryCursorStore:
    """For tests and one-off runs: forgets everything with the process."""

    def __init__(self) -> None:
        self.values: dict[str, dict[str, Any]] = {}
        self.saves = 0

    def load(self) -> dict[str, dict[str, Any]]:
        return dict(self.values)

    def save(self, key: str, value: dict[str, Any]) -> None:
        self.values[key] = dict(value)
        self.saves += 1


class KafkaCursorStore:
    def __init__(self, settings: Settings, timeout_s: float = 30.0) -> None:
        self.settings = settings
        self.topic = settings.topic(CONNECTOR_STATE.name)
        self.timeout_s = timeout_s
        self._producer: Optional[Producer] = None

    def load(self) -> dict[str, dict[str, Any]]:
        consumer = Consumer(
            {
                "bootstrap.servers": self.settings.bootstrap_servers,
                "group.id": f"connector-state-reader-{uuid.uuid4().hex}",
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
            }
        )
        values: dict[str, dict[str, Any]] = {}
        try:
            meta = consumer.list_topics(self.topic, timeout=self.timeout_s)
            topic = meta.topics.get(self.topic)
            if topic is None or topic.error is not None:
                raise KafkaException(f"topic {self.topic} is not available: {topic.error if topic else 'missing'}")
            remaining: dict[int, int] = {}
            assignment = []
            deadline = time.monotonic() + self.timeout_s
            for p in topic.partitions:
                low, high = _watermarks(consumer, TopicPartition(self.topic, p), deadline)
                if high > low:
                    remaining[p] = high
                    assignment.append(TopicPartition(self.topic, p, low))
            if not assignment:
                return values
            consumer.assign(assignment)
            while remaining:
                if time.monotonic() > deadline:
                    raise KafkaException(f"could not read {self.topic} to its end in {self.timeout_s}s")
                msg = consumer.poll(0.2)
                if msg is None:
                    continue
                if msg.error():
                    raise KafkaException(msg.error())
                if msg.key() is not None:
                    if msg.value() is None:  # tombstone
                        values.pop(msg.key().decode(), None)
                    else:
                        try:
                            values[msg.key().decode()] = json.loads(msg.value())
                        except ValueError:
                            pass
                if msg.offset() + 1 >= remaining.get(msg.partition(), 0):
                    remaining.pop(msg.partition(), None)
            return values
        finally:
            consumer.close()

    def save(self, key: str, value: dict[str, Any]) -> None:
        if self._producer is None:
            self._producer = Producer(
                {
                    "bootstrap.servers": self.settings.bootstrap_servers,
                    "enable.idempotence": True,
                    "acks": "all",
                    "partitioner": "murmur2_random",
                }
            )
        errors: list = []
        self._producer.produce(
            self.topic, key=key.encode(), value=json.dumps(value, sort_keys=True).encode(),
            on_delivery=lambda err, _msg: errors.append(err) if err is not None else None,
        )
        if self._producer.flush(self.timeout_s) or errors:
            raise KafkaException(errors[0] if errors else "cursor not acknowledged in time")


def _watermarks(consumer: Consumer, tp: TopicPartition, deadline: float) -> tuple[int, int]:
    """Watermarks, waiting out the moments after topic creation or a leader change when the
    broker answers NOT_LEADER / LEADER_NOT_AVAILABLE."""
    while True:
        try:
            return consumer.get_watermark_offsets(tp, timeout=max(1.0, deadline - time.monotonic()))
        except KafkaException as exc:
            error = exc.args[0] if exc.args else None
            retriable = getattr(error, "retriable", lambda: False)()
            if time.monotonic() > deadline or not (retriable or "leader" in str(exc).lower()):
                raise
            time.sleep(0.2)
