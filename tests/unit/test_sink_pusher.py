"""A shop's push loop against a fake adapter: throttles pause and retry, permanent failures are
parked (and settle their offsets), transient ones back off; the last write is the latest."""

from __future__ import annotations

import asyncio

from connectors.adapters.common import Failed, Throttled, Written
from sinks.coalesce import Allocation, SinkState
from sinks.listings import Listing
from sinks.offsets import OffsetTracker
from sinks.pusher import ShopPusher
from sinks.quota import ShopQuota
from sinks.targets import TargetIndex
from stockstream.settings import ShopCredentials

SHOP = ShopCredentials(platform="jd", shop_id="s1", app_key="k", app_secret="x")
CH = "jd:s1"


class FakeAdapter:
    """Answers from a script per platform SKU id ("throttle", "fail", "bad", then "ok")."""

    def __init__(self, script: dict[str, list[str]]) -> None:
        self.script = script
        self.calls: list[tuple[str, int]] = []

    async def write_stock(self, shop, writes):
        out = []
        for w in writes:
            self.calls.append((w.platform_sku_id, w.quantity))
            steps = self.script.get(w.platform_sku_id)
            step = steps.pop(0) if steps else "ok"
            if step == "throttle":
                out.append(Throttled(write=w, ok=False, retry_after_s=0.05, error_code="67"))
            elif step == "fail":
                out.append(Failed(write=w, ok=False, error_code="66", error="busy", permanent=False))
            elif step == "bad":
                out.append(Failed(write=w, ok=False, error_code="21", error="no such sku", permanent=True))
            else:
                out.append(Written(write=w, ok=True))
        return out


async def run_until_settled(script, allocations, max_attempts=8):
    tracker = OffsetTracker()
    listings = [Listing("jd", "s1", "", f"p{i}", f"SKU-{i}") for i in range(3)]
    state = SinkState(TargetIndex(listings, lambda l: ((l.merchant_code, 1),)), lambda ch: True, tracker)
    adapter = FakeAdapter(script)
    parked = []

    async def park(push, decision):
        parked.append((push.key[1], push.quantity, decision.reason))

    pusher = ShopPusher(state, SHOP, adapter, ShopQuota(1000), park, max_attempts=max_attempts)
    for offset, a in enumerate(allocations):
        tracker.consumed(0, offset)
        state.apply(a, (0, offset))
    stop = asyncio.Event()
    task = asyncio.create_task(pusher.run(stop))
    for _ in range(200):
        if tracker.unsettled() == 0:
            break
        await asyncio.sleep(0.02)
    stop.set()
    await asyncio.wait_for(task, 5)
    return state, adapter, parked, tracker


def a(sku, version, quantity):
    return Allocation(sku, CH, quantity, version, 1_000)


async def test_throttled_and_transient_writes_end_written_with_the_latest_quantity():
    state, adapter, parked, tracker = await run_until_settled(
        {"p0": ["throttle", "fail", "throttle"], "p1": ["fail"]},
        [a("SKU-0", 1, 5), a("SKU-1", 1, 6), a("SKU-0", 3, 9), a("SKU-0", 2, 7)],
    )
    assert parked == [] and tracker.committable() == {0: 4}
    assert state.pushed == {(CH, "p0"): 9, (CH, "p1"): 6}
    assert [q for sku, q in adapter.calls if sku == "p0"][-1] == 9
    assert 7 not in [q for sku, q in adapter.calls if sku == "p0"]  # version 2 came after 3: never sent


async def test_permanent_failure_is_parked_and_settles_its_offset():
    state, adapter, parked, tracker = await run_until_settled({"p2": ["bad"]}, [a("SKU-2", 1, 4), a("SKU-0", 1, 1)])
    assert parked == [("p2", 4, "platform_error:21")]
    assert tracker.committable() == {0: 2} and state.parked == {(CH, "p2"): 4}


async def test_transient_failures_are_parked_once_exhausted():
    _state, adapter, parked, _tracker = await run_until_settled({"p1": ["fail"] * 10}, [a("SKU-1", 1, 3)], max_attempts=3)
    assert parked == [("p1", 3, "transient_exhausted")] and len(adapter.calls) == 3
