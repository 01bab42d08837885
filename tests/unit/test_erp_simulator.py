"""The ERP simulator: upserts by external id, auth, outages and failures, control API."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from connectors.simulators.erp_api import ErpSim

BODY = {"sku": "A", "location": "wh1", "reason": "RECEIPT", "quantity": 5,
        "window": {"start": "2024-11-11T00:00:00.000Z", "end": "2024-11-11T00:01:00.000Z"}}
AUTH = {"Authorization": "Bearer t0k"}


@pytest.fixture
async def erp():
    sim = ErpSim("t0k")
    await sim.start()
    yield sim
    await sim.stop()


def url(sim, eid):
    return f"{sim.base_url}/record/v1/inventoryAdjustment/eid:{eid}"


async def test_put_is_an_upsert_that_counts_writes_and_content_changes(erp):
    async with aiohttp.ClientSession(headers=AUTH) as s:
        for body in (BODY, BODY, {**BODY, "quantity": 6}):
            async with s.put(url(erp, "e1"), json=body) as r:
                assert r.status == 204
        async with s.get(f"{erp.base_url}/record/v1/inventoryAdjustment") as r:
            listing = await r.json()
        async with s.get(url(erp, "e1")) as r:
            one = await r.json()
        async with s.get(url(erp, "nope")) as r:
            assert r.status == 404
        async with s.get(erp.base_url.replace("/services/rest", "/_sim/writes")) as r:
            writes = await r.json()
    assert listing["count"] == 1 and one["quantity"] == 6
    assert writes == [{"externalId": "e1", "writes": 3, "content_changed": True, "body": {**BODY, "quantity": 6}}]


async def test_auth_and_validation_errors_have_netsuite_shape(erp):
    async with aiohttp.ClientSession() as s:
        async with s.put(url(erp, "e1"), json=BODY, headers={"Authorization": "Bearer wrong"}) as r:
            assert r.status == 401
            assert (await r.json())["o:errorDetails"][0]["o:errorCode"] == "INVALID_LOGIN"
        async with s.put(url(erp, "e1"), json={**BODY, "reason": "THEFT"}, headers=AUTH) as r:
            assert r.status == 400
            assert (await r.json())["o:errorDetails"][0]["o:errorCode"] == "INVALID_CONTENT"
        async with s.put(erp.base_url + "/record/v1/inventoryAdjustment/123", json=BODY, headers=AUTH) as r:
            assert r.status == 404
    assert erp.records == {}


async def test_down_by_503_and_by_refusing_connections_then_back(erp):
    control = erp.base_url.replace("/services/rest", "/_sim")
    async with aiohttp.ClientSession(headers=AUTH) as s:
        async with s.post(f"{control}/down", json={"seconds": 0.5, "mode": "503"}) as r:
            assert r.status == 200
        async with s.put(url(erp, "e1"), json=BODY) as r:
            assert r.status == 503
        await asyncio.sleep(0.6)
        async with s.put(url(erp, "e1"), json=BODY) as r:
            assert r.status == 204
        await erp.go_down(0.5, "refuse")
        with pytest.raises(aiohttp.ClientError):
            async with s.put(url(erp, "e2"), json=BODY) as r:
                pass
        await asyncio.sleep(0.8)
        async with s.put(url(erp, "e2"), json=BODY) as r:
            assert r.status == 204
    assert set(erp.records) == {"e1", "e2"}


async def test_fail_rate_knob(erp):
    control = erp.base_url.replace("/services/rest", "/_sim")
    async with aiohttp.ClientSession(headers=AUTH) as s:
        async with s.patch(f"{control}/knobs", json={"fail_rate": 1.0}) as r:
            assert (await r.json())["fail_rate"] == 1.0
        async with s.put(url(erp, "e1"), json=BODY) as r:
            assert r.status == 503
        async with s.patch(f"{control}/knobs", json={"nope": 1}) as r:
            assert r.status == 400
        async with s.get(f"{control}/stats") as r:
            assert (await r.json())["failed"] == 1
