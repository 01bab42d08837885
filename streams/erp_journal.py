"""`stockstream journal`: the ledger (`movements`) -> ERP journal entries (`erp.journal`).

A confluent-kafka loop around the pure `stockstream.core.journal.PartitionJournal`, one per
assigned partition. Delivery is at-least-once with identical re-emissions:

* entries are produced (key = external id) and flushed before anything is committed;
* the offset committed per partition is the journal's resume point (the first record of its
  oldest open window), with the effective time ``H`` in the commit's metadata;
* on assignment the partition's records before the resume point are read again into the shadow
  stock (`warm`) so that deltas, counts included, come out as they did before the restart. That
  re-read is the restart cost: the partition's whole ledger. A checkpoint of the shadow stock would
  bound it once ledgers get long.

Idle windows close by wall clock only when this consumer has read up to the partition's high
watermark as fetched after the clock was read: records appended later are stamped later (the
producer's CreateTime, a worker's clock at send time) and a record stamped into a window already
closed goes into the next one (the effective time, see stockstream/core/journal.py).
"""

from __future__ import annotations

import logging
import signal
import threading
import time
import uuid
from typing import Optional

from confluent_kafka import Consumer, KafkaException, Message, Producer, TopicPartition

from schemas import codec
from schemas.batches import decode_movements
from schemas.errors import CodecError
from schemas.names import ERP_JOURNAL_ENTRY
from stockstream.core.journal import JournalEntry, PartitionJournal, ResumePoint
from stockstream.settings import Settings
from stockstream.topics import ERP_JOURNAL, MOVEMENTS, ensure_topics
from streams import consumer_errors, metrics
from streams.partitioning import partition_for

log = logging.getLogger(__name__)

POLL_RECORDS = 1000
POLL_TIMEOUT_S = 0.2
IDLE_CHECK_EVERY_S = 0.25


def journal_group(settings: Settings) -> str:
    return f"{settings.topic(settings.app_id)}-erp-journal"


class JournalProcess:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.window_ms = int(settings.erp_journal_window_s * 1000)
        self.grace_ms = int(settings.erp_journal_grace_s * 1000)
        self.source = settings.topic(MOVEMENTS.name)
        self.target = settings.topic(ERP_JOURNAL.name)
        self.journals: dict[int, PartitionJournal] = {}
        self.next_offsets: dict[int, int] = {}  # per partition: the offset after the last record added
        self.committed: dict[int, ResumePoint] = {}
        self.stopping = threading.Event()

    # ---------------------------------------------------------------- clients

    def _consumer(self) -> Consumer:
        return Consumer(
            {
                "bootstrap.servers": self.settings.bootstrap_servers,
                "group.id": journal_group(self.settings),
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "fetch.wait.max.ms": 50,
                **self.settings.group_membership("erp-journal", static=False),
            }
        )

    def _producer(self) -> Producer:
        return Producer(
            {
                "bootstrap.servers": self.settings.bootstrap_servers,
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": 5,
            }
        )

    # ---------------------------------------------------------------- assignment

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        committed = consumer.committed(partitions, timeout=30)
        starts = []
        for tp in committed:
            low, _high = consumer.get_watermark_offsets(TopicPartition(self.source, tp.partition), timeout=30)
            # No commit yet: from the partition's start (the ledger is kept forever).
            point = ResumePoint(tp.offset if tp.offset >= 0 else low, ResumePoint.high_water_from_metadata(tp.metadata))
            journal = PartitionJournal(tp.partition, self.window_ms, self.grace_ms, high_water_ms=point.high_water_ms)
            if point.offset > low:
                self._warm(journal, tp.partition, low, point.offset)
            self.journals[tp.partition] = journal
            self.next_offsets[tp.partition] = point.offset
            self.committed[tp.partition] = point
            starts.append(TopicPartition(self.source, tp.partition, point.offset))
            log.info("journal: partition %d from offset %d (H=%s)", tp.partition, point.offset, point.high_water_ms)
        consumer.assign(starts)

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Open windows are dropped: the new owner rebuilds them from the committed resume point.
        for tp in partitions:
            self.journals.pop(tp.partition, None)
            self.next_offsets.pop(tp.partition, None)
            self.committed.pop(tp.partition, None)

    def _warm(self, journal: PartitionJournal, partition: int, low: int, end: int) -> None:
        """Re-apply records [low, end) of a partition to the journal's shadow stock."""
        reader = Consumer(
            {
                "bootstrap.servers": self.settings.bootstrap_servers,
                "group.id": f"{journal_group(self.settings)}-warm-{uuid.uuid4().hex[:8]}",
                "enable.auto.commit": False,
            }
        )
        try:
            reader.assign([TopicPartition(self.source, partition, low)])
            position = low
            while position < end:
                for message in reader.consume(num_messages=POLL_RECORDS, timeout=1.0):
                    if consumer_errors.is_error(message) or message.offset() >= end:
                        continue
                    position = message.offset() + 1
                    journal.warm(self._movements(message))
        finally:
            reader.close()

    # ---------------------------------------------------------------- the loop

    def run(self) -> None:
        ensure_topics(self.settings, (MOVEMENTS, ERP_JOURNAL))
        consumer, producer = self._consumer(), self._producer()
        consumer.subscribe([self.source], on_assign=self._on_assign, on_revoke=self._on_revoke)
        last_idle_check = 0.0
        try:
            while not self.stopping.is_set():
                entries: list[JournalEntry] = []
                for message in consumer.consume(num_messages=POLL_RECORDS, timeout=POLL_TIMEOUT_S):
                    if consumer_errors.is_error(message):
                        continue
                    journal = self.journals.get(message.partition())
                    if journal is None:  # revoked meanwhile
                        continue
                    entries += journal.add(message.offset(), message.timestamp()[1], self._movements(message))
                    self.next_offsets[message.partition()] = message.offset() + 1
                if time.monotonic() - last_idle_check >= IDLE_CHECK_EVERY_S:
                    last_idle_check = time.monotonic()
                    entries += self._idle_flush(consumer)
                self._publish(producer, entries)
                self._commit(consumer)
        finally:
            consumer.close()

    def stop(self) -> None:
        self.stopping.set()

    def _idle_flush(self, consumer: Consumer) -> list[JournalEntry]:
        entries: list[JournalEntry] = []
        for partition, journal in list(self.journals.items()):
            due = journal.next_close_ms
            now_ms = int(time.time() * 1000)  # read before the watermark: see the module docstring
            if due is None or now_ms < due:
                continue
            try:
                _low, high = consumer.get_watermark_offsets(TopicPartition(self.source, partition), timeout=10)
            except KafkaException as exc:  # metadata in flux (broker restart, rebalance): next check
                log.info("partition %d: watermark unknown (%s); idle windows close later", partition, exc.args[0])
                continue
            if self.next_offsets.get(partition, 0) >= high:
                entries += journal.flush_idle(now_ms)
        return entries

    def _publish(self, producer: Producer, entries: list[JournalEntry]) -> None:
        if not entries:
            return
        failures: list[str] = []

        def on_delivery(error, _message) -> None:
            if error is not None:
                failures.append(str(error))

        for entry in entries:
            key = entry.external_id.encode()
            producer.produce(
                self.target,
                key=key,
                value=codec.encode(ERP_JOURNAL_ENTRY, entry.to_record()),
                partition=partition_for(key, self.settings.partitions),
                on_delivery=on_delivery,
            )
            producer.poll(0)
        producer.flush()
        if failures:
            # Nothing is committed: a restart re-reads and re-emits the same entries.
            raise RuntimeError(f"erp.journal: {len(failures)} entries not acknowledged: {failures[0]}")
        metrics.ERP_JOURNAL_ENTRIES.inc(len(entries))

    def _commit(self, consumer: Consumer) -> None:
        offsets = []
        for partition, journal in self.journals.items():
            point = journal.resume_point(self.next_offsets[partition])
            if point != self.committed.get(partition):
                offsets.append(TopicPartition(self.source, partition, point.offset, metadata=point.metadata()))
                self.committed[partition] = point
        if offsets and not consumer_errors.commit(consumer, offsets):
            for tp in offsets:  # not committed (rebalance, coordinator away): the next round tries again
                self.committed.pop(tp.partition, None)

    @staticmethod
    def _movements(message: Message) -> list:
        try:
            return decode_movements(message.value())
        except CodecError as exc:  # the stock agent quarantines it; it changes no stock
            log.warning("journal: undecodable movements record %s/%d@%d: %s", message.topic(), message.partition(),
                        message.offset(), exc)
            return []


def run_journal(settings: Settings, stop: Optional[threading.Event] = None) -> None:
    """Run until SIGTERM / SIGINT (or `stop` is set)."""
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if settings.journal_metrics_port:
        from prometheus_client import start_http_server

        start_http_server(settings.journal_metrics_port, registry=metrics.REGISTRY)
    process = JournalProcess(settings)
    if stop is not None:
        process.stopping = stop
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: process.stop())
    process.run()
