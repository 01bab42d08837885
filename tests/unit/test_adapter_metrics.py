"""Adapter metrics (connectors/metrics.py) against the simulators, without Kafka (list sinks):
every inbound channel counts a forged signature under `stockstream_adapter_rejected_total` with
its reason, stale request timestamps are counted where the platform has a timestamp window,
deliveries are counted written or duplicate, stock writes by outcome."""

from __future__ import annotations

import asyncio
import json
import time

import aiohttp
import pytest

from connectors import douyin, metrics
from connectors.adapters.douyin import DouyinAdapter
from connectors.adapters.jd import JdAdapter
from connectors.adapters.pdd import PddAdapter
from connectors.adapters.state import MemoryCursorStore
from connectors.adapters.tmall import TmallAdapter
from connectors.adapters.warehouse import TOKEN_HEADER, WarehouseAdapter
from connectors.base import StockWrite
from connectors.publisher import RawPublisher
from connectors.simulators.base_api import SimShop
from connectors.simulators.douyin_api import DouyinSim
from connectors.simulators.jd_api import JdSim
from connectors.simulators.pdd_api import PddSim
from connectors.simulators.tmall_api import TmallSim
from stockstream.core.model import LineStatus
from stockstream.settings import Settings, ShopCredentials

SIMS = {"tmall": TmallSim, "jd": JdSim, "douyin": DouyinSim, "pdd": PddSim}
SHOP_IDS = {"tmall": "2200754211234", "jd": "10086001", "douyin": "4463798", "pdd": "987654321"}
SKU = {"tmall": ("681234567890", "5012345678901"), "jd": ("10001234567", "100012345678"),
       "douyin": ("3539925204033339668", "1750000000000000001"), "pdd": ("123456789", "1234567890")}
ELEVEN_MINUTES_MS = 11 * 60_000


class ListSink:
    def __init__(self) -> None:
        self.records = []

    async def __call__(self, platform, records):
        self.records.extend(records)


def rejected(platform: str, reason: str) -> float:
    return metrics.value(metrics.REJECTED, platform=platform, reason=reason)


def shop(platform: str) -> SimShop:
    return SimShop(SHOP_IDS[platform], f"{platform}-app", f"{platform}-secret", f"{platform}-token")


def creds(platform: str, url: str, secret: str = "") -> list[ShopCredentials]:
    s = shop(platform)
    return [ShopCredentials(platform=platform, shop_id=s.shop_id, app_key=s.app_key, app_secret=secret or s.app_secret,
                            access_token=s.access_token, api_base_url=url)]


@pytest.fixture
async def sims():
    started = {}
    for platform, cls in SIMS.items():
        sim = cls([shop(platform)])
        listing, sku = SKU[platform]
        sim.register_sku(SHOP_IDS[platform], sku, listing, "MC-001", quantity=50)
        await sim.start()
        started[platform] = sim
    yield started
    for sim in started.values():
        await sim.stop()


def adapter(platform: str, sim, secret: str = "", **options):
    cls = {"tmall": TmallAdapter, "jd": JdAdapter, "douyin": DouyinAdapter, "pdd": PddAdapter}[platform]
    if platform == "jd":
        options.setdefault("cursor_store", MemoryCursorStore())
    return cls(creds(platform, sim.base_url, secret), sink=ListSink(), **options)


def a_write(platform: str) -> StockWrite:
    listing, sku = SKU[platform]
    return StockWrite(shop_id=SHOP_IDS[platform], platform_sku_id=sku, listing_id=listing, quantity=7)


# ------------------------------------------------------------------------------ forged signatures


async def test_douyin_forged_push_signature_is_rejected_and_counted(sims):
    receiver = adapter("douyin", sims["douyin"])
    url = await receiver.start()
    before = rejected("douyin", metrics.BAD_SIGNATURE)
    body = b'[{"tag":"100","msg_id":"1","data":"{}"}]'
    try:
        async with aiohttp.ClientSession() as http:
            forged = douyin.event_sign("douyin-app", body, "guessed-secret")
            async with http.post(url, data=body, headers={"app-id": "douyin-app", "event-sign": forged}) as r:
                assert r.status == 401
            async with http.get(url.rsplit("/douyin", 1)[0] + "/metrics") as r:
                text = await r.text()
    finally:
        await receiver.stop()
    assert rejected("douyin", metrics.BAD_SIGNATURE) == before + 1
    assert 'stockstream_adapter_rejected_total{platform="douyin",reason="bad_signature"}' in text
    assert receiver.sink.records == []


async def test_tmc_refusing_our_signature_is_counted(sims):
    tmc = adapter("tmall", sims["tmall"], secret="not-the-secret")
    before = rejected("tmall", metrics.BAD_SIGNATURE)
    try:
        with pytest.raises(Exception):
            await tmc.drain_once(tmc.book.shops)
    finally:
        await tmc.close()
    assert rejected("tmall", metrics.BAD_SIGNATURE) == before + 1 and tmc.bad_signatures == 1


async def test_pdd_refusing_our_websocket_signature_is_counted(sims):
    client = adapter("pdd", sims["pdd"], secret="not-the-secret", reconnect_max_s=0.05)
    before = rejected("pdd", metrics.BAD_SIGNATURE)
    task = asyncio.create_task(client.run())
    try:
        deadline = time.monotonic() + 5
        while client.counters["auth_failed"] < 2 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await client.close()
    assert client.counters["connects"] == 0
    assert rejected("pdd", metrics.BAD_SIGNATURE) - before == client.counters["auth_failed"] >= 2


async def test_jd_refusing_our_signature_is_counted(sims):
    poller = adapter("jd", sims["jd"], secret="not-the-secret")
    before = rejected("jd", metrics.BAD_SIGNATURE)
    try:
        with pytest.raises(Exception):
            await poller.poll_once(poller.book.shops[0])
    finally:
        await poller.close()
    assert rejected("jd", metrics.BAD_SIGNATURE) == before + 1


async def test_warehouse_unknown_token_is_rejected_and_counted():
    settings = Settings(bootstrap_servers="127.0.0.1:1", topic_prefix="unit-")
    wh = WarehouseAdapter(RawPublisher(settings), tokens={"WH-1": "right-token"}, port=0)
    url = await wh.start()
    before = rejected("warehouse", metrics.BAD_TOKEN)
    try:
        async with aiohttp.ClientSession() as http:
            async with http.post(url, data=b"{}", headers={"Content-Type": "application/json", TOKEN_HEADER: "forged"}) as r:
                assert r.status == 401
            async with http.get(url.rsplit("/warehouse", 1)[0] + "/metrics") as r:
                assert 'reason="bad_token"' in await r.text()
    finally:
        await wh.stop()
    assert rejected("warehouse", metrics.BAD_TOKEN) == before + 1


# ------------------------------------------------------------------------------ stale timestamps


@pytest.mark.parametrize("platform", ["tmall", "jd", "douyin", "pdd"])
async def test_a_clock_eleven_minutes_behind_is_refused_and_counted(sims, platform, monkeypatch):
    """Every platform's gateway refuses requests whose timestamp is off by more than its window
    (10 minutes for TOP and PDD; the simulators apply it to JD and Douyin too): counted as stale."""
    real = int(time.time() * 1000)
    monkeypatch.setattr(f"connectors.adapters.{platform}.now_ms", lambda: real - ELEVEN_MINUTES_MS)
    client = adapter(platform, sims[platform])
    before = rejected(platform, metrics.STALE_TIMESTAMP)
    failed_before = metrics.value(metrics.STOCK_WRITES, platform=platform, outcome="failed")
    try:
        [result] = await client.write_stock(client.book.shops[0], [a_write(platform)])
    finally:
        await client.close()
    assert not result.ok
    assert rejected(platform, metrics.STALE_TIMESTAMP) == before + 1
    assert metrics.value(metrics.STOCK_WRITES, platform=platform, outcome="failed") == failed_before + 1


async def test_tmc_consume_with_a_stale_clock_is_counted(sims, monkeypatch):
    real = int(time.time() * 1000)
    monkeypatch.setattr("connectors.adapters.tmall.now_ms", lambda: real - ELEVEN_MINUTES_MS)
    tmc = adapter("tmall", sims["tmall"])
    before = rejected("tmall", metrics.STALE_TIMESTAMP)
    try:
        with pytest.raises(Exception):
            await tmc.drain_once(tmc.book.shops)
    finally:
        await tmc.close()
    assert rejected("tmall", metrics.STALE_TIMESTAMP) == before + 1


# ------------------------------------------------------------------------------ deliveries, stock writes


async def test_tmc_redeliveries_are_confirmed_not_written_and_counted(sims):
    sim = sims["tmall"]
    listing, sku = SKU["tmall"]
    order = sim.create_order(SHOP_IDS["tmall"], [{"sku_id": sku, "listing_id": listing, "merchant_code": "MC-001", "quantity": 1}])
    sim.advance(order.order_id, LineStatus.PAID)
    tmc = adapter("tmall", sim, fetch_fullinfo=False)
    written_before = metrics.value(metrics.EVENTS, platform="tmall", outcome="written")
    dup_before = metrics.value(metrics.DUPLICATES, platform="tmall")
    try:
        assert await tmc.drain_once(tmc.book.shops) == 2
        ids = [r.headers["message-id"] for r in tmc.sink.records]
        # The platform serves both messages again (as after a lost confirm).
        queue = sim.queue("tmall-app")
        for record in list(tmc.sink.records):
            queue.put(record.headers["message-id"], json.loads(record.value), SHOP_IDS["tmall"])
        assert await tmc.drain_once(tmc.book.shops) == 2
    finally:
        await tmc.close()
    assert [r.headers["message-id"] for r in tmc.sink.records] == ids, "confirmed, not written again"
    assert metrics.value(metrics.EVENTS, platform="tmall", outcome="written") == written_before + 2
    assert metrics.value(metrics.DUPLICATES, platform="tmall") == dup_before + 2
    assert tmc.counters["duplicates"] == 2 and sim.pending() == 0


async def test_successful_stock_write_is_counted(sims):
    client = adapter("pdd", sims["pdd"])
    before = metrics.value(metrics.STOCK_WRITES, platform="pdd", outcome="written")
    try:
        [result] = await client.write_stock(client.book.shops[0], [a_write("pdd")])
    finally:
        await client.close()
    assert result.ok
    assert metrics.value(metrics.STOCK_WRITES, platform="pdd", outcome="written") == before + 1
