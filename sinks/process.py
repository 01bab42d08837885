"""The channel sink process (`stockstream sink [--platform P]`).

One consumer reads every partition of `allocations` (assigned, not subscribed: bundle listings
need the allocations of all their components, which live on different partitions), under the
consumer group `<app>-sink-<platform|all>`, used only to commit offsets. Run one sink process
per platform (or one for all); a second process with the same group would push the same
listings twice (harmless: full overwrites), not share the work.

Start-up (warm-up): records below the committed offsets are read again from the beginning of
the topic to rebuild the latest allocation per (SKU, channel) and what was pushed, without
pushing; records from the committed offsets on are live. Without committed offsets everything
is live (coalescing makes that one push per listing).

Live: consume a batch -> `SinkState.apply` (stale versions dropped, listings made due) -> wake
the shops' pushers (sinks/pusher.py) -> commit, every `commit_interval_s`, the offsets below
which every record's listings were written or parked (sinks/offsets.py).

Also in the process: the catalog feed (the live `catalog` topic: bundles and merchant codes),
the periodic reconciliation (sinks/reconcile.py, every `reconcile_interval_s`) and /metrics.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Iterable, Optional

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition
from tenacity import Retrying, retry_if_exception, stop_after_delay, wait_exponential_jitter

from connectors.adapters import make_adapter
from schemas import names
from schemas.codec import decode
from schemas.errors import CodecError
from sinks import metrics
from sinks.coalesce import Allocation, Push, SinkState, Verdict
from sinks.dead_letter import dead_letter, is_retry
from sinks.decisions import Decision
from sinks.kafka_io import TopicWriter
from sinks.listings import Listing, channel_of, read_listings_csv, unique_listings
from sinks.offsets import OffsetTracker
from sinks.pusher import ShopPusher
from sinks.quota import ShopQuota, quotas_for
from sinks.reconcile import Drift, Reconciler
from sinks.targets import TargetIndex, catalog_resolve
from stockstream.settings import Settings
from stockstream.topics import ALLOCATIONS, CATALOG, CHANNEL_DLQ, RECONCILIATION, ensure_topics
from streams import consumer_errors
from streams.catalog_feed import CatalogFeed

log = logging.getLogger(__name__)


async def _no_ingest(_platform: str, _records: list) -> None:
    raise RuntimeError("the channel sink only writes stock; it does not ingest")


class ChannelSink:
    def __init__(
        self,
        settings: Settings,
        *,
        platform: Optional[str] = None,
        listings: Optional[Iterable[Listing]] = None,
        catalog_feed: Optional[CatalogFeed] = None,
        adapters: Optional[dict[str, Any]] = None,
        metrics_port: Optional[int] = -1,  # -1: settings.sink_metrics_port; None: no server
        reconcile_interval_s: Optional[float] = None,  # None: settings.reconcile_interval_s; 0: off
        confirmations: Optional[int] = None,
        max_attempts: int = 8,
        commit_interval_s: float = 1.0,
        batch_size: int = 1000,
    ) -> None:
        self.settings = settings
        self.platform = platform
        self.group_id = f"{settings.topic(settings.app_id)}-sink-{platform or 'all'}"
        self.shops = [s for s in settings.shops if platform is None or s.platform == platform]
        if not self.shops:
            raise ValueError(f"no {platform or ''} shops configured (STOCKSTREAM_SHOPS)".replace("  ", " "))
        self.channels = {channel_of(s.platform, s.shop_id) for s in self.shops}
        if listings is None:
            if settings.listings_path is None:
                raise ValueError("no listings: set STOCKSTREAM_LISTINGS_PATH (platform,shop_id,listing_id,platform_sku_id,merchant_code)")
            listings = read_listings_csv(settings.listings_path)
        self.listings = [l for l in unique_listings(listings) if l.channel in self.channels]
        self.feed = catalog_feed if catalog_feed is not None else CatalogFeed(settings)
        self._own_feed = catalog_feed is None
        self.tracker = OffsetTracker()
        self.state = SinkState(self._build_index(), self.channels.__contains__, self.tracker)
        platforms = sorted({s.platform for s in self.shops})
        self.adapters = adapters if adapters is not None else {p: make_adapter(p, self.shops, sink=_no_ingest) for p in platforms}
        self.writer = TopicWriter(settings)
        self.pushers = {
            channel_of(s.platform, s.shop_id): ShopPusher(
                self.state, s, self.adapters[s.platform], ShopQuota(quotas_for(s.platform, settings.sink_calls_per_s)),
                self._park, max_attempts=max_attempts,
            )
            for s in self.shops
        }
        self.metrics_port = settings.sink_metrics_port if metrics_port == -1 else metrics_port
        self.reconcile_interval_s = settings.reconcile_interval_s if reconcile_interval_s is None else reconcile_interval_s
        self.reconciler = Reconciler(
            self.state, self.shops, self.adapters, confirmations if confirmations is not None else settings.reconcile_confirmations
        )
        self.commit_interval_s = commit_interval_s
        self.batch_size = batch_size
        self.topic = settings.topic(ALLOCATIONS.name)
        self.warm_until: dict[int, int] = {}  # partition -> committed offset at start
        self.committed: dict[int, int] = {}
        self.verdicts: dict[str, int] = {}
        self.live = asyncio.Event()  # set once warm-up is over (every partition reached its commit)

    # ---------------------------------------------------------------- wiring

    def _build_index(self) -> TargetIndex:
        self._catalog_generation = self.feed.generation
        index = TargetIndex(self.listings, catalog_resolve(self.feed.resolver))
        for listing in index.unmapped:
            log.warning("listing %s %s (merchant code %r) maps to no master SKU: not pushed", listing.channel, listing.platform_sku_id, listing.merchant_code)
        return index

    async def _park(self, push: Push, decision: Decision) -> None:
        record = dead_letter(push, decision, int(time.time() * 1000))
        await asyncio.to_thread(self.writer.write, CHANNEL_DLQ.name, [record])

    def _consumer(self) -> Consumer:
        return Consumer(
            {
                "bootstrap.servers": self.settings.bootstrap_servers,
                "group.id": self.group_id,
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "auto.offset.reset": "earliest",
                "fetch.wait.max.ms": 100,
            }
        )

    def _assign(self, consumer: Consumer) -> None:
        metadata = consumer.list_topics(self.topic, timeout=30)
        partitions = sorted(metadata.topics[self.topic].partitions)
        committed = _committed(consumer, [TopicPartition(self.topic, p) for p in partitions])
        for tp in committed:
            if tp.offset >= 0:
                self.warm_until[tp.partition] = tp.offset
                self.committed[tp.partition] = tp.offset
                self.tracker.start_at(tp.partition, tp.offset)
        consumer.assign([TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in partitions])
        # Partitions whose warm-up part is empty (or already compacted / deleted away) are live now.
        for p in list(self.warm_until):
            low, _high = consumer.get_watermark_offsets(TopicPartition(self.topic, p), timeout=30)
            if self.warm_until[p] <= low:
                del self.warm_until[p]

    # ---------------------------------------------------------------- records

    def handle(self, partition: int, offset: int, value: Optional[bytes], headers: Optional[list]) -> Verdict | str:
        """One `allocations` record (called on the event loop, between consumes)."""
        warm_end = self.warm_until.get(partition)
        live = warm_end is None or offset >= warm_end
        if warm_end is not None and offset + 1 >= warm_end:
            del self.warm_until[partition]
        self.tracker.consumed(partition, offset)
        try:
            allocation = Allocation.from_record(decode(value, names.ALLOCATION_CHANGE))
        except (CodecError, KeyError, ValueError, TypeError) as exc:
            log.error("allocations %d@%d undecodable, skipped: %s", partition, offset, exc)
            verdict: Verdict | str = "undecodable"
        else:
            verdict = self.state.apply(allocation, (partition, offset), live=live, retry=is_retry(headers))
            if verdict in (Verdict.APPLIED, Verdict.RETRY) and live:
                pusher = self.pushers.get(allocation.channel)
                if pusher is not None:
                    pusher.wake.set()
        name = verdict.value if isinstance(verdict, Verdict) else verdict
        self.verdicts[name] = self.verdicts.get(name, 0) + 1
        metrics.ALLOCATIONS_SEEN.labels(name).inc()
        return verdict

    def _refresh_index(self) -> None:
        if self.feed.generation == self._catalog_generation:
            return
        for key in self.state.set_index(self._build_index()):
            pusher = self.pushers.get(key[0])
            if pusher is not None:
                pusher.wake.set()

    async def _commit(self, consumer: Consumer) -> None:
        wanted = {p: o for p, o in self.tracker.committable().items() if self.committed.get(p) != o}
        if not wanted:
            return
        offsets = [TopicPartition(self.topic, p, o) for p, o in wanted.items()]
        if await asyncio.to_thread(consumer_errors.commit, consumer, offsets):
            self.committed.update(wanted)

    # ---------------------------------------------------------------- reconciliation

    async def reconcile_now(self) -> list[Drift]:
        drifts = await self.reconciler.run_once()
        if drifts:
            await asyncio.to_thread(self.writer.write, RECONCILIATION.name, [d.record() for d in drifts])
            for drift in drifts:
                log.warning(
                    "drift on %s %s: expected %d, shows %d; pushing again",
                    drift.target.listing.channel, drift.target.listing.platform_sku_id, drift.expected, drift.actual,
                )
                pusher = self.pushers.get(drift.target.listing.channel)
                if pusher is not None:
                    pusher.wake.set()
        return drifts

    async def _reconcile_loop(self, stop: asyncio.Event) -> None:
        await self.live.wait()
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), timeout=self.reconcile_interval_s)
                return
            except asyncio.TimeoutError:
                pass
            try:
                await self.reconcile_now()
            except Exception as exc:  # a platform or Kafka hiccup: the next round tries again
                log.warning("reconciliation round failed: %s", exc)

    # ---------------------------------------------------------------- run

    async def run(self, stop: asyncio.Event) -> None:
        own_topics = (ALLOCATIONS, CATALOG, CHANNEL_DLQ, RECONCILIATION)
        await asyncio.to_thread(ensure_topics, self.settings, own_topics)
        await asyncio.to_thread(_wait_for_leaders, self.settings, [self.settings.topic(t.name) for t in own_topics])
        if self.metrics_port is not None:
            self.metrics_port = metrics.serve(self.metrics_port)
            log.info("sink metrics on :%d/metrics", self.metrics_port)
        if self._own_feed:
            self.feed.start()
        try:
            while not await asyncio.to_thread(self.feed.wait_ready, 0.5):
                if self.feed.failure is not None:
                    raise RuntimeError(f"the catalog feed failed: {self.feed.failure}") from self.feed.failure
                if stop.is_set():
                    return
            self._refresh_index()
            consumer = self._consumer()
            try:
                await asyncio.to_thread(self._assign, consumer)
                await self._loop(consumer, stop)
            finally:
                await asyncio.to_thread(consumer.close)
        finally:
            if self._own_feed:
                self.feed.stop()
            for adapter in self.adapters.values():
                await adapter.close()

    async def _loop(self, consumer: Consumer, stop: asyncio.Event) -> None:
        pusher_stop = asyncio.Event()
        tasks = [asyncio.create_task(p.run(pusher_stop), name=f"push {c}") for c, p in self.pushers.items()]
        if self.reconcile_interval_s:
            tasks.append(asyncio.create_task(self._reconcile_loop(pusher_stop), name="reconcile"))
        last_commit = time.monotonic()
        try:
            while not stop.is_set():
                messages = await asyncio.to_thread(consumer.consume, self.batch_size, 0.1)
                for message in messages:
                    if consumer_errors.is_error(message):
                        continue
                    self.handle(message.partition(), message.offset(), message.value(), message.headers())
                if not self.warm_until and not self.live.is_set():
                    self.live.set()
                    log.info("sink warm-up done: %d allocations known", len(self.state.allocations))
                self._refresh_index()
                for task in tasks:
                    if task.done() and task.exception() is not None:
                        raise task.exception()  # type: ignore[misc]
                if time.monotonic() - last_commit >= self.commit_interval_s:
                    await self._commit(consumer)
                    last_commit = time.monotonic()
        finally:
            pusher_stop.set()
            done, pending = await asyncio.wait(tasks, timeout=15)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            await self._commit(consumer)


# The group coordinator is not there yet (fresh cluster, coordinator moving): ask again.
_COORDINATOR_ERRORS = frozenset(
    {KafkaError.NOT_COORDINATOR, KafkaError.COORDINATOR_LOAD_IN_PROGRESS, KafkaError.COORDINATOR_NOT_AVAILABLE, KafkaError._TIMED_OUT}
)


def _wait_for_leaders(settings: Settings, topics: list[str], timeout_s: float = 30.0) -> None:
    """Topics created a moment ago answer "not leader" for a while (metadata may already name a
    leader): wait until every partition's watermarks can be read."""
    consumer = Consumer({"bootstrap.servers": settings.bootstrap_servers, "group.id": "stockstream-sink-probe"})
    deadline = time.monotonic() + timeout_s
    try:
        pending = list(topics)
        while pending and time.monotonic() < deadline:
            still = []
            for topic in pending:
                try:
                    metadata = consumer.list_topics(topic, timeout=10)
                    for p in metadata.topics[topic].partitions:
                        consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=5)
                except (KafkaException, KeyError):
                    still.append(topic)
            pending = still
            if pending:
                time.sleep(0.2)
    finally:
        consumer.close()


def _committed(consumer: Consumer, partitions: list[TopicPartition]) -> list[TopicPartition]:
    retrying = Retrying(
        retry=retry_if_exception(lambda e: isinstance(e, KafkaException) and e.args[0].code() in _COORDINATOR_ERRORS),
        wait=wait_exponential_jitter(initial=0.2, max=3.0),
        stop=stop_after_delay(60),
        reraise=True,
    )
    return retrying(consumer.committed, partitions, timeout=30)


def run_sink(settings: Settings, platform: Optional[str] = None) -> None:
    """Run until SIGINT / SIGTERM."""
    import signal

    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await ChannelSink(settings, platform=platform).run(stop)

    asyncio.run(main())
