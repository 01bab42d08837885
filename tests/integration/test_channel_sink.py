"""The channel sink on the real broker against the four marketplace simulators.

Allocation changes (with duplicates and older versions delivered after newer ones) end as the
latest quantities in every simulated shop, also while the platforms fail or throttle 30% of the
calls; no older quantity is ever written after a newer one (the simulators' stock history); a
SKU the platform does not know is parked in the dead-letter topic and `dlq retry` pushes it once
the platform knows it; reconciliation finds injected drift, publishes it and corrects it; a
restarted sink rebuilds its memory without pushing again and goes on with new versions.
"""

from __future__ import annotations

import asyncio
import json
import urllib.request
from typing import Any

import pytest

from connectors.simulators.base_api import PlatformSim
from connectors.simulators.douyin_api import DouyinSim
from connectors.simulators.jd_api import JdSim
from connectors.simulators.pdd_api import PddSim
from connectors.simulators.tmall_api import TmallSim
from schemas import names
from schemas.codec import encode
from sinks.dead_letter import retry_dead_letters
from sinks.kafka_io import TopicWriter
from sinks.listings import Listing, channel_of
from sinks.process import ChannelSink
from stockstream.catalog_topic import publish_catalog
from stockstream.topics import ALLOCATIONS, CATALOG, CHANNEL_DLQ, RECONCILIATION, ensure_topics
from tests.support.adapters import credentials, read_topic, sim_shops, sku_catalog, wait_until

pytestmark = pytest.mark.integration

SIMS = {"tmall": TmallSim, "jd": JdSim, "douyin": DouyinSim, "pdd": PddSim}
SKUS = ["SKU-1", "SKU-2", "SKU-3"]
BUNDLE_SKU_ID = "5012345678999"  # a Tmall gift set: SKU-1 x1 + SKU-2 x2
BAD = "SKU-BAD"  # listed on JD under a SKU id JD does not know
BAD_SKU_ID = "100099999999"
# Delivery order of versions per (SKU, channel): duplicates and older after newer.
DELIVERIES = [1, 2, 2, 4, 3, 5, 1, 6, 6, 5]
LATEST = max(DELIVERIES)


def quantity(sku_index: int, version: int) -> int:
    """Distinct per (SKU, version), increasing with the version: the history tells the version."""
    return 10 * version + sku_index


class Shops:
    """One shop per platform, the SKUs listed under each platform's id style."""

    def __init__(self, platforms=tuple(SIMS)) -> None:
        self.sims: dict[str, PlatformSim] = {}
        self.listings: list[Listing] = []
        self.shops: dict[str, Any] = {}
        for p in platforms:
            shop = sim_shops(p, 1)
            self.sims[p] = SIMS[p](shop, seed=7)
            self.shops[p] = shop[0]

    async def start(self, settings) -> Any:
        creds = []
        for p, sim in self.sims.items():
            url = await sim.start()
            creds += credentials(p, [self.shops[p]], url)
            shop_id = self.shops[p].shop_id
            for i, (sku, style) in enumerate(zip(SKUS, sku_catalog(p, len(SKUS)))):
                sim.register_sku(shop_id, style["sku_id"], style["listing_id"], sku, quantity=0)
                self.listings.append(Listing(p, shop_id, style["listing_id"], style["sku_id"], sku))
            if p == "tmall":
                sim.register_sku(shop_id, BUNDLE_SKU_ID, style["listing_id"], "GIFT-1", quantity=0)
                self.listings.append(Listing(p, shop_id, style["listing_id"], BUNDLE_SKU_ID, "GIFT-1"))
            if p == "jd":
                self.listings.append(Listing(p, shop_id, style["listing_id"], BAD_SKU_ID, BAD))
        return settings.model_copy(update={"shops": creds})

    def sku_id(self, platform: str, sku: str) -> str:
        return next(l.platform_sku_id for l in self.listings if l.platform == platform and l.merchant_code == sku)

    def channel(self, platform: str) -> str:
        return channel_of(platform, self.shops[platform].shop_id)

    def shows(self, platform: str, sku_id: str) -> int:
        return self.sims[platform].stock_of(self.shops[platform].shop_id, sku_id)

    def set_faults(self, fail: float, throttle: float) -> None:
        for sim in self.sims.values():
            sim.knobs.fail_rate, sim.knobs.throttle_rate = fail, throttle

    async def stop(self) -> None:
        for sim in self.sims.values():
            await sim.stop()


def allocation_records(shops: Shops, deliveries=DELIVERIES, skus=SKUS, platforms=None) -> list:
    records = []
    for version in deliveries:
        for p in platforms or shops.sims:
            for i, sku in enumerate(skus, start=1):
                record = {
                    "sku": sku, "channel": shops.channel(p), "quantity": quantity(i, version),
                    "previous_quantity": quantity(i, version - 1), "version": version, "ats": 1000, "ats_version": version,
                    "rule_version": 1, "mode": "shared", "movement_ids": [f"m-{version}"], "computed_at_ms": _now_ms(),
                    "event_time_ms": _now_ms(),
                }
                records.append((sku.encode(), encode(names.ALLOCATION_CHANGE, record), None))
    return records


def _now_ms() -> int:
    import time

    return int(time.time() * 1000)


def publish(settings, records) -> None:
    TopicWriter(settings).write(ALLOCATIONS.name, records)


def publish_gift_set(settings) -> None:
    publish_catalog(settings, [("tmall", BUNDLE_SKU_ID, "GIFT-1", "SKU-1", 1), ("tmall", BUNDLE_SKU_ID, "GIFT-1", "SKU-2", 2)])


def mismatches(shops: Shops, expected: dict) -> list:
    """(platform, SKU id, shows, expected) where a shop shows something else."""
    return [(*k, shops.shows(*k), q) for k, q in expected.items() if shops.shows(*k) != q]


def expected_quantities(shops: Shops, version: int = LATEST) -> dict[tuple[str, str], int]:
    out = {(p, shops.sku_id(p, sku)): quantity(i, version) for p in shops.sims for i, sku in enumerate(SKUS, start=1)}
    if "tmall" in shops.sims:
        out[("tmall", BUNDLE_SKU_ID)] = min(quantity(1, version) // 1, quantity(2, version) // 2)
    return out


def assert_versions_never_go_back(shops: Shops) -> None:
    for p, sim in shops.sims.items():
        for i, sku in enumerate(SKUS, start=1):
            sku_id = shops.sku_id(p, sku)
            written = [c.quantity for c in sim.stock_writes if c.sku_id == sku_id]
            versions = [(q - i) // 10 for q in written]
            assert written and all(quantity(i, v) == q for v, q in zip(versions, written)), (p, sku, written)
            assert versions == sorted(versions), f"{p} {sku}: an older version was written after a newer one: {versions}"


async def start_sink(settings, shops: Shops, **options) -> tuple[ChannelSink, asyncio.Event, asyncio.Task]:
    sink = ChannelSink(settings, listings=shops.listings, **{"metrics_port": None, "reconcile_interval_s": 0, **options})
    stop = asyncio.Event()
    task = asyncio.create_task(sink.run(stop))
    await wait_until(lambda: sink.live.is_set() or task.done(), 30, what="sink warm-up")
    if task.done():
        task.result()
    return sink, stop, task


async def stop_sink(stop: asyncio.Event, task: asyncio.Task) -> None:
    stop.set()
    await asyncio.wait_for(task, 30)


async def test_latest_quantities_reach_every_shop_under_faults_and_bad_skus_are_parked(settings):
    ensure_topics(settings, (ALLOCATIONS, CATALOG, CHANNEL_DLQ, RECONCILIATION))
    publish_gift_set(settings)
    shops = Shops()
    settings = await shops.start(settings)
    shops.set_faults(fail=0.15, throttle=0.15)  # 30% of calls refused
    sink, stop, task = await start_sink(settings, shops, metrics_port=0)
    try:
        records = allocation_records(shops)
        bad = [
            (BAD.encode(), encode(names.ALLOCATION_CHANGE, {
                "sku": BAD, "channel": shops.channel("jd"), "quantity": 5, "previous_quantity": 0, "version": 1, "ats": 5,
                "ats_version": 1, "rule_version": 1, "mode": "shared", "movement_ids": [], "computed_at_ms": _now_ms(),
                "event_time_ms": None,
            }), None)
        ]
        half = len(records) // 2
        await asyncio.to_thread(publish, settings, records[:half] + bad)
        await asyncio.sleep(1.0)
        await asyncio.to_thread(publish, settings, records[half:])
        await asyncio.sleep(3.0)  # pushes under faults
        faulted = {p: dict(sim.stats) for p, sim in shops.sims.items()}
        assert sum(s.get("throttled", 0) + s.get("failed", 0) for s in faulted.values()) > 0
        shops.set_faults(0.0, 0.0)  # the platforms recover
        expected = expected_quantities(shops)
        await wait_until(lambda: not mismatches(shops, expected), 45, what=lambda: f"shops: {mismatches(shops, expected)}")
        assert_versions_never_go_back(shops)

        letters = [json.loads(r.value) for r in await read_topic(settings, CHANNEL_DLQ.name)]
        assert letters and {l["platform_sku_id"] for l in letters} == {BAD_SKU_ID}
        assert letters[0]["reason"].startswith("platform_error:") and letters[0]["allocations"][0]["sku"] == BAD

        # Everything consumed is committed once pushed or parked.
        await wait_until(lambda: sink.tracker.unsettled() == 0 and sink.committed == sink.tracker.committable(), 10)
        assert sum(sink.committed.values()) == len(records) + len(bad)

        # The push latency and outcomes are on /metrics.
        body = await asyncio.to_thread(lambda: urllib.request.urlopen(f"http://127.0.0.1:{sink.metrics_port}/metrics").read().decode())
        assert 'stockstream_channel_push_latency_seconds_count{platform="pdd"}' in body
        assert 'stockstream_channel_pushes_total{outcome="parked",platform="jd"}' in body
        outcomes = {line.split('outcome="')[1].split('"')[0] for line in body.splitlines() if line.startswith("stockstream_channel_pushes_total{")}
        assert {"written", "throttled", "parked"} <= outcomes, body  # transient errors: retried inside the adapter (tenacity)

        # The platform learns the SKU; `dlq retry` pushes the parked quantity.
        shops.sims["jd"].register_sku(shops.shops["jd"].shop_id, BAD_SKU_ID, "10001234567", BAD, quantity=0)
        assert await asyncio.to_thread(retry_dead_letters, settings, shops.channel("jd")) == len(letters)
        await wait_until(lambda: shops.shows("jd", BAD_SKU_ID) == 5, 15, what="the retried dead letter pushed")
    finally:
        await stop_sink(stop, task)
        await shops.stop()


async def test_reconciliation_publishes_and_corrects_drift(settings):
    ensure_topics(settings, (ALLOCATIONS, CATALOG, CHANNEL_DLQ, RECONCILIATION))
    publish_gift_set(settings)
    shops = Shops()
    settings = await shops.start(settings)
    sink, stop, task = await start_sink(settings, shops, confirmations=2)
    try:
        await asyncio.to_thread(publish, settings, allocation_records(shops, deliveries=[1, 2]))
        expected = expected_quantities(shops, version=2)
        await wait_until(lambda: not mismatches(shops, expected), 20, what=lambda: f"shops: {mismatches(shops, expected)}")
        assert await sink.reconcile_now() == []

        # Someone edits stock in the seller centres.
        drifted = {("jd", shops.sku_id("jd", "SKU-2")): 3, ("pdd", shops.sku_id("pdd", "SKU-1")): 99}
        for (p, sku_id), q in drifted.items():
            shops.sims[p].set_stock(shops.shops[p].shop_id, sku_id, q)
        assert await sink.reconcile_now() == []  # first sighting: could be a sale in flight
        found = await sink.reconcile_now()
        assert {(d.target.listing.platform, d.target.listing.platform_sku_id): d.actual for d in found} == drifted
        await wait_until(lambda: all(shops.shows(*k) == expected[k] for k in drifted), 15, what="drift corrected")

        published = [json.loads(r.value) for r in await read_topic(settings, RECONCILIATION.name)]
        assert sorted((r["channel"], r["sku"], r["expected"], r["actual"]) for r in published) == sorted(
            [(shops.channel("jd"), "SKU-2", expected[("jd", shops.sku_id("jd", "SKU-2"))], 3),
             (shops.channel("pdd"), "SKU-1", expected[("pdd", shops.sku_id("pdd", "SKU-1"))], 99)]
        )
        assert all(r["detected_at"] for r in published)
        assert await sink.reconcile_now() == []
    finally:
        await stop_sink(stop, task)
        await shops.stop()


async def test_restarted_sink_rebuilds_memory_without_pushing_again(settings):
    ensure_topics(settings, (ALLOCATIONS, CATALOG, CHANNEL_DLQ, RECONCILIATION))
    shops = Shops(("jd", "pdd"))
    settings = await shops.start(settings)
    sink, stop, task = await start_sink(settings, shops)
    await asyncio.to_thread(publish, settings, allocation_records(shops, deliveries=[1, 3, 2]))
    expected = expected_quantities(shops, version=3)
    await wait_until(lambda: not mismatches(shops, expected), 20, what=lambda: f"shops: {mismatches(shops, expected)}")
    await stop_sink(stop, task)
    writes_before = {p: len(sim.stock_writes) for p, sim in shops.sims.items()}
    try:
        again, stop, task = await start_sink(settings, shops)
        assert again.state.allocations[("SKU-1", shops.channel("jd"))].version == 3
        await asyncio.sleep(1.5)
        assert {p: len(sim.stock_writes) for p, sim in shops.sims.items()} == writes_before
        # Replays of old versions are ignored; a new version is pushed.
        await asyncio.to_thread(publish, settings, allocation_records(shops, deliveries=[3, 2, 4], skus=["SKU-1"]))
        await wait_until(lambda: shops.shows("jd", shops.sku_id("jd", "SKU-1")) == quantity(1, 4), 15, what="version 4")
        await wait_until(lambda: shops.shows("pdd", shops.sku_id("pdd", "SKU-1")) == quantity(1, 4), 15, what="version 4")
        assert {p: len(sim.stock_writes) - writes_before[p] for p, sim in shops.sims.items()} == {"jd": 1, "pdd": 1}
        assert_versions_never_go_back(shops)
    finally:
        await stop_sink(stop, task)
        await shops.stop()
