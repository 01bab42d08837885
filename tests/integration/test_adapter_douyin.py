"""Douyin push receiver against the Douyin simulator and the real broker: event-sign checked,
publish -> detail -> answer, retried pushes and duplicates, restart without loss, no PII."""

from __future__ import annotations

import asyncio
import json
from collections import Counter

import aiohttp
import pytest

from connectors import douyin
from connectors.adapters.douyin import DouyinAdapter
from connectors.base import Rejected
from connectors.publisher import RawPublisher
from connectors.simulators.douyin_api import DouyinSim
from stockstream.core.model import LineStatus
from tests.support.adapters import (
    TMALL_LIFECYCLES,
    assert_no_pii,
    credentials,
    drive_orders,
    ensure_raw_topics,
    message_ids,
    read_raw,
    sim_shops,
    wait_until,
)

pytestmark = pytest.mark.integration


async def forge(url: str, app_id: str, body: bytes, sign: str) -> int:
    async with aiohttp.ClientSession() as http:
        async with http.post(url, data=body, headers={"app-id": app_id, "event-sign": sign}) as r:
            return r.status


async def test_douyin_pushes_reach_kafka_at_least_once_under_faults(settings):
    ensure_raw_topics(settings)
    shops = sim_shops("douyin", 2)
    sim = DouyinSim(
        shops, push_batch=3, retry_interval_s=0.2, push_timeout_s=2, seed=8,
        duplicate_rate=0.3, max_delay_s=0.3, reorder=True, fail_rate=0.15, throttle_rate=0.05,
    )
    api = await sim.start()
    adapter = DouyinAdapter(credentials("douyin", shops, api), RawPublisher(settings))
    sim.set_callback(await adapter.start())
    try:
        sim.knobs.fail_rate = 1.0  # order details cannot be fetched: pushes are answered with an error
        await drive_orders(sim, 30, TMALL_LIFECYCLES, partial_refunds=True)
        good = next(m for q in sim.queues.values() for m in q.payloads())
        await wait_until(lambda: sim.stats["push_failed"] >= 3, 20, what="pushes refused while details fail")
        sim.knobs.fail_rate = 0.15
        # Forged pushes: wrong secret, unknown app, no signature at all.
        body = douyin.push_body([good])
        assert await forge(adapter.url, shops[0].app_key, body, douyin.event_sign(shops[0].app_key, body, "guessed")) == 401
        assert await forge(adapter.url, "unknown-app", body, douyin.event_sign("unknown-app", body, "x")) == 401
        assert await forge(adapter.url, shops[1].app_key, body, "") == 401
        await wait_until(lambda: sim.pending() == 0, 40, what=lambda: f"pushes acknowledged {sim.stat_values()} {adapter.counters}")
    finally:
        await adapter.stop()
        await sim.stop()

    assert adapter.bad_signatures == 3
    records = await read_raw(settings, "douyin")
    events = {e.event_id: e for e in sim.events}
    got = message_ids(records, douyin.KIND_PUSH)
    assert set(got) == set(events), "every push in raw.douyin, nothing forged"
    assert sim.stat_values()["duplicated"] > 0 and sim.stats["push_failed"] > 0
    assert len(got) == len(events), "redelivered and duplicated pushes are not written again"
    assert adapter.counters["duplicates"] > 0
    for rec in records:
        if rec.headers["kind"] == douyin.KIND_PUSH:
            event = events[rec.headers["message-id"]]
            assert (rec.key, rec.headers["shop"]) == (event.order_id, event.shop_id)
            assert json.loads(rec.value)["tag"] == event.kind
        outcome = douyin.parse(rec.value, rec.headers)
        assert not isinstance(outcome, Rejected), (outcome, rec.value[:300])
    assert {r.key for r in records if r.headers["kind"] == douyin.KIND_DETAIL} == set(sim.orders)
    assert_no_pii(records)
    assert sim.stats["bad_signature"] == 0


async def test_douyin_crash_between_publish_and_answer_loses_nothing(settings, free_port):
    ensure_raw_topics(settings)
    shops = sim_shops("douyin", 1)
    sim = DouyinSim(shops, push_batch=10, retry_interval_s=0.2, push_timeout_s=1.0, seed=9)
    api = await sim.start()
    publisher = RawPublisher(settings)
    port = free_port()
    crashed = DouyinAdapter(credentials("douyin", shops, api), publisher, port=port)
    published: list[str] = []
    reached = asyncio.Event()

    async def hang(records):  # Kafka has the push (and detail); the process dies before answering
        reached.set()
        await asyncio.Event().wait()

    crashed.before_ack = hang
    try:
        sim.set_callback(await crashed.start())
        await drive_orders(sim, 4, [(LineStatus.CREATED, LineStatus.PAID)])
        await asyncio.wait_for(reached.wait(), 10)
        published = [r.headers["message-id"] for r in await read_raw(settings, "douyin") if r.headers["kind"] == "push"]
        await crashed.stop()
        assert published and sim.pending() == len(sim.events), "nothing acknowledged"

        restarted = DouyinAdapter(credentials("douyin", shops, api), publisher, port=port)
        await restarted.start()
        await wait_until(lambda: sim.pending() == 0, 20, what="pushes acknowledged after restart")
        await restarted.stop()
    finally:
        await crashed.stop()
        await sim.stop()

    counts = Counter(message_ids(await read_raw(settings, "douyin"), douyin.KIND_PUSH))
    assert set(counts) == {e.event_id for e in sim.events}
    assert all(counts[i] == 1 for i in published), "the restarted receiver knew the pushes written before the crash"
    assert restarted.counters["duplicates"] >= len(published)
