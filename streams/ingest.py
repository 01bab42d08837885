"""The ingest batcher: raw.<platform> records -> the internal `ingest` topic, re-partitioned by
order key and micro-batched.

Why it exists: Faust pays ~0.4 ms of Python per Kafka record it consumes (measured here: ~2,400
records/s with take_events on the real broker), an order of magnitude short of the 20,000 events/s
a worker must sustain at peak. A confluent-kafka loop consumes >100,000 records/s. So the raw
records are packed, per target partition, into one Kafka record each, and Faust's per-record cost
is paid once per batch. Per-key order is kept: records for one order come from one source
partition, in offset order, and go to one ingest partition, in that order.

Delivery: at-least-once. Offsets of the raw topics are committed only after the batches carrying
those records are acknowledged by the broker. After a crash some raw records are batched twice;
each carries its original (topic, partition, offset), which the order agent recognises as a replay.
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from time import monotonic
from typing import Callable, Iterable, Optional

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from schemas import codec
from stockstream.settings import Settings
from stockstream.topics import INGEST, QUARANTINE, RAW_TOPICS, RAW_WAREHOUSE
from streams import consumer_errors, metrics
from streams.consumer_lag import RawLagProbe
from streams.partitioning import partition_for

log = logging.getLogger(__name__)

# A batch record stays well under the broker's default 1 MiB message limit.
MAX_BATCH_BYTES = 512 * 1024
# A raw record larger than this cannot travel in any batch (the producer refuses messages over
# 1,000,000 bytes; the raw topics accept up to 1 MiB): it is quarantined instead, with its first
# QUARANTINE_PREFIX_BYTES and a pointer to the original, which stays in its raw topic.
MAX_RECORD_BYTES = 900_000
QUARANTINE_PREFIX_BYTES = 64 * 1024
OVERSIZED_RECORD = "oversized_record"
POLL_RECORDS = 5000
POLL_TIMEOUT_S = 0.05


def source_topics(settings: Settings) -> list[str]:
    return [settings.topic(spec.name) for spec in (*RAW_TOPICS.values(), RAW_WAREHOUSE)]


def raw_record(message: Message) -> dict:
    return {
        "topic": message.topic(),
        "partition": message.partition(),
        "offset": message.offset(),
        "timestamp_ms": message.timestamp()[1],
        "key": message.key(),
        "value": message.value() or b"",
        "headers": {name: (value or b"").decode("utf-8", "replace") for name, value in (message.headers() or ())},
    }


def target_partition(message: Message, partitions: int) -> int:
    key = message.key()
    if key is None:
        # Unkeyed input has no per-key order to keep; stay on the source partition number.
        return message.partition() % partitions
    return partition_for(key, partitions)


def pack(messages: Iterable[Message], partitions: int, oversized: Optional[list[dict]] = None) -> dict[int, list[list[dict]]]:
    """Group records by target partition into batches that each fit in one Kafka record. Records
    too large for any batch go to `oversized` (quarantined by the caller)."""
    by_partition: dict[int, list[list[dict]]] = defaultdict(lambda: [[]])
    sizes: dict[int, int] = defaultdict(int)
    for message in messages:
        record = raw_record(message)
        size = len(record["value"]) + len(record["key"] or b"") + 64
        if size > MAX_RECORD_BYTES and oversized is not None:
            oversized.append(record)
            continue
        partition = target_partition(message, partitions)
        if sizes[partition] + size > MAX_BATCH_BYTES and by_partition[partition][-1]:
            by_partition[partition].append([])
            sizes[partition] = 0
        by_partition[partition][-1].append(record)
        sizes[partition] += size
    return by_partition


class IngestBatcher:
    """Runs the batching loop on a thread of its own (librdkafka does the I/O off the event loop)."""

    def __init__(self, settings: Settings, on_batch: Optional[Callable[[int], None]] = None) -> None:
        self.settings = settings
        self.ingest_topic = settings.topic(INGEST.name)
        self.partitions = settings.partitions
        self._on_batch = on_batch
        self._stopping = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self.failure: Optional[BaseException] = None
        self.records_batched = 0
        self.lag_probe = RawLagProbe(settings.topic(""))
        self.commits = consumer_errors.PendingCommits()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="ingest-batcher", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 15.0) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _clients(self) -> tuple[Consumer, Producer]:
        consumer = Consumer(
            {
                "bootstrap.servers": self.settings.bootstrap_servers,
                "group.id": f"{self.settings.topic(self.settings.app_id)}-ingest",
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "partition.assignment.strategy": "cooperative-sticky",
                "fetch.wait.max.ms": 20,
                **self.settings.group_membership("ingest"),
            }
        )
        producer = Producer(
            {
                "bootstrap.servers": self.settings.bootstrap_servers,
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": 2,
                "compression.type": "lz4",
                "message.max.bytes": 1_000_000,
            }
        )
        return consumer, producer

    def _run(self) -> None:
        consumer, producer = self._clients()
        consumer.subscribe(source_topics(self.settings))
        try:
            while not self._stopping.is_set():
                messages = consumer.consume(num_messages=POLL_RECORDS, timeout=POLL_TIMEOUT_S)
                self.lag_probe.poll(consumer)  # on this thread: it owns the consumer
                good = [m for m in messages if not consumer_errors.is_error(m)]
                if not good:
                    self.commits.retry(consumer, monotonic())
                    continue
                self._forward(producer, good)
                self.commits.commit(consumer, self._next_offsets(good), monotonic())
                self.records_batched += len(good)
                by_topic: dict[str, int] = defaultdict(int)
                for message in good:
                    by_topic[message.topic()] += 1
                metrics.observe_batched(by_topic, self.settings.topic("raw."))
                if self._on_batch is not None:
                    self._on_batch(len(good))
        except BaseException as exc:  # surfaced by the worker's health check, which stops the process
            self.failure = exc
            log.exception("ingest batcher failed")
        finally:
            consumer.close()

    def _forward(self, producer: Producer, messages: list[Message]) -> None:
        failures: list[KafkaError] = []

        def on_delivery(error, _message) -> None:
            if error is not None:
                failures.append(error)

        oversized: list[dict] = []
        for partition, batches in pack(messages, self.partitions, oversized).items():
            for batch in batches:
                value = codec.encode("stockstream.IngestBatch", {"records": batch})
                while True:
                    try:
                        producer.produce(self.ingest_topic, value=value, partition=partition, on_delivery=on_delivery)
                        break
                    except BufferError:
                        producer.poll(0.05)
        for record in oversized:
            self._quarantine_oversized(producer, record, on_delivery)
        remaining = producer.flush(30)
        if remaining or failures:
            # Not committing: the same raw records are batched again after the restart this causes.
            raise KafkaException(failures[0] if failures else KafkaError(KafkaError._TIMED_OUT))

    def _quarantine_oversized(self, producer: Producer, record: dict, on_delivery) -> None:
        from streams.normalize import quarantine_record

        size = len(record["value"])
        reason = (
            f"raw record of {size} bytes is over the ingest limit of {MAX_RECORD_BYTES} bytes; value truncated to its "
            f"first {QUARANTINE_PREFIX_BYTES} bytes here, the original stays in {record['topic']}/{record['partition']}"
            f"@{record['offset']} for the raw topic's retention"
        )
        truncated = {**record, "value": record["value"][:QUARANTINE_PREFIX_BYTES]}
        value = quarantine_record(truncated, OVERSIZED_RECORD, reason)
        producer.produce(self.settings.topic(QUARANTINE.name), key=record["key"], value=value, on_delivery=on_delivery)
        metrics.QUARANTINED.labels(OVERSIZED_RECORD).inc()
        log.warning("quarantined: %s", reason)

    @staticmethod
    def _next_offsets(messages: list[Message]) -> list[TopicPartition]:
        highest: dict[tuple[str, int], int] = {}
        for message in messages:
            tp = (message.topic(), message.partition())
            highest[tp] = max(highest.get(tp, -1), message.offset())
        return [TopicPartition(topic, partition, offset + 1) for (topic, partition), offset in highest.items()]

