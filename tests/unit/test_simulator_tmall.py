"""The TOP simulator checks what TOP checks, and the Tmall adapter's TOP calls (no Kafka: records
go to a list sink)."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest

from connectors import tmall
from connectors.adapters.common import Failed, PermanentApiError, Throttled, records_from
from connectors.adapters.tmall import TmallAdapter
from connectors.base import StockWrite, format_gmt8
from connectors.simulators.base_api import SimShop
from connectors.simulators.tmall_api import TmallSim
from stockstream.core.model import LineStatus
from stockstream.settings import ShopCredentials

SHOPS = [
    SimShop("2200754211234", "app-a", "secret-a", "token-a"),
    SimShop("2200754215678", "app-b", "secret-b", "token-b"),
]
LISTING = "681234567890"
SKUS = [str(5012345678901 + i) for i in range(25)]


def creds(url: str, shop: SimShop = SHOPS[0], **over) -> ShopCredentials:
    return ShopCredentials(
        platform="tmall", shop_id=shop.shop_id, app_key=shop.app_key, app_secret=over.get("secret", shop.app_secret),
        access_token=over.get("token", shop.access_token), api_base_url=url,
    )


class ListSink:
    def __init__(self) -> None:
        self.records = []

    async def __call__(self, platform, records):
        self.records.extend(records)


@pytest.fixture
async def sim():
    s = TmallSim(SHOPS, visibility_timeout_s=0.3)
    for shop in SHOPS:
        for sku in SKUS:
            s.register_sku(shop.shop_id, sku, LISTING, f"MC-{sku[-3:]}", quantity=5)
        s.register_sku(shop.shop_id, "99887766", "99887766", "SINGLE", quantity=3)  # item without SKUs
    await s.start()
    yield s
    await s.stop()


async def raw_call(url: str, params: dict, secret: str = "secret-a") -> dict:
    params = {"format": "json", "v": "2.0", "sign_method": "md5", **params}
    params["sign"] = tmall.sign(params, secret)
    async with aiohttp.ClientSession() as http:
        async with http.post(url + "/router/rest", data=params) as r:
            assert r.status == 200  # TOP answers errors with HTTP 200
            return await r.json()


def now_ts() -> str:
    return format_gmt8(int(time.time() * 1000))


async def test_signature_timestamp_app_and_session_are_checked(sim):
    base = {"method": "taobao.tmc.messages.consume", "app_key": "app-a", "timestamp": now_ts(), "quantity": "10"}
    ok = await raw_call(sim.base_url, base)
    assert "tmc_messages_consume_response" in ok
    hmac_ok = await raw_call(sim.base_url, {**base, "sign_method": "hmac"})
    assert "tmc_messages_consume_response" in hmac_ok
    bad = await raw_call(sim.base_url, base, secret="wrong")
    assert bad["error_response"]["code"] == 25 and sim.stats["bad_signature"] == 1
    old = await raw_call(sim.base_url, {**base, "timestamp": format_gmt8(int(time.time() * 1000) - 11 * 60_000)})
    assert old["error_response"]["code"] == 31
    unknown = await raw_call(sim.base_url, {**base, "app_key": "nope"})
    assert unknown["error_response"]["code"] == 29
    foreign = await raw_call(
        sim.base_url,
        {"method": "taobao.item.seller.get", "app_key": "app-a", "timestamp": now_ts(), "session": "token-b", "num_iid": LISTING, "fields": "num"},
    )
    assert foreign["error_response"]["code"] == 27, "a session of another app is refused"
    missing = await raw_call(sim.base_url, {"method": "taobao.tmc.messages.consume", "app_key": "app-a", "timestamp": now_ts(), "quantity": "5"})
    assert missing["error_response"]["code"] == 41


async def test_unconfirmed_messages_come_back_and_confirmed_do_not(sim):
    order = sim.create_order(SHOPS[0].shop_id, [{"sku_id": SKUS[0], "quantity": 2}, {"sku_id": SKUS[1], "quantity": 1}])
    assert sim.stock_of(SHOPS[0].shop_id, SKUS[0]) == 3, "placing an order takes the units off sale"
    call = {"method": "taobao.tmc.messages.consume", "app_key": "app-a", "quantity": "10"}
    first = (await raw_call(sim.base_url, {**call, "timestamp": now_ts()}))["tmc_messages_consume_response"]["messages"]["tmc_message"]
    assert len(first) == 2 and {m["user_id"] for m in first} == {int(SHOPS[0].shop_id)}
    assert "tmc_message" not in (await raw_call(sim.base_url, {**call, "timestamp": now_ts()}))["tmc_messages_consume_response"].get("messages", {})
    confirm = {"method": "taobao.tmc.messages.confirm", "app_key": "app-a", "timestamp": now_ts(), "s_message_ids": str(first[0]["id"])}
    assert (await raw_call(sim.base_url, confirm))["tmc_messages_confirm_response"]["is_success"] is True
    await asyncio.sleep(0.35)
    again = (await raw_call(sim.base_url, {**call, "timestamp": now_ts()}))["tmc_messages_consume_response"]["messages"]["tmc_message"]
    assert [m["id"] for m in again] == [first[1]["id"]], "only the unconfirmed one is redelivered"
    sim.advance(order.order_id, LineStatus.CLOSED)
    assert sim.stock_of(SHOPS[0].shop_id, SKUS[0]) == 5, "closed before shipment: units back on sale"


async def test_duplicates_are_delivered_even_after_confirm():
    sim = TmallSim(SHOPS[:1], duplicate_rate=1.0, duplicate_lag_s=0.1, visibility_timeout_s=5)
    sim.create_order(SHOPS[0].shop_id, [{"sku_id": SKUS[0], "listing_id": LISTING, "quantity": 1}])
    q = sim.queue("app-a")
    first = q.take(10, 5)
    assert len(first) == 1 and q.pending() == 2
    q.ack([first[0].message_id])
    await asyncio.sleep(0.11)
    assert [d.message_id for d in q.take(10, 5)] == [first[0].message_id]


async def test_adapter_poll_confirms_only_after_the_consumer_moved_on(sim):
    sim.create_order(SHOPS[0].shop_id, [{"sku_id": SKUS[0], "quantity": 1}])
    adapter = TmallAdapter([creds(sim.base_url)], sink=ListSink())
    try:
        records = adapter.poll(creds(sim.base_url))
        first = await records.__anext__()
        assert first.headers["kind"] == "tmc"
        assert sim.stats["taobao.tmc.messages.confirm"] == 0
        rest = [r async for r in records]
        assert [r.headers["kind"] for r in rest] == ["fullinfo"] or rest == []
        assert sim.stats["taobao.tmc.messages.confirm"] == 1 and sim.pending() == 0
    finally:
        await adapter.close()


async def test_poll_abandoned_midway_confirms_nothing(sim):
    sim.create_order(SHOPS[0].shop_id, [{"sku_id": SKUS[0], "quantity": 1}])
    adapter = TmallAdapter([creds(sim.base_url)], sink=ListSink())
    try:
        records = records_from(lambda sink: adapter.drain_once([creds(sim.base_url)], sink))
        await records.__anext__()
        await records.aclose()
        assert sim.stats["taobao.tmc.messages.confirm"] == 0 and sim.pending() == 1
    finally:
        await adapter.close()


async def test_bad_credentials_are_permanent_errors(sim):
    adapter = TmallAdapter([creds(sim.base_url, secret="leaked-old-secret")], sink=ListSink())
    try:
        with pytest.raises(PermanentApiError) as err:
            await adapter.drain_once([creds(sim.base_url, secret="leaked-old-secret")])
        assert err.value.code == "25"
    finally:
        await adapter.close()


async def test_write_stock_batches_20_per_item_and_overwrites(sim):
    shop = creds(sim.base_url, SHOPS[1])
    adapter = TmallAdapter([shop], sink=ListSink())
    try:
        writes = [StockWrite(shop.shop_id, sku, 100 + i, LISTING) for i, sku in enumerate(SKUS)]
        writes.append(StockWrite(shop.shop_id, "99887766", 42, "99887766"))
        results = await adapter.write_stock(shop, writes)
        assert all(r.ok for r in results)
        assert sim.stats["taobao.skus.quantity.update"] == 2 and sim.stats["taobao.item.quantity.update"] == 1
        assert [sim.stock_of(shop.shop_id, s) for s in SKUS] == [100 + i for i in range(25)]
        assert sim.stock_of(shop.shop_id, "99887766") == 42
        assert sim.stock_of(SHOPS[0].shop_id, SKUS[0]) == 5, "the other shop is untouched"
        assert len(sim.stock_writes) == 26 and {c.source for c in sim.stock_writes} == {"write"}
        assert (await adapter.read_stock(shop, LISTING))[SKUS[3]] == 103
        assert await adapter.read_stock(shop, "99887766") == {"99887766": 42}
    finally:
        await adapter.close()


async def test_write_stock_isolates_a_bad_sku_and_reports_missing_listing(sim):
    shop = creds(sim.base_url)
    adapter = TmallAdapter([shop], sink=ListSink())
    try:
        writes = [
            StockWrite(shop.shop_id, SKUS[0], 11, LISTING),
            StockWrite(shop.shop_id, "404404404", 12, LISTING),
            StockWrite(shop.shop_id, SKUS[1], 13, LISTING),
            StockWrite(shop.shop_id, SKUS[2], 14, None),
        ]
        ok, unknown, ok2, no_listing = await adapter.write_stock(shop, writes)
        assert ok.ok and ok2.ok
        assert isinstance(unknown, Failed) and unknown.permanent and unknown.error_code == "15"
        assert isinstance(no_listing, Failed) and no_listing.permanent
        assert sim.stock_of(shop.shop_id, SKUS[0]) == 11 and sim.stock_of(shop.shop_id, SKUS[1]) == 13
    finally:
        await adapter.close()


async def test_throttle_and_transient_errors(sim):
    shop = creds(sim.base_url)
    adapter = TmallAdapter([shop], sink=ListSink())
    try:
        sim.knobs.rate_limit_per_s = 0.001
        sim.knobs.rate_burst = 1
        sim.ban_seconds = 37
        first, second = await adapter.write_stock(
            shop, [StockWrite(shop.shop_id, SKUS[0], 1, LISTING), StockWrite(shop.shop_id, "99887766", 2, "99887766")]
        )
        assert first.ok
        assert isinstance(second, Throttled) and second.retry_after_s == 37 and second.error_code == "7"
        sim.knobs.rate_limit_per_s = None
        sim.knobs.fail_rate = 1.0
        (failed,) = await adapter.write_stock(shop, [StockWrite(shop.shop_id, SKUS[0], 3, LISTING)])
        assert isinstance(failed, Failed) and not failed.permanent and sim.stats["failed"] >= 4, "retried, then given up"
        sim.knobs.fail_rate = 0.3
        results = await adapter.write_stock(shop, [StockWrite(shop.shop_id, s, 9, LISTING) for s in SKUS[:3]])
        assert all(r.ok for r in results), "a 30% failure rate is absorbed by the retries"
    finally:
        await adapter.close()
