"""Automatic re-processing of orders quarantined as unmapped, once the catalog learns the mapping.

An order update whose line the catalog cannot map is not applied (stockstream/core/orders.py): the
normalizer sends the raw record to `quarantine` with reason ``unmapped_sku`` and ``retryable``.
It cannot simply be processed again at its original position: that position has passed (the
order state and the per-SKU origin marks downstream would treat it as a replay). So the retrier
re-submits it through a stream of its own, the internal ``retry`` topic, and the normalize agent
gives those records the origin stream ``<partition>|retry`` at the retry record's offset.

The retrier (a thread per worker, confluent-kafka, consumer group ``<app>-retry`` over
`quarantine`) decides per quarantined record (`decide`):

* not ``unmapped_sku`` or not retryable: nothing to do;
* every detailed line of the raw record (re-parsed with the platform's connector) resolves with
  the worker's live catalog: produced to ``retry`` at ``partition_for(raw key)``, the partition
  of the order's state (quarantine and retry are co-partitioned with ingest);
* otherwise: held in memory (`Held`), indexed by the catalog keys that would resolve it (the
  line's merchant code and ``listing:<platform>:<platform_sku_id>``), and decided again when the
  catalog feed reports one of those keys changed.

A record re-quarantined after a retry at the same catalog generation (the normalizer still could
not map it: a line the record names only by status, or another worker's catalog lagging) is held
with a back-off (2 s doubling up to 5 min) and tried again then or at the next catalog change.

Offsets of `quarantine` are committed only up to the lowest record still held, after everything
below it was produced to ``retry`` and acknowledged. A restart therefore reads held records again
(and retries some already retried ones: harmless, the order state sees them as duplicates).
Known limit: a held record's memory is the process's: millions of unmappable orders would need a
bounded store.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict, defaultdict
from dataclasses import dataclass, field
from typing import Iterable, Optional, Protocol

import mode
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from connectors import warehouse as warehouse_feed
from connectors.base import Rejected
from connectors.registry import PLATFORMS, get_connector
from schemas import codec
from schemas.batches import encode_ingest
from schemas.names import QUARANTINE_RECORD
from stockstream.catalog_topic import listing_key
from stockstream.settings import Settings
from stockstream.topics import QUARANTINE, RETRY
from streams import consumer_errors
from streams.normalize import INDEX_STRIDE, UNMAPPED_SKU, OriginOf
from streams.partitioning import partition_for

log = logging.getLogger(__name__)

# Records of one retry batch get disjoint index ranges (1024 updates of 1024 movements each);
# the retrier writes one record per batch, so positions stay far below the int32 index limit.
RECORD_STRIDE = INDEX_STRIDE * 1024
BACKOFF_START_S = 2.0
BACKOFF_MAX_S = 300.0
RETRIED_MEMORY = 100_000


def retry_origin(partition: int, offset: int) -> OriginOf:
    """Origins of the records of one `retry` topic record: their own ordered stream per partition,
    at the retry record's offset, so positions only increase (distinct from the ingest streams)."""
    stream = f"{partition}|retry"
    return lambda position, _raw: (stream, offset, position * RECORD_STRIDE)


class Resolver(Protocol):
    def resolve(self, platform: str, line): ...


@dataclass(frozen=True)
class Decision:
    action: str  # "retry" | "hold" | "drop"
    missing: frozenset[str] = frozenset()  # catalog keys any of which may make a held record resolvable
    why: str = ""


def platforms_by_topic(settings: Settings) -> dict[str, str]:
    prefix = settings.topic("raw.")
    return {prefix + p: p for p in (*PLATFORMS, warehouse_feed.PLATFORM)}


def decide(record: dict, resolver: Resolver, platform_by_topic: dict[str, str]) -> Decision:
    """What to do with one QuarantineRecord (a dict) given the catalog as it is now."""
    if record.get("reason_code") != UNMAPPED_SKU or not record.get("retryable"):
        return Decision("drop", why="not a retryable unmapped SKU")
    platform = platform_by_topic.get(record.get("source_topic", ""))
    if platform is None or platform == warehouse_feed.PLATFORM:
        return Decision("drop", why=f"no marketplace topic {record.get('source_topic')!r}")
    parsed = get_connector(platform).parse(record["value"], record.get("headers") or {})
    if isinstance(parsed, Rejected):
        return Decision("drop", why=f"{parsed.reason_code}: {parsed.reason}")
    missing: set[str] = set()
    for update in parsed:
        for line in update.lines:
            if line.merchant_code is None and line.platform_sku_id is None:
                continue  # a status-only statement: resolved, if ever, from the stored line
            if resolver.resolve(platform, line) is not None:
                continue
            if line.merchant_code:
                missing.add(line.merchant_code)
            if line.platform_sku_id:
                missing.add(listing_key(platform, line.platform_sku_id))
    if missing:
        return Decision("hold", frozenset(missing), why="unmapped: " + ", ".join(sorted(missing)))
    return Decision("retry")


@dataclass
class HeldRecord:
    partition: int
    offset: int
    record: dict
    keys: frozenset[str]  # empty: waits for any catalog change or its back-off time
    not_before: float = 0.0  # monotonic time; 0 for records held on keys


@dataclass
class Held:
    """Quarantined records waiting for the catalog, indexed by the catalog keys they wait for."""

    records: dict[tuple[int, int], HeldRecord] = field(default_factory=dict)
    by_key: dict[str, set[tuple[int, int]]] = field(default_factory=lambda: defaultdict(set))
    waiting_any: set[tuple[int, int]] = field(default_factory=set)

    def __len__(self) -> int:
        return len(self.records)

    def add(self, held: HeldRecord) -> None:
        position = (held.partition, held.offset)
        self.discard(position)
        self.records[position] = held
        if held.keys:
            for key in held.keys:
                self.by_key[key].add(position)
        else:
            self.waiting_any.add(position)

    def discard(self, position: tuple[int, int]) -> Optional[HeldRecord]:
        held = self.records.pop(position, None)
        if held is None:
            return None
        for key in held.keys:
            positions = self.by_key.get(key)
            if positions is not None:
                positions.discard(position)
                if not positions:
                    del self.by_key[key]
        self.waiting_any.discard(position)
        return held

    def take_changed(self, keys: Iterable[str]) -> list[HeldRecord]:
        """Removes and returns the records a change of these catalog keys may resolve (and every
        record waiting for any change), in offset order."""
        positions = set(self.waiting_any)
        for key in keys:
            positions |= self.by_key.get(key, set())
        return self._take(positions)

    def take_due(self, now: float) -> list[HeldRecord]:
        return self._take({p for p in self.waiting_any if self.records[p].not_before <= now})

    def _take(self, positions: set[tuple[int, int]]) -> list[HeldRecord]:
        taken = [self.discard(p) for p in sorted(positions)]
        return [h for h in taken if h is not None]

    def drop_partitions(self, partitions: Iterable[int]) -> None:
        gone = set(partitions)
        for position in [p for p in self.records if p[0] in gone]:
            self.discard(position)

    def lowest(self, partition: int) -> Optional[int]:
        offsets = [o for p, o in self.records if p == partition]
        return min(offsets) if offsets else None

    def commit_offsets(self, next_offsets: dict[int, int]) -> dict[int, int]:
        """Per partition, the offset safe to commit: below every held record, at most what was read."""
        safe = {}
        for partition, next_offset in next_offsets.items():
            lowest = self.lowest(partition)
            safe[partition] = next_offset if lowest is None else min(lowest, next_offset)
        return safe


def retry_raw(record: dict, timestamp_ms: int) -> dict:
    """The original RawRecord of a QuarantineRecord."""
    headers = record.get("headers") or {}
    try:
        timestamp_ms = int(headers.get("received-at", timestamp_ms))
    except ValueError:
        pass
    return {
        "topic": record["source_topic"],
        "partition": record["source_partition"],
        "offset": record["source_offset"],
        "timestamp_ms": timestamp_ms,
        "key": record.get("key"),
        "value": record["value"],
        "headers": headers,
    }


class Retrier:
    """The retrier thread of one worker (see the module docstring)."""

    def __init__(self, settings: Settings, feed) -> None:
        self.settings = settings
        self.feed = feed
        self.quarantine_topic = settings.topic(QUARANTINE.name)
        self.retry_topic = settings.topic(RETRY.name)
        self.partitions = settings.partitions
        self.platform_by_topic = platforms_by_topic(settings)
        self.held = Held()
        self.retried = 0
        self.failure: Optional[BaseException] = None
        self._changed: list[str] = []
        self._changed_lock = threading.Lock()
        # (source topic, partition, offset) -> (catalog generation, attempts) of its last retry.
        self._attempts: OrderedDict[tuple[str, int, int], tuple[int, int]] = OrderedDict()
        self._next_offsets: dict[int, int] = {}
        self._committed: dict[int, int] = {}
        self._stopping = threading.Event()
        self._thread: Optional[threading.Thread] = None
        feed.add_listener(self._on_catalog_change)

    def _on_catalog_change(self, keys: list[str]) -> None:  # the feed's thread
        with self._changed_lock:
            self._changed.extend(keys)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="quarantine-retrier", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 15.0) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _clients(self) -> tuple[Consumer, Producer]:
        consumer = Consumer(
            {
                "bootstrap.servers": self.settings.bootstrap_servers,
                "group.id": f"{self.settings.topic(self.settings.app_id)}-retry",
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "fetch.wait.max.ms": 100,
                **self.settings.group_membership("retry"),
            }
        )
        producer = Producer(
            {"bootstrap.servers": self.settings.bootstrap_servers, "enable.idempotence": True, "acks": "all", "linger.ms": 5}
        )
        return consumer, producer

    def _run(self) -> None:
        while not self.feed.ready.wait(0.2):
            if self._stopping.is_set():
                return
        consumer, producer = self._clients()
        self._producer = producer

        def on_revoke(consumer_: Consumer, partitions: list[TopicPartition]) -> None:
            mine = [tp.partition for tp in partitions if tp.topic == self.quarantine_topic]
            try:
                self._commit(consumer_, only=set(mine))
            finally:
                self.held.drop_partitions(mine)
                for partition in mine:
                    self._next_offsets.pop(partition, None)
                    self._committed.pop(partition, None)

        consumer.subscribe([self.quarantine_topic], on_revoke=on_revoke, on_lost=on_revoke)
        try:
            while not self._stopping.is_set():
                messages = consumer.consume(num_messages=500, timeout=0.2)
                outgoing: list[tuple[HeldRecord, int]] = []
                for message in messages:
                    if consumer_errors.is_error(message):
                        continue
                    self._next_offsets[message.partition()] = message.offset() + 1
                    self._consider(self._held_of(message), outgoing)
                with self._changed_lock:
                    changed, self._changed = self._changed, []
                if changed:
                    for held in self.held.take_changed(changed):
                        self._consider(held, outgoing)
                for held in self.held.take_due(time.monotonic()):
                    self._consider(held, outgoing)
                if outgoing:
                    self._send(producer, outgoing)
                self._commit(consumer)
        except BaseException as exc:  # surfaced by the service, which crashes the worker
            self.failure = exc
            log.exception("quarantine retrier failed")
        finally:
            try:
                self._commit(consumer)
            except Exception:
                log.warning("quarantine retrier: final commit failed", exc_info=True)
            consumer.close()

    def _held_of(self, message: Message) -> Optional[HeldRecord]:
        try:
            record = codec.decode(message.value(), QUARANTINE_RECORD)
        except Exception as exc:  # not ours to fix: skip it, the record stays in quarantine
            log.warning("quarantine record %s/%d@%d unreadable: %s", message.topic(), message.partition(), message.offset(), exc)
            return None
        record["_timestamp_ms"] = message.timestamp()[1]
        return HeldRecord(message.partition(), message.offset(), record, frozenset())

    def _consider(self, held: Optional[HeldRecord], outgoing: list) -> None:
        if held is None:
            return
        decision = decide(held.record, self.feed.resolver, self.platform_by_topic)
        if decision.action == "drop":
            return
        if decision.action == "hold":
            self.held.add(HeldRecord(held.partition, held.offset, held.record, decision.missing))
            return
        source = (held.record["source_topic"], held.record["source_partition"], held.record["source_offset"])
        generation = self.feed.generation
        last = self._attempts.get(source)
        if last is not None and last[0] == generation and held.not_before == 0.0:
            # Retried at this catalog already and quarantined again: wait for a change or a while.
            delay = min(BACKOFF_START_S * 2 ** last[1], BACKOFF_MAX_S)
            self.held.add(HeldRecord(held.partition, held.offset, held.record, frozenset(), time.monotonic() + delay))
            return
        attempts = 0 if last is None else last[1] + 1
        self._attempts[source] = (generation, attempts)
        self._attempts.move_to_end(source)
        while len(self._attempts) > RETRIED_MEMORY:
            self._attempts.popitem(last=False)
        outgoing.append((held, generation))

    def _send(self, producer: Producer, outgoing: list[tuple[HeldRecord, int]]) -> None:
        failures: list = []

        def on_delivery(error, _message) -> None:
            if error is not None:
                failures.append(error)

        for held, _generation in outgoing:
            raw = retry_raw(held.record, held.record.get("_timestamp_ms") or int(time.time() * 1000))
            key = raw["key"]
            partition = partition_for(key, self.partitions) if key is not None else held.partition % self.partitions
            while True:
                try:
                    producer.produce(
                        self.retry_topic, key=key, value=encode_ingest([raw]), partition=partition, on_delivery=on_delivery
                    )
                    break
                except BufferError:
                    producer.poll(0.05)
        if producer.flush(30) or failures:
            # Not committing: the records are read and retried again after the restart this causes.
            raise KafkaException(failures[0] if failures else KafkaError(KafkaError._TIMED_OUT))
        self.retried += len(outgoing)
        log.info("retried %d quarantined records (%d held)", len(outgoing), len(self.held))

    def _commit(self, consumer: Consumer, only: Optional[set[int]] = None) -> None:
        safe = self.held.commit_offsets(self._next_offsets)
        offsets = [
            TopicPartition(self.quarantine_topic, partition, offset)
            for partition, offset in safe.items()
            if (only is None or partition in only) and self._committed.get(partition) != offset
        ]
        if offsets and consumer_errors.commit(consumer, offsets):
            for tp in offsets:
                self._committed[tp.partition] = tp.offset


class RetrierService(mode.Service):
    """Ties the retrier thread to the worker's life; a failed retrier crashes the worker."""

    def __init__(self, settings: Settings, feed, **kwargs) -> None:
        super().__init__(**kwargs)
        self.retrier = Retrier(settings, feed)

    async def on_start(self) -> None:
        self.retrier.start()

    async def on_stop(self) -> None:
        self.retrier.stop()

    @mode.Service.timer(1.0)
    async def _watch(self) -> None:
        if self.retrier.failure is not None:
            await self.crash(self.retrier.failure)
