"""Tmall TMC adapter against the TOP simulator and the real broker: consume -> publish -> confirm,
fullinfo snapshots for bare messages, duplicates / redeliveries, restart without loss, no PII."""

from __future__ import annotations

import asyncio
import json
from collections import Counter

import pytest

from connectors import tmall
from connectors.adapters.tmall import TmallAdapter
from connectors.base import Rejected
from connectors.publisher import RawPublisher
from connectors.simulators.base_api import SimShop
from connectors.simulators.tmall_api import TmallSim
from stockstream.core.model import LineStatus
from tests.support.adapters import (
    TMALL_LIFECYCLES,
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


def three_shops() -> list[SimShop]:
    """Two shops on their own apps, a third sharing the first one's app (one TMC queue)."""
    a, b = sim_shops("tmall", 2)
    return [a, b, SimShop("2200754219999", a.app_key, a.app_secret, "tmall-token-shared")]


async def test_tmall_tmc_messages_reach_kafka_at_least_once_under_faults(settings):
    ensure_raw_topics(settings)
    shops = three_shops()
    sim = TmallSim(
        shops, visibility_timeout_s=1.0, bare_rate=0.5, seed=3,
        duplicate_rate=0.3, max_delay_s=0.3, reorder=True, fail_rate=0.1, throttle_rate=0.05,
    )
    url = await sim.start()
    adapter = TmallAdapter(credentials("tmall", shops, url), RawPublisher(settings), idle_wait_s=0.05, batch_size=10)
    task = asyncio.create_task(adapter.run())
    try:
        await drive_orders(sim, 30, TMALL_LIFECYCLES, partial_refunds=True)
        # Faults are drawn per API call and the number of calls depends on timing: the adapter
        # keeps polling until both kinds have come, so the run always covers them (seen: none).
        await wait_until(lambda: sim.stats["failed"] > 0 and sim.stats["throttled"] > 0, 30,
                         what=lambda: f"a failed and a throttled call; {sim.stats}")
        await wait_until(lambda: sim.pending() == 0, 40, what="every TMC message confirmed")
    finally:
        await cancel(task)
        await adapter.close()
        await sim.stop()

    records = await read_raw(settings, "tmall")
    events = {e.event_id: e for e in sim.events}
    got = message_ids(records, tmall.KIND_TMC)
    assert set(events) - set(got) == set(), "messages missing from raw.tmall"
    assert set(got) <= set(events)
    stats = sim.stat_values()
    assert stats["duplicated"] > 0 and stats["failed"] > 0 and stats["throttled"] > 0, stats
    assert len(got) == len(events), "duplicated and redelivered messages are not written again"
    assert adapter.counters["duplicates"] > 0

    for rec in records:
        if rec.headers["kind"] == tmall.KIND_TMC:
            event = events[rec.headers["message-id"]]
            assert rec.headers["shop"] == event.shop_id
            assert rec.key == event.order_id
        assert rec.headers["platform"] == "tmall" and int(rec.headers["received-at"]) > 0
        outcome = tmall.parse(rec.value, rec.headers)
        assert not isinstance(outcome, Rejected), (outcome, rec.value[:300])

    # A message without line fields is followed by a fullinfo snapshot of its trade.
    bare_tids = set()
    for rec in records:
        if rec.headers["kind"] == tmall.KIND_TMC:
            content = json.loads(json.loads(rec.value)["content"])
            if "num" not in content and tmall.TOPICS[json.loads(rec.value)["topic"]] is not None:
                bare_tids.add(rec.key)
    snapshot_tids = {r.key for r in records if r.headers["kind"] == tmall.KIND_FULLINFO}
    assert bare_tids and bare_tids <= snapshot_tids
    assert_no_pii(records)
    assert sim.stats["bad_signature"] == 0
    assert adapter.counters["unknown_shop"] == 0


async def test_tmall_crash_between_publish_and_confirm_loses_nothing(settings):
    ensure_raw_topics(settings)
    shops = sim_shops("tmall", 2)
    sim = TmallSim(shops, visibility_timeout_s=1.0, bare_rate=0.5, seed=5)
    url = await sim.start()
    creds = credentials("tmall", shops, url)
    publisher = RawPublisher(settings)
    try:
        await drive_orders(sim, 6, [(LineStatus.CREATED, LineStatus.PAID)])
        n_events = len(sim.events)

        crashed = TmallAdapter(creds, publisher, idle_wait_s=0.05, batch_size=200)
        published: list[str] = []
        reached = asyncio.Event()

        async def hang(records):  # the process "dies" after Kafka has the records, before confirm
            published.extend(r.headers["message-id"] for r in records if "message-id" in r.headers)
            reached.set()
            await asyncio.Event().wait()

        crashed.before_ack = hang
        task = asyncio.create_task(crashed.run())
        await asyncio.wait_for(reached.wait(), 10)
        await cancel(task)
        await crashed.close()
        assert published and sim.pending() == n_events, "nothing may be confirmed before the crash"

        restarted = TmallAdapter(creds, publisher, idle_wait_s=0.05)
        task = asyncio.create_task(restarted.run())
        await wait_until(lambda: sim.pending() == 0, 20, what="redelivered messages confirmed")
        await cancel(task)
        await restarted.close()
    finally:
        await sim.stop()

    records = await read_raw(settings, "tmall")
    counts = Counter(message_ids(records, tmall.KIND_TMC))
    assert set(counts) == {e.event_id for e in sim.events}
    assert all(counts[i] == 1 for i in published), "redelivered after the crash, confirmed without a second write"
    assert_no_pii(records)

