"""The PDD simulator checks the WebSocket URL signature, heartbeats and Acks, and the gateway
signature; the adapter's stock writes and error mapping (no Kafka: list sink)."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest

from connectors import pdd
from connectors.adapters.common import Failed, Throttled
from connectors.adapters.pdd import PddAdapter
from connectors.base import StockWrite
from connectors.simulators.base_api import SimShop
from connectors.simulators.pdd_api import PddSim
from stockstream.core.model import LineStatus
from stockstream.settings import ShopCredentials

SHOPS = [SimShop("987654321", "pdd-client-a", "pdd-secret-a", "pdd-token-a"), SimShop("987654322", "pdd-client-b", "pdd-secret-b", "pdd-token-b")]
GOODS = "123456789"
SKUS = [str(1234567890 + i) for i in range(3)]


def creds(url: str, shop: SimShop = SHOPS[0], **over) -> ShopCredentials:
    return ShopCredentials(
        platform="pdd", shop_id=shop.shop_id, app_key=shop.app_key, app_secret=over.get("secret", shop.app_secret),
        access_token=shop.access_token, api_base_url=url,
    )


class ListSink:
    def __init__(self) -> None:
        self.records = []

    async def __call__(self, platform, records):
        self.records.extend(records)


@pytest.fixture
async def sim():
    s = PddSim(SHOPS, ack_timeout_s=0.3, heartbeat_timeout_s=0.5)
    for shop in SHOPS:
        for sku in SKUS:
            s.register_sku(shop.shop_id, sku, GOODS, f"MC-{sku[-2:]}", quantity=30)
    await s.start()
    yield s
    await s.stop()


def ws_url(sim, client_id="pdd-client-a", secret="pdd-secret-a", ts_ms=None) -> str:
    ts_ms = ts_ms or int(time.time() * 1000)
    return sim.base_url.replace("http://", "ws://") + pdd.ws_path(client_id, ts_ms, secret)


async def test_websocket_signature_and_timestamp_are_checked(sim):
    async with aiohttp.ClientSession() as http:
        with pytest.raises(aiohttp.WSServerHandshakeError) as bad:
            await http.ws_connect(ws_url(sim, secret="wrong"))
        assert bad.value.status == 401 and sim.stats["bad_signature"] == 1
        with pytest.raises(aiohttp.WSServerHandshakeError):
            await http.ws_connect(ws_url(sim, ts_ms=int(time.time() * 1000) - 11 * 60_000))
        async with http.ws_connect(ws_url(sim)) as ws:
            await ws.send_json({"commandType": "HeartBeat", "time": 1})
            assert (await ws.receive_json(timeout=2))["commandType"] == "HeartBeat"


async def test_unacked_frames_come_back_and_silent_connections_are_closed(sim):
    async with aiohttp.ClientSession() as http:
        async with http.ws_connect(ws_url(sim)) as ws:
            order = sim.create_order(SHOPS[0].shop_id, [{"sku_id": SKUS[0], "quantity": 1}])
            first = await ws.receive_json(timeout=2)
            assert first["commandType"] == "Common" and first["message"]["type"] == "pdd_trade_TradeConfirmed"
            again = await ws.receive_json(timeout=2)
            assert again["id"] == first["id"], "not acked within ack_timeout: sent again"
            await ws.send_json(pdd.ack_frame(first["id"], 1))
            sim.advance(order.order_id, LineStatus.SHIPPED)
            shipped = await ws.receive_json(timeout=2)
            assert shipped["message"]["type"] == "pdd_trade_TradeSellerShip"
            await ws.send_json(pdd.ack_frame(shipped["id"], 1))
            closed = await ws.receive(timeout=3)  # no heartbeat from us: the server hangs up
            assert closed.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
    assert sim.pending() <= 1  # the redelivered copy of the first frame may still wait for its ack
    assert sim.stats["ws_heartbeat_timeouts"] == 1


async def test_adapter_acks_after_storing_and_reconnects(sim):
    sink = ListSink()
    adapter = PddAdapter([creds(sim.base_url, s) for s in SHOPS], sink=sink, heartbeat_s=0.1, reconnect_max_s=0.2)
    task = asyncio.create_task(adapter.run())
    try:
        order = sim.create_order(SHOPS[1].shop_id, [{"sku_id": SKUS[1], "quantity": 2}])
        for _ in range(100):
            if sim.pending() == 0 and len(sink.records) >= 2:
                break
            await asyncio.sleep(0.05)
        assert [r.headers["kind"] for r in sink.records] == ["frame", "order"]
        assert {r.key for r in sink.records} == {order.order_id} and sink.records[0].headers["shop"] == SHOPS[1].shop_id
        assert b"receiver" not in sink.records[1].value and b"id_card" not in sink.records[1].value
        await sim.disconnect_all()
        sim.advance(order.order_id, LineStatus.CLOSED)
        for _ in range(100):
            if sim.pending() == 0 and len(sink.records) >= 4:
                break
            await asyncio.sleep(0.05)
        assert adapter.counters["connects"] >= 3 and sim.pending() == 0
        assert pdd.parse(sink.records[-1].value, sink.records[-1].headers)[0].lines[0].status == LineStatus.CLOSED
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await adapter.close()


async def test_adapter_with_a_bad_secret_keeps_retrying_and_counts(sim):
    adapter = PddAdapter([creds(sim.base_url, secret="old")], sink=ListSink(), reconnect_max_s=0.05)
    task = asyncio.create_task(adapter.run())
    try:
        await asyncio.sleep(0.5)
        assert adapter.counters["auth_failed"] >= 2 and adapter.counters["connects"] == 0
        assert sim.stats["bad_signature"] == adapter.counters["auth_failed"]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await adapter.close()


async def test_gateway_signature_and_stock_writes(sim):
    shop = creds(sim.base_url)
    adapter = PddAdapter([shop], sink=ListSink())
    try:
        ok, no_goods, unknown = await adapter.write_stock(
            shop, [StockWrite(shop.shop_id, SKUS[0], 4, GOODS), StockWrite(shop.shop_id, SKUS[1], 4), StockWrite(shop.shop_id, "5", 4, GOODS)]
        )
        assert ok.ok and sim.stock_of(shop.shop_id, SKUS[0]) == 4 and sim.stock_of(SHOPS[1].shop_id, SKUS[0]) == 30
        assert isinstance(no_goods, Failed) and isinstance(unknown, Failed) and unknown.permanent
        assert (await adapter.read_stock(shop, GOODS))[SKUS[0]] == 4
        sim.knobs.rate_limit_per_s = 0.001
        sim.knobs.rate_burst = 0
        (limited,) = await adapter.write_stock(shop, [StockWrite(shop.shop_id, SKUS[0], 5, GOODS)])
        assert isinstance(limited, Throttled) and limited.error_code == "52101"
        sim.knobs.rate_limit_per_s = None
        sim.knobs.throttle_rate = 1.0
        (frequent,) = await adapter.write_stock(shop, [StockWrite(shop.shop_id, SKUS[0], 5, GOODS)])
        assert isinstance(frequent, Throttled) and frequent.error_code == "70031"
        sim.knobs.throttle_rate = 0
        sim.knobs.fail_rate = 0.4
        results = await adapter.write_stock(shop, [StockWrite(shop.shop_id, s, 6, GOODS) for s in SKUS])
        assert all(r.ok for r in results), "52102/52103 are retried"
    finally:
        await adapter.close()
    bad = PddAdapter([creds(sim.base_url, secret="x")], sink=ListSink())
    try:
        (rejected,) = await bad.write_stock(creds(sim.base_url, secret="x"), [StockWrite(shop.shop_id, SKUS[0], 1, GOODS)])
        assert isinstance(rejected, Failed) and rejected.error_code == "10016" and rejected.permanent
    finally:
        await bad.close()
