"""PDD WebSocket client against the PDD simulator and the real broker: signed connection,
publish -> order fetch -> Ack, redelivered frames, reconnects, restart without loss, no PII."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from connectors import pdd
from connectors.adapters.pdd import PddAdapter
from connectors.base import Rejected
from connectors.publisher import RawPublisher
from connectors.simulators.pdd_api import PddSim
from stockstream.core.model import LineStatus
from tests.support.adapters import (
    PAID_FIRST_LIFECYCLES,
    assert_no_pii,
    cancel,
    credentials,
    drive_orders,
    ensure_raw_topics,
    message_ids,
    read_raw,
    sim_shops,
    wait_until,
)

pytestmark = pytest.mark.integration


async def test_pdd_frames_reach_kafka_at_least_once_across_reconnects(settings):
    ensure_raw_topics(settings)
    shops = sim_shops("pdd", 2)
    sim = PddSim(
        shops, ack_timeout_s=1.0, seed=12,
        duplicate_rate=0.3, max_delay_s=0.3, reorder=True, fail_rate=0.15, throttle_rate=0.05,
    )
    url = await sim.start()
    adapter = PddAdapter(credentials("pdd", shops, url), RawPublisher(settings), heartbeat_s=0.5, reconnect_max_s=0.5)
    task = asyncio.create_task(adapter.run())
    try:
        await wait_until(lambda: adapter.counters["connects"] == 2, 10, what="both apps connected")
        await drive_orders(sim, 15, PAID_FIRST_LIFECYCLES)
        await asyncio.sleep(0.3)
        await sim.disconnect_all()  # mid-stream: frames in flight come back on the next connection
        await drive_orders(sim, 15, PAID_FIRST_LIFECYCLES, seed=3)
        await wait_until(lambda: sim.pending() == 0, 40, what=lambda: f"frames acked {sim.stat_values()} {adapter.counters}")
    finally:
        await cancel(task)
        await adapter.close()
        await sim.stop()

    assert adapter.counters["connects"] >= 4 and sim.stats["heartbeats"] > 0
    records = await read_raw(settings, "pdd")
    events = {e.event_id: e for e in sim.events}
    got = message_ids(records, pdd.KIND_FRAME)
    assert set(got) == set(events)
    assert sim.stat_values()["duplicated"] > 0 and adapter.counters["duplicates"] > 0
    assert len(got) == len(events), "redelivered and duplicated frames are not written again"
    for rec in records:
        if rec.headers["kind"] == pdd.KIND_FRAME:
            event = events[rec.headers["message-id"]]
            assert (rec.key, rec.headers["shop"]) == (event.order_id, event.shop_id)
        outcome = pdd.parse(rec.value, rec.headers)
        assert not isinstance(outcome, Rejected), (outcome, rec.value[:300])
    assert {r.key for r in records if r.headers["kind"] == pdd.KIND_ORDER} == set(sim.orders)
    assert_no_pii(records)


async def test_pdd_crash_between_publish_and_ack_loses_nothing(settings):
    ensure_raw_topics(settings)
    shops = sim_shops("pdd", 1)
    sim = PddSim(shops, ack_timeout_s=30, seed=13)  # redelivery here comes from the dead connection
    url = await sim.start()
    publisher = RawPublisher(settings)
    creds = credentials("pdd", shops, url)
    try:
        crashed = PddAdapter(creds, publisher, heartbeat_s=0.5)
        published: list[str] = []
        reached = asyncio.Event()

        async def hang(records):
            reached.set()
            await asyncio.Event().wait()

        async def remember(platform, records):
            published.extend(r.headers["message-id"] for r in records if r.headers["kind"] == "frame")
            await crashed_sink(platform, records)

        crashed_sink = crashed.sink
        crashed.sink = remember
        crashed.before_ack = hang
        task = asyncio.create_task(crashed.run())
        await drive_orders(sim, 4, [(LineStatus.PAID, LineStatus.SHIPPED)])
        await asyncio.wait_for(reached.wait(), 10)
        await cancel(task)
        await crashed.close()
        assert published and sim.stats["acks"] == 0

        restarted = PddAdapter(creds, publisher, heartbeat_s=0.5)
        task = asyncio.create_task(restarted.run())
        await wait_until(lambda: sim.pending() == 0, 20, what="frames acked after restart")
        await cancel(task)
        await restarted.close()
    finally:
        await sim.stop()

    counts = Counter(message_ids(await read_raw(settings, "pdd"), pdd.KIND_FRAME))
    assert set(counts) == {e.event_id for e in sim.events}
    assert all(counts[i] == 1 for i in published), "the restarted client knew the frames written before the crash"
