"""The simulators' control API (traffic drivers and tests): orders, stock, history, knobs."""

from __future__ import annotations

import aiohttp
import pytest

from connectors.simulators.base_api import DeliveryQueue, Knobs, SimShop
from connectors.simulators.douyin_api import DouyinSim
from connectors.simulators.jd_api import JdSim
from connectors.simulators.pdd_api import PddSim
from connectors.simulators.tmall_api import TmallSim

SHOP = SimShop("1001", "app", "secret", "token")


@pytest.mark.parametrize("sim_class", [TmallSim, JdSim, DouyinSim, PddSim])
async def test_control_api_drives_orders_and_reads_stock(sim_class):
    sim = sim_class([SHOP])
    url = await sim.start()
    try:
        async with aiohttp.ClientSession() as http:
            r = await http.put(f"{url}/_sim/stock", json={"shop_id": "1001", "sku_id": "5001", "listing_id": "900", "quantity": 3})
            assert r.status == 200
            r = await http.post(f"{url}/_sim/orders", json={"shop_id": "1001", "status": "PAID", "lines": [{"sku_id": "5001", "quantity": 2}]})
            order = await r.json()
            assert r.status == 200 and order["status"] == "PAID" and order["lines"][0]["listing_id"] == "900"
            r = await http.post(f"{url}/_sim/orders", json={"shop_id": "1001", "status": "PAID", "lines": [{"sku_id": "5001", "quantity": 2}]})
            assert r.status == 409, "the platform does not sell what the channel does not show"
            r = await http.post(f"{url}/_sim/orders/{order['order_id']}/advance", json={"status": "CLOSED"})
            assert (await r.json())["status"] == "CLOSED"
            r = await http.post(f"{url}/_sim/orders/{order['order_id']}/advance", json={"status": "PAID"})
            assert r.status == 409, "orders only move forward"
            assert (await (await http.get(f"{url}/_sim/orders/{order['order_id']}")).json())["status"] == "CLOSED"
            stock = await (await http.get(f"{url}/_sim/stock", params={"shop_id": "1001"})).json()
            assert stock == [{"shop_id": "1001", "sku_id": "5001", "listing_id": "900", "quantity": 3}], "closed unshipped: back on sale"
            history = await (await http.get(f"{url}/_sim/stock-history")).json()
            assert [(h["source"], h["quantity"]) for h in history] == [("seed", 3), ("order", 1), ("order", 3)]
            assert await (await http.get(f"{url}/_sim/stock-history", params={"source": "write"})).json() == []
            events = await (await http.get(f"{url}/_sim/events")).json()
            assert {e["order_id"] for e in events} == {order["order_id"]} and len(events) == 2
            r = await http.patch(f"{url}/_sim/knobs", json={"throttle_rate": 0.5, "reorder": True})
            assert (await r.json())["throttle_rate"] == 0.5 and sim.knobs.reorder is True
            assert (await http.patch(f"{url}/_sim/knobs", json={"nonsense": 1})).status == 400
            assert (await (await http.get(f"{url}/_sim/stats")).json())["orders"] == 1
    finally:
        await sim.stop()


def test_delivery_queue_visibility_duplicates_and_reordering():
    import random

    q = DeliveryQueue(Knobs(duplicate_rate=0.0, reorder=True), random.Random(1))
    for i in range(20):
        q.put(str(i), {"n": i})
    taken = q.take(20, visibility_s=60)
    assert sorted(int(d.message_id) for d in taken) == list(range(20))
    assert [d.message_id for d in taken] != [str(i) for i in range(20)], "reorder shuffles"
    assert q.take(20, 60) == [] and q.pending() == 20
    q.ack(["1", "2"])
    q.release_ids(["3"])
    assert [d.message_id for d in q.take(20, 60)] == ["3"] and q.pending() == 18


def test_adapter_registry_builds_each_platform_for_its_shops_only():
    from connectors import tmall
    from connectors.adapters import PLATFORMS, make_adapter
    from connectors.adapters.common import KafkaSink
    from stockstream.settings import ShopCredentials

    shops = [
        ShopCredentials(platform=p, shop_id=f"{p}-1", app_key=f"{p}-app", app_secret="s", access_token="t", api_base_url="http://x")
        for p in PLATFORMS
    ]
    for platform in PLATFORMS:
        adapter = make_adapter(platform, shops, sink=KafkaSink(None))  # type: ignore[arg-type]
        assert adapter.platform == platform and [s.shop_id for s in adapter.book.shops] == [f"{platform}-1"]
    tmall_adapter = make_adapter("tmall", shops, sink=KafkaSink(None))  # type: ignore[arg-type]
    params = {"method": "m", "app_key": "k", "sign_method": "md5"}
    assert tmall_adapter.sign(params, "secret") == tmall.sign(params, "secret")
    with pytest.raises(KeyError):
        make_adapter("lazada", shops)
