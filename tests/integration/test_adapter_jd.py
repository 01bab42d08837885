"""JD poller against the JOS simulator and the real broker: overlapping windows catch late
writes, the cursor lives in the compacted connector-state topic, restarts neither skip nor flood."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from connectors import jd
from connectors.adapters.common import KafkaSink
from connectors.adapters.jd import JdAdapter
from connectors.adapters.state import KafkaCursorStore
from connectors.base import Rejected
from connectors.publisher import RawPublisher
from connectors.simulators.jd_api import JdSim
from stockstream.core.model import LineStatus
from stockstream.topics import CONNECTOR_STATE
from tests.support.adapters import (
    PAID_FIRST_LIFECYCLES,
    assert_no_pii,
    cancel,
    credentials,
    drive_orders,
    ensure_raw_topics,
    message_ids,
    read_raw,
    read_topic,
    sim_shops,
    wait_until,
)

pytestmark = pytest.mark.integration


class TrackingSink(KafkaSink):
    def __init__(self, publisher):
        super().__init__(publisher)
        self.seen: set[str] = set()

    async def __call__(self, platform, records):
        await super().__call__(platform, records)
        self.seen.update(r.headers["message-id"] for r in records)


def final_versions(sim: JdSim) -> dict[str, str]:
    """message-id of every order's latest version (what a poller must have published)."""
    return {
        oid: f"{oid}:{jd.search_order(o)['modified']}:{jd.order_state(o)}"
        for oid, o in sim.orders.items()
        if o.paid_ms is not None
    }


async def test_jd_overlapping_windows_catch_late_writes_under_faults(settings):
    ensure_raw_topics(settings)
    shops = sim_shops("jd", 2)
    sim = JdSim(shops, seed=4, max_delay_s=1.0, duplicate_rate=0.2, reorder=True, fail_rate=0.1, throttle_rate=0.03)
    url = await sim.start()
    publisher = RawPublisher(settings)
    sink = TrackingSink(publisher)
    adapter = JdAdapter(
        credentials("jd", shops, url), sink=sink, settings=settings,
        overlap_s=3, lag_s=0, max_window_s=2, page_size=4, poll_interval_s=0.2, initial_lookback_s=60,
    )
    task = asyncio.create_task(adapter.run())
    try:
        await drive_orders(sim, 24, PAID_FIRST_LIFECYCLES, step_s=0.03)
        finals = final_versions(sim)
        await wait_until(lambda: set(finals.values()) <= sink.seen, 30, what=lambda: f"final versions; missing {set(finals.values()) - sink.seen}; {adapter.counters} {sim.stats}")
        # Faults are drawn per API call: the adapter keeps polling until one has come.
        await wait_until(lambda: sim.stats["failed"] > 0, 30, what=lambda: f"a failed call; {sim.stats}")
    finally:
        await cancel(task)
        await adapter.close()
        await sim.stop()

    records = await read_raw(settings, "jd")
    got = set(message_ids(records))
    assert set(finals.values()) <= got
    assert {r.key for r in records} == set(finals)
    for rec in records:
        assert rec.headers["shop"] == sim.orders[rec.key].shop_id
        outcome = jd.parse(rec.value, rec.headers)
        assert not isinstance(outcome, Rejected), outcome
    assert_no_pii(records)
    assert sim.stats["failed"] > 0 and sim.stats["bad_signature"] == 0
    state = await read_topic(settings, CONNECTOR_STATE.name)
    assert {r.key for r in state} == {f"jd/{s.shop_id}" for s in shops}


async def test_jd_cursor_survives_restart_neither_skipping_nor_flooding(settings):
    ensure_raw_topics(settings)
    shops = sim_shops("jd", 1)
    sim = JdSim(shops, seed=6)
    url = await sim.start()
    creds = credentials("jd", shops, url)
    publisher = RawPublisher(settings)
    options = dict(settings=settings, overlap_s=2, lag_s=0, initial_lookback_s=3600, poll_interval_s=0.1)
    try:
        real_clock = sim.clock
        sim.clock = lambda: real_clock() - 30 * 60_000  # orders from half an hour ago
        old = await drive_orders(sim, 5, [(LineStatus.PAID,)])
        sim.clock = real_clock

        first = JdAdapter(creds, publisher, **options)
        assert await first.load_cursors() == {}
        assert await first.poll_once(creds[0]) == 5
        cursor = first.cursors[f"jd/{shops[0].shop_id}"]
        await first.close()

        new = await drive_orders(sim, 3, [(LineStatus.PAID,)], seed=2)
        second = JdAdapter(creds, publisher, **options)
        assert await second.load_cursors() == {f"jd/{shops[0].shop_id}": cursor}, "cursor read back from Kafka"
        assert await second.poll_once(creds[0]) == 3, "only the new orders: no flood from the lookback"
        cursor = second.cursors[f"jd/{shops[0].shop_id}"]
        await second.close()

        # Crash after publishing, before the cursor moved: the next process re-reads the window.
        for order_id in new:
            sim.advance(order_id, LineStatus.SHIPPED)
        crashed = JdAdapter(creds, publisher, **options)
        reached = asyncio.Event()

        async def hang(records):
            if not records:
                return
            reached.set()
            await asyncio.Event().wait()

        crashed.before_ack = hang
        task = asyncio.create_task(crashed.run())
        await asyncio.wait_for(reached.wait(), 10)
        await cancel(task)
        await crashed.close()
        assert (await asyncio.to_thread(KafkaCursorStore(settings).load))[f"jd/{shops[0].shop_id}"]["cursor_ms"] == cursor

        restarted = JdAdapter(creds, publisher, **options)
        assert await restarted.poll_once(creds[0]) == 0, "the window is re-read; its versions are in raw.jd already"
        assert restarted.counters["duplicates"] >= 3
        await restarted.close()
    finally:
        await sim.stop()

    records = await read_raw(settings, "jd")
    counts = Counter(message_ids(records))
    assert set(final_versions(sim).values()) <= set(counts)
    assert {r.key for r in records} == set(old) | set(new)
    assert all(counts[final_versions(sim)[o]] == 1 for o in new), "re-read after the crash, not written again"
    assert all(counts[final_versions(sim)[o]] == 1 for o in old), "old orders were not read again"
    assert_no_pii(records)
