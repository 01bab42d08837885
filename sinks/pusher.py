"""One push loop per shop: take the shop's due listings from the state, wait for the quota,
write them in one `write_stock` call (the adapter batches where the API allows), and apply what
each result means (sinks/decisions.py). Shops push independently: one shop's throttling or
outage does not slow the others."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Awaitable, Callable, Iterable, Optional

from connectors.adapters.common import now_ms, result_for_error
from connectors.base import StockWrite
from sinks import metrics
from sinks.coalesce import Allocation, Key, Push, SinkState
from sinks.decisions import Action, Decision, decide
from sinks.quota import MAX_WRITES_PER_ROUND, ShopQuota, api_calls
from stockstream.settings import ShopCredentials

log = logging.getLogger(__name__)

Park = Callable[[Push, Decision], Awaitable[None]]


class ShopPusher:
    def __init__(
        self,
        state: SinkState,
        shop: ShopCredentials,
        adapter: Any,
        quota: ShopQuota,
        park: Park,
        *,
        max_attempts: int = 8,
        max_writes: Optional[int] = None,
        clock_ms: Callable[[], int] = now_ms,
    ) -> None:
        self.state = state
        self.shop = shop
        self.platform = shop.platform
        self.channel = f"{shop.platform}:{shop.shop_id}"
        self.adapter = adapter
        self.quota = quota
        self.park = park
        self.max_attempts = max_attempts
        self.max_writes = max_writes or MAX_WRITES_PER_ROUND.get(self.platform, 50)
        self.wake = asyncio.Event()
        self.rounds = 0
        self.clock_ms = clock_ms
        # listing -> newest event time already measured: a re-push of the same allocations
        # (drift found, index rebuilt, dead-letter retry after a success) is no new event.
        self.measured_event_ms: dict[Key, int] = {}

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            pushes = self.state.take(self.channel, self.max_writes, time.monotonic())
            if pushes:
                await self.push(pushes)
                continue
            await self._sleep(stop)

    async def _sleep(self, stop: asyncio.Event) -> None:
        self.wake.clear()
        next_at = self.state.next_due_at(self.channel)
        timeout = 1.0 if next_at is None else min(max(next_at - time.monotonic(), 0.01), 1.0)
        waiters = {asyncio.ensure_future(self.wake.wait()), asyncio.ensure_future(stop.wait())}
        try:
            await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()

    async def push(self, pushes: list[Push]) -> None:
        self.rounds += 1
        writes = [
            StockWrite(self.shop.shop_id, p.target.listing.platform_sku_id, p.quantity, p.target.listing.listing_id or None)
            for p in pushes
        ]
        await self.quota.acquire(api_calls(self.platform, writes))
        try:
            results = list(await self.adapter.write_stock(self.shop, writes))
        except asyncio.CancelledError:
            for p in pushes:  # stopping: leave them due (their offsets stay uncommitted)
                self.state.again(p, 0.0, time.monotonic(), failed=False)
            raise
        except Exception as exc:  # adapters report per write; anything raised is taken as transient
            log.warning("%s: write_stock raised %s", self.channel, exc)
            results = [result_for_error(w, exc) for w in writes]
        acknowledged_ms = self.clock_ms()
        for push, result in zip(pushes, results):
            decision = decide(result, push.attempts, self.max_attempts)
            await self._apply(push, decision, acknowledged_ms)

    async def _apply(self, push: Push, decision: Decision, acknowledged_ms: int) -> None:
        metrics.PUSHES.labels(self.platform, decision.action.value).inc()
        now = time.monotonic()
        if decision.action is Action.DONE:
            self.state.written(push)
            if push.computed_at_ms:
                metrics.PUSH_LATENCY.labels(self.platform).observe(max(acknowledged_ms - push.computed_at_ms, 0) / 1000)
            latency = end_to_end_latency_s(push.allocations, self.measured_event_ms.get(push.key), acknowledged_ms)
            if latency is not None:
                self.measured_event_ms[push.key] = newest_event_ms(push.allocations)
                metrics.END_TO_END_LATENCY.labels(self.platform).observe(latency)
        elif decision.action is Action.WAIT:
            self.quota.pause(decision.delay_s)
            self.state.again(push, decision.delay_s, now, failed=False)
        elif decision.action is Action.RETRY:
            self.state.again(push, decision.delay_s, now, failed=True)
        else:
            try:
                await self.park(push, decision)
            except Exception as exc:  # the dead-letter topic is unreachable: keep it due, try later
                log.warning("%s: could not park %s: %s", self.channel, push.key, exc)
                self.state.again(push, 1.0, now, failed=False)
                return
            log.warning("%s: parked %s (quantity %d): %s %s", self.channel, push.key[1], push.quantity, decision.reason, decision.detail)
            self.state.parked_push(push)


def newest_event_ms(allocations: Iterable[Allocation]) -> Optional[int]:
    """The newest platform event behind a push (a bundle's: over its components' allocations);
    None when every allocation is a re-emission or predates the field."""
    return max((a.event_time_ms for a in allocations if a.event_time_ms is not None), default=None)


def end_to_end_latency_s(allocations: Iterable[Allocation], measured_ms: Optional[int], acknowledged_ms: int) -> Optional[float]:
    """Seconds from the newest event behind an acknowledged push to the acknowledgment, or None
    when there is no event time or that event was measured already (`measured_ms`: the newest
    event this listing's latency was last measured from). Several changes coalesced into one
    push count once, from the newest. Clocks differ between the platform and us: never negative."""
    event_ms = newest_event_ms(allocations)
    if event_ms is None or (measured_ms is not None and event_ms <= measured_ms):
        return None
    return max(acknowledged_ms - event_ms, 0) / 1000
