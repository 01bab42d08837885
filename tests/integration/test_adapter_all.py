"""All four simulators and adapters at once against the real broker: every order event the
platforms generated is in the raw topics at least once, none is missing.

For JD, which is polled, an "event" is an order version; versions replaced before any poll could
see them are invisible to every poller, so the check is on every order's final version."""

from __future__ import annotations

import asyncio

import pytest

from connectors import jd
from connectors.adapters import make_adapter
from connectors.publisher import RawPublisher
from connectors.simulators.douyin_api import DouyinSim
from connectors.simulators.jd_api import JdSim
from connectors.simulators.pdd_api import PddSim
from connectors.simulators.tmall_api import TmallSim
from tests.support.adapters import (
    PAID_FIRST_LIFECYCLES,
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

FAULTS = dict(duplicate_rate=0.2, max_delay_s=0.3, reorder=True, fail_rate=0.05, throttle_rate=0.02)


async def test_all_platforms_every_event_in_raw_topics(settings):
    ensure_raw_topics(settings)
    shops = {p: sim_shops(p, 2) for p in ("tmall", "jd", "douyin", "pdd")}
    sims = {
        "tmall": TmallSim(shops["tmall"], visibility_timeout_s=1.0, bare_rate=0.3, seed=21, **FAULTS),
        "jd": JdSim(shops["jd"], seed=22, **FAULTS),
        "douyin": DouyinSim(shops["douyin"], push_batch=5, retry_interval_s=0.2, push_timeout_s=2, seed=23, **FAULTS),
        "pdd": PddSim(shops["pdd"], ack_timeout_s=1.0, seed=24, **FAULTS),
    }
    urls = {p: await sim.start() for p, sim in sims.items()}
    publisher = RawPublisher(settings)
    adapters = {
        "tmall": make_adapter("tmall", credentials("tmall", shops["tmall"], urls["tmall"]), publisher, idle_wait_s=0.05),
        "jd": make_adapter(
            "jd", credentials("jd", shops["jd"], urls["jd"]), publisher,
            overlap_s=3, lag_s=0, poll_interval_s=0.2, page_size=10, initial_lookback_s=60,
        ),
        "douyin": make_adapter("douyin", credentials("douyin", shops["douyin"], urls["douyin"]), publisher),
        "pdd": make_adapter("pdd", credentials("pdd", shops["pdd"], urls["pdd"]), publisher, heartbeat_s=0.5),
    }
    sims["douyin"].set_callback(await adapters["douyin"].start())
    tasks = [asyncio.create_task(adapters[p].run()) for p in ("tmall", "jd", "pdd")]
    try:
        await asyncio.gather(
            drive_orders(sims["tmall"], 40, TMALL_LIFECYCLES, step_s=0.01, partial_refunds=True),
            drive_orders(sims["jd"], 40, PAID_FIRST_LIFECYCLES, step_s=0.01),
            drive_orders(sims["douyin"], 40, TMALL_LIFECYCLES, step_s=0.01, partial_refunds=True),
            drive_orders(sims["pdd"], 40, PAID_FIRST_LIFECYCLES, step_s=0.01),
        )
        jd_finals = {
            f"{oid}:{jd.search_order(o)['modified']}:{jd.order_state(o)}" for oid, o in sims["jd"].orders.items()
        }

        async def delivered() -> bool:
            if any(sims[p].pending() for p in ("tmall", "douyin", "pdd")):
                return False
            return jd_finals <= set(message_ids(await read_raw(settings, "jd")))

        await wait_until(delivered, 60, interval=0.5, what=lambda: str({p: s.stat_values() for p, s in sims.items()}))
    finally:
        for task in tasks:
            await cancel(task)
        await adapters["douyin"].stop()
        for adapter in adapters.values():
            await adapter.close()
        for sim in sims.values():
            await sim.stop()

    for platform, sim in sims.items():
        records = await read_raw(settings, platform)
        assert_no_pii(records)
        got = set(message_ids(records))
        if platform == "jd":
            assert jd_finals <= got
            assert {r.key for r in records} == set(sim.orders)
            continue
        expected = {e.event_id for e in sim.events}
        assert expected and expected <= got, f"{platform}: {len(expected - got)} events missing"
        assert sim.stats["bad_signature"] == 0
    for adapter in adapters.values():
        assert adapter.counters["unknown_shop"] == 0 and adapter.bad_signatures == 0
