"""The ERP sink's push of one entry against the simulator: upsert body, retries, rejections."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from connectors.simulators.erp_api import ErpSim
from stockstream.core.journal import JournalEntry
from stockstream.settings import Settings
from streams import metrics
from streams.erp_sink import ErpSink, RejectedEntry, TransientPushError, adjustment_body, adjustment_url

ENTRY = JournalEntry("abc123", "SKU-1", "wh1", "SALE_SHIPMENT", -3, 1_731_254_400_000, 1_731_254_460_000, 2,
                     ("m1", "m2"), 1_731_254_459_000)


def test_body_and_url():
    assert adjustment_url("http://erp/services/rest/", "abc") == "http://erp/services/rest/record/v1/inventoryAdjustment/eid:abc"
    assert adjustment_body(ENTRY) == {
        "sku": "SKU-1", "location": "wh1", "reason": "SALE_SHIPMENT", "quantity": -3,
        "window": {"start": "2024-11-10T16:00:00.000Z", "end": "2024-11-10T16:01:00.000Z"},
        "movementCount": 2,
        "memo": "stockstream SALE_SHIPMENT 2024-11-10T16:00:00.000Z/2024-11-10T16:01:00.000Z",
    }


@pytest.fixture
async def erp():
    sim = ErpSim("t0k", seed=3)
    await sim.start()
    yield sim
    await sim.stop()


def sink_for(erp, token="t0k"):
    return ErpSink(Settings(erp_base_url=erp.base_url, erp_token=token, erp_max_backoff_s=0.2))


def session(token="t0k"):
    return aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}, timeout=aiohttp.ClientTimeout(total=2))


def sample(name, **labels):
    return metrics.REGISTRY.get_sample_value(name, labels) or 0.0


async def test_push_retries_through_failures_and_an_outage(erp):
    sink = sink_for(erp)
    erp.knobs.fail_rate = 0.5
    retries_before = sample("stockstream_erp_pushes_total", outcome="retry")
    await erp.go_down(0.6, "refuse")
    async with session() as s:
        results = await asyncio.gather(*(
            sink.push(s, JournalEntry(**{**ENTRY.__dict__, "external_id": f"e{i}"})) for i in range(10)
        ))
    assert results == [None] * 10
    assert sorted(erp.records) == sorted(f"e{i}" for i in range(10))
    assert all(not r.content_changed for r in erp.records.values())
    assert erp.records["e0"].body == adjustment_body(ENTRY)
    assert sample("stockstream_erp_pushes_total", outcome="retry") > retries_before


async def test_invalid_content_is_returned_as_a_rejection_not_retried(erp):
    sink = sink_for(erp)
    async with session() as s:
        result = await sink.push(s, JournalEntry(**{**ENTRY.__dict__, "reason": "THEFT"}))
    assert isinstance(result, RejectedEntry) and result.status == 400
    assert erp.stats["puts"] == 1


async def test_a_wrong_token_is_retried_until_stopped(erp):
    sink = sink_for(erp, token="wrong")
    asyncio.get_running_loop().call_later(0.8, sink.stop)
    async with session("wrong") as s:
        with pytest.raises(TransientPushError):
            await sink.push(s, ENTRY)
    assert erp.stats["unauthorized"] >= 2 and not erp.records
