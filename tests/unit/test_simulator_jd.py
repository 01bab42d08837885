"""The JOS simulator checks what JOS checks; the JD adapter's search paging, cursor and stock
writes (no Kafka: list sink and in-memory cursor store)."""

from __future__ import annotations

import json
import time

import aiohttp
import pytest

from connectors import jd
from connectors.adapters.common import Failed, PermanentApiError, Throttled
from connectors.adapters.jd import JdAdapter
from connectors.adapters.state import MemoryCursorStore
from connectors.base import StockWrite, format_gmt8
from connectors.simulators.base_api import SimShop
from connectors.simulators.jd_api import JdSim
from stockstream.core.model import LineStatus
from stockstream.settings import ShopCredentials

SHOPS = [SimShop("10086001", "jd-app-a", "jd-secret-a", "jd-token-a"), SimShop("10086002", "jd-app-b", "jd-secret-b", "jd-token-b")]
SKUS = [str(100012345678 + i) for i in range(5)]


def creds(url: str, shop: SimShop = SHOPS[0], **over) -> ShopCredentials:
    return ShopCredentials(
        platform="jd", shop_id=shop.shop_id, app_key=shop.app_key, app_secret=over.get("secret", shop.app_secret),
        access_token=over.get("token", shop.access_token), api_base_url=url,
    )


class ListSink:
    def __init__(self) -> None:
        self.records = []

    async def __call__(self, platform, records):
        self.records.extend(records)


@pytest.fixture
async def sim():
    s = JdSim(SHOPS)
    for shop in SHOPS:
        for sku in SKUS:
            s.register_sku(shop.shop_id, sku, "10001234567", f"MC-{sku[-2:]}", quantity=50)
    await s.start()
    yield s
    await s.stop()


def adapter_for(sim: JdSim, **kw) -> JdAdapter:
    options = dict(sink=ListSink(), cursor_store=MemoryCursorStore(), lag_s=0, overlap_s=5, page_size=3)
    options.update(kw)
    return JdAdapter([creds(sim.base_url, s) for s in SHOPS], **options)


async def test_signature_timestamp_and_token_are_checked(sim):
    params = {
        "method": "jingdong.pop.order.search", "app_key": "jd-app-a", "access_token": "jd-token-a",
        "timestamp": jd.timestamp(int(time.time() * 1000)), "v": "2.0", "sign_method": "md5",
        "360buy_param_json": json.dumps({"start_date": "2024-11-11 00:00:00", "end_date": "2024-11-11 01:00:00"}),
    }

    async def call(p, secret="jd-secret-a"):
        p = dict(p)
        p["sign"] = jd.sign(p, secret)
        async with aiohttp.ClientSession() as http:
            async with http.post(sim.base_url + "/routerjson", data=p) as r:
                return await r.json()

    assert jd.SEARCH_RESPONSE_KEY in await call(params)
    bad = await call(params, "wrong")
    assert bad["error_response"]["code"] == "14" and set(bad["error_response"]) == {"code", "zh_desc", "en_desc"}
    assert sim.stats["bad_signature"] == 1
    old = await call({**params, "timestamp": format_gmt8(int(time.time() * 1000) - 11 * 60_000, millis=True) + "+0800"})
    assert old["error_response"]["code"] == "8"
    no_zone = await call({**params, "timestamp": format_gmt8(int(time.time() * 1000))})
    assert no_zone["error_response"]["code"] == "8"
    foreign = await call({**params, "access_token": "jd-token-b"})
    assert foreign["error_response"]["code"] == "19"


async def test_search_pages_every_paid_order_of_the_shop_once(sim):
    ids = [sim.create_order(SHOPS[0].shop_id, [{"sku_id": SKUS[i % 5], "quantity": 1}], "PAID").order_id for i in range(8)]
    sim.create_order(SHOPS[1].shop_id, [{"sku_id": SKUS[0], "quantity": 1}], "PAID")
    unpaid = sim.create_order(SHOPS[0].shop_id, [{"sku_id": SKUS[0], "quantity": 1}], "CREATED")
    adapter = adapter_for(sim)
    try:
        now = int(time.time() * 1000)
        orders = await adapter.search_window(creds(sim.base_url), now - 60_000, now + 1000)
        assert sorted(o["orderId"] for o in orders) == sorted(ids)
        assert unpaid.order_id not in {o["orderId"] for o in orders}, "sellers do not see unpaid orders"
        assert sim.stats["jingdong.pop.order.search"] == 4, "page 1 for the total, then pages 3, 2, 1"
    finally:
        await adapter.close()


async def test_search_rescans_when_orders_leave_the_window_while_paging(sim):
    ids = [sim.create_order(SHOPS[0].shop_id, [{"sku_id": SKUS[0], "quantity": 1}], "PAID").order_id for i in range(7)]
    now = int(time.time() * 1000)
    until = now // 1000 * 1000
    original = sim._search
    calls = []

    def search_and_move(shop, p):
        calls.append(p["page"])
        if len(calls) == 2:  # while paging, the first order is modified after the window
            sim.clock = lambda: until + 5000
            sim.advance(ids[0], LineStatus.SHIPPED)
        return original(shop, p)

    sim._search = search_and_move
    adapter = adapter_for(sim)
    try:
        orders = await adapter.search_window(creds(sim.base_url), now - 60_000, until)
        assert set(ids[1:]) <= {o["orderId"] for o in orders}, "no order skipped by the page shift"
        assert adapter.counters["window_rescanned"] == 1
    finally:
        await adapter.close()


async def test_poll_once_moves_the_cursor_and_rereads_only_the_overlap(sim):
    store = MemoryCursorStore()
    sink = ListSink()
    adapter = adapter_for(sim, sink=sink, cursor_store=store, overlap_s=1, initial_lookback_s=3600)
    real = sim.clock
    sim.clock = lambda: real() - 600_000
    sim.create_order(SHOPS[0].shop_id, [{"sku_id": SKUS[0], "quantity": 1}], "PAID")
    sim.clock = real
    try:
        assert await adapter.poll_once(creds(sim.base_url)) == 1
        key = f"jd/{SHOPS[0].shop_id}"
        assert store.values[key]["cursor_ms"] == adapter.cursors[key]
        assert await adapter.poll_once(creds(sim.base_url)) == 0, "the old order is outside the overlap"
        again = adapter_for(sim, sink=sink, cursor_store=store, overlap_s=1)
        assert await again.load_cursors() == {key: store.values[key]["cursor_ms"]}
        await again.close()
    finally:
        await adapter.close()


async def test_connector_poll_yields_a_window(sim):
    order = sim.create_order(SHOPS[1].shop_id, [{"sku_id": SKUS[1], "quantity": 2}], "PAID")
    adapter = adapter_for(sim)
    try:
        now = int(time.time() * 1000)
        records = [r async for r in adapter.poll(creds(sim.base_url, SHOPS[1]), now - 60_000, now + 1000)]
        assert [r.key for r in records] == [order.order_id]
        assert records[0].headers["kind"] == "order" and records[0].headers["shop"] == SHOPS[1].shop_id
        assert records[0].headers["message-id"].startswith(order.order_id + ":")
        assert b"consigneeInfo" not in records[0].value
    finally:
        await adapter.close()


async def test_write_stock_overwrites_and_maps_errors(sim):
    adapter = adapter_for(sim)
    shop = creds(sim.base_url)
    try:
        ok, unknown = await adapter.write_stock(shop, [StockWrite(shop.shop_id, SKUS[0], 7), StockWrite(shop.shop_id, "404", 1)])
        assert ok.ok and sim.stock_of(shop.shop_id, SKUS[0]) == 7
        assert isinstance(unknown, Failed) and unknown.permanent
        assert sim.stock_writes[-1].method == "jingdong.stock.write.updateSkuStock"
        assert await adapter.read_stock(shop, [SKUS[0], SKUS[1]]) == {SKUS[0]: 7, SKUS[1]: 50}
        sim.knobs.throttle_rate = 1.0
        (throttled,) = await adapter.write_stock(shop, [StockWrite(shop.shop_id, SKUS[0], 8)])
        assert isinstance(throttled, Throttled) and throttled.error_code == "67" and throttled.retry_after_s
        sim.knobs.throttle_rate = 0.0
        sim.knobs.fail_rate = 0.4
        results = await adapter.write_stock(shop, [StockWrite(shop.shop_id, s, 9) for s in SKUS])
        assert all(r.ok for r in results) and all(sim.stock_of(shop.shop_id, s) == 9 for s in SKUS)
    finally:
        await adapter.close()


async def test_bad_secret_is_a_permanent_error(sim):
    adapter = JdAdapter([creds(sim.base_url, secret="old")], sink=ListSink(), cursor_store=MemoryCursorStore())
    try:
        with pytest.raises(PermanentApiError) as err:
            await adapter.poll_once(creds(sim.base_url, secret="old"))
        assert err.value.code == "14"
    finally:
        await adapter.close()
