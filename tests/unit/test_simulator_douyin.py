"""The Douyin simulator checks API signatures and pushes until answered exactly right; the
receiver checks event-sign and answers only after storing (no Kafka: list sink)."""

from __future__ import annotations

import asyncio
import contextlib
import time

import aiohttp
import pytest
from aiohttp import web

from connectors import douyin
from connectors.adapters.common import Failed, Throttled
from connectors.adapters.douyin import DouyinAdapter
from connectors.base import StockWrite
from connectors.simulators.base_api import SimShop
from connectors.simulators.douyin_api import DouyinSim
from stockstream.settings import ShopCredentials

SHOPS = [SimShop("4463798", "dy-app-a", "dy-secret-a", "dy-token-a"), SimShop("4463799", "dy-app-b", "dy-secret-b", "dy-token-b")]
PRODUCT = "3539925204033339668"
SKUS = [str(1750000000000000001 + i) for i in range(3)]


def creds(url: str, shop: SimShop = SHOPS[0], **over) -> ShopCredentials:
    return ShopCredentials(
        platform="douyin", shop_id=shop.shop_id, app_key=shop.app_key, app_secret=over.get("secret", shop.app_secret),
        access_token=shop.access_token, api_base_url=url,
    )


class ListSink:
    def __init__(self) -> None:
        self.records = []

    async def __call__(self, platform, records):
        self.records.extend(records)


@pytest.fixture
async def sim():
    s = DouyinSim(SHOPS, retry_interval_s=0.1, push_timeout_s=1)
    for shop in SHOPS:
        for sku in SKUS:
            s.register_sku(shop.shop_id, sku, PRODUCT, f"MC-{sku[-2:]}", quantity=20)
    await s.start()
    yield s
    await s.stop()


async def api_call(sim, method: str, business: dict, *, secret: str = "dy-secret-a", sign_method: str = "md5", ts=None) -> dict:
    body = douyin.param_json(business)
    params = {"app_key": "dy-app-a", "method": method, "access_token": "dy-token-a", "timestamp": ts or str(int(time.time())), "v": "2", "sign_method": sign_method}
    params["sign"] = douyin.sign({**params, "param_json": body}, secret)
    async with aiohttp.ClientSession() as http:
        async with http.post(sim.base_url + "/" + method.replace(".", "/"), params=params, data=body.encode()) as r:
            return await r.json()


async def test_api_signature_timestamp_and_idempotent_increments(sim):
    ok = await api_call(sim, "sku.syncStock", {"sku_id": SKUS[0], "stock_num": 5, "incremental": False})
    assert ok["code"] == 10000 and sim.stock_of(SHOPS[0].shop_id, SKUS[0]) == 5
    hmac_ok = await api_call(sim, "sku.detail", {"sku_id": SKUS[0]}, sign_method="hmac-sha256")
    assert hmac_ok["data"]["stock_num"] == 5
    bad = await api_call(sim, "sku.detail", {"sku_id": SKUS[0]}, secret="nope")
    assert (bad["code"], bad["sub_code"]) == (30001, "isv.sign-invalid") and sim.stats["bad_signature"] == 1
    assert set(bad) == {"code", "msg", "sub_code", "sub_msg", "log_id", "data"}
    old = await api_call(sim, "sku.detail", {"sku_id": SKUS[0]}, ts=str(int(time.time()) - 700))
    assert old["code"] == 31001
    missing = await api_call(sim, "sku.syncStock", {"sku_id": "1", "stock_num": 1, "incremental": False})
    assert (missing["code"], missing["sub_code"]) == (40004, "isv.parameter-invalid:5")
    inc = {"sku_id": SKUS[0], "stock_num": 3, "incremental": True, "idempotent_id": "abc"}
    await api_call(sim, "sku.syncStock", inc)
    await api_call(sim, "sku.syncStock", inc)
    assert sim.stock_of(SHOPS[0].shop_id, SKUS[0]) == 8, "a repeated idempotent_id is applied once"
    no_id = await api_call(sim, "sku.syncStock", {"sku_id": SKUS[0], "stock_num": 1, "incremental": True})
    assert no_id["code"] == 40004


async def test_pushes_are_retried_until_the_answer_is_exactly_success(sim):
    answers = [{"code": 0, "msg": "ok"}, {"code": 1, "msg": "success"}, {"code": 0, "msg": "success"}]
    seen = []

    async def callback(request: web.Request) -> web.Response:
        body = await request.read()
        assert douyin.verify_event_sign(request.headers["app-id"], body, "dy-secret-a", request.headers["event-sign"])
        seen.append(body)
        return web.json_response(answers[min(len(seen) - 1, 2)])

    app = web.Application()
    app.router.add_post("/cb", callback)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        sim.set_callback(f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}/cb")
        sim.create_order(SHOPS[0].shop_id, [{"sku_id": SKUS[0], "quantity": 1}])
        for _ in range(50):
            if sim.pending() == 0:
                break
            await asyncio.sleep(0.05)
        assert sim.pending() == 0 and len(seen) == 3 and len(set(seen)) == 1
    finally:
        await runner.cleanup()


async def test_receiver_rejects_bad_event_sign_and_answers_after_storing(sim):
    sink = ListSink()
    adapter = DouyinAdapter([creds(sim.base_url, s) for s in SHOPS], sink=sink)
    url = await adapter.start()
    try:
        order = sim.create_order(SHOPS[1].shop_id, [{"sku_id": SKUS[1], "quantity": 2}], "PAID")
        message = sim.queue(SHOPS[1].app_key).payloads()[0]
        body = douyin.push_body([message])
        async with aiohttp.ClientSession() as http:
            forged = await http.post(url, data=body, headers={"app-id": "dy-app-b", "event-sign": douyin.event_sign("dy-app-b", body, "dy-secret-a")})
            assert forged.status == 401 and adapter.bad_signatures == 1 and sink.records == []
            tampered = body.replace(b"101", b"106")
            r = await http.post(url, data=tampered, headers={"app-id": "dy-app-b", "event-sign": douyin.event_sign("dy-app-b", body, "dy-secret-b")})
            assert r.status == 401 and adapter.bad_signatures == 2
            ok = await http.post(url, data=body, headers={"app-id": "dy-app-b", "event-sign": douyin.event_sign("dy-app-b", body, "dy-secret-b")})
            assert ok.status == 200 and await ok.json() == {"code": 0, "msg": "success"}
        assert [r.headers["kind"] for r in sink.records] == ["push", "detail"]
        assert {r.key for r in sink.records} == {order.order_id} and sink.records[0].headers["shop"] == SHOPS[1].shop_id
        assert b"id_card" not in sink.records[1].value and b"post_tel" not in sink.records[1].value
    finally:
        await adapter.stop()


async def test_push_iterator_acknowledges_only_after_the_consumer_moved_on(sim):
    adapter = DouyinAdapter([creds(sim.base_url)], sink=ListSink())
    records = adapter.push(creds(sim.base_url))
    first = asyncio.ensure_future(records.__anext__())
    for _ in range(100):
        if adapter.url:
            break
        await asyncio.sleep(0.01)
    sim.set_callback(adapter.url)
    sim.create_order(SHOPS[0].shop_id, [{"sku_id": SKUS[0], "quantity": 1}])
    try:
        record = await asyncio.wait_for(first, 5)
        assert record.headers["kind"] == "push"
        await asyncio.sleep(0.2)
        assert sim.stats["push_ok"] == 0
        assert (await records.__anext__()).headers["kind"] == "detail"
        waiter = asyncio.ensure_future(records.__anext__())  # asking for more acknowledges the push
        for _ in range(50):
            if sim.stats["push_ok"]:
                break
            await asyncio.sleep(0.05)
        assert sim.stats["push_ok"] == 1
        waiter.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await waiter
    finally:
        await records.aclose()


async def test_write_stock_maps_throttle_and_permanent_errors(sim):
    shop = creds(sim.base_url)
    adapter = DouyinAdapter([shop], sink=ListSink())
    try:
        ok, unknown = await adapter.write_stock(shop, [StockWrite(shop.shop_id, SKUS[0], 9, PRODUCT), StockWrite(shop.shop_id, "77", 1, PRODUCT)])
        assert ok.ok and sim.stock_of(shop.shop_id, SKUS[0]) == 9
        assert isinstance(unknown, Failed) and unknown.permanent and unknown.error_code == "40004"
        sim.knobs.throttle_rate = 1.0
        (throttled,) = await adapter.write_stock(shop, [StockWrite(shop.shop_id, SKUS[1], 3, PRODUCT)])
        assert isinstance(throttled, Throttled) and throttled.error_code == "50002"
        sim.knobs.throttle_rate = 0
        assert await adapter.read_stock(shop, [SKUS[0]]) == {SKUS[0]: 9}
        assert [c.method for c in sim.stock_writes] == ["sku.syncStock"]
    finally:
        await adapter.close()


async def test_detail_not_found_still_answers_success(sim):
    """A push for an order the API cannot find (deleted / other shop) is stored without detail."""
    sink = ListSink()
    adapter = DouyinAdapter([creds(sim.base_url)], sink=sink)
    url = await adapter.start()
    try:
        order = sim.create_order(SHOPS[0].shop_id, [{"sku_id": SKUS[0], "quantity": 1}])
        message = sim.queue(SHOPS[0].app_key).payloads()[0]
        del sim.orders[order.order_id]
        body = douyin.push_body([message])
        async with aiohttp.ClientSession() as http:
            r = await http.post(url, data=body, headers={"app-id": "dy-app-a", "event-sign": douyin.event_sign("dy-app-a", body, "dy-secret-a")})
            assert r.status == 200
        assert [r.headers["kind"] for r in sink.records] == ["push"] and adapter.counters["detail_failed"] == 1
    finally:
        await adapter.stop()
