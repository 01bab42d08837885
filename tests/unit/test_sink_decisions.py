"""Dead-letter decisions, drift confirmation, API call counting and the per-shop quota."""

from __future__ import annotations

import asyncio
import time

import pytest

from connectors.adapters.common import Failed, Throttled, Written
from connectors.base import StockWrite
from sinks.decisions import Action, backoff_s, decide
from sinks.quota import ShopQuota, api_calls
from sinks.reconcile import DriftWatch

W = StockWrite("s", "sku", 5, "L")


def test_written_is_done():
    assert decide(Written(write=W, ok=True), 0).action is Action.DONE


def test_throttled_waits_the_platform_ban_and_is_never_parked():
    d = decide(Throttled(write=W, ok=False, retry_after_s=3.0, error_code="7"), attempts_before=100)
    assert (d.action, d.delay_s) == (Action.WAIT, 3.0)
    assert decide(Throttled(write=W, ok=False, retry_after_s=None), 0).delay_s > 0


def test_permanent_failure_is_parked_with_the_platform_code():
    d = decide(Failed(write=W, ok=False, error_code="21", error="sku does not exist", permanent=True), 0)
    assert d.action is Action.PARK and d.reason == "platform_error:21" and "does not exist" in d.detail


def test_transient_failure_backs_off_then_is_parked_when_exhausted():
    transient = Failed(write=W, ok=False, error_code="15", error="remote timeout", permanent=False)
    first, second = decide(transient, 0, max_attempts=3), decide(transient, 1, max_attempts=3)
    assert first.action is second.action is Action.RETRY and second.delay_s == 2 * first.delay_s
    assert decide(transient, 2, max_attempts=3).reason == "transient_exhausted"
    assert backoff_s(50) == 30.0


def test_drift_is_confirmed_only_by_repeated_identical_reads():
    watch = DriftWatch(confirmations=2)
    key = ("jd:1", "sku")
    assert not watch.observe(key, 10, 7)
    assert not watch.observe(key, 10, 6)  # a sale meanwhile: starts over
    assert watch.observe(key, 10, 6)
    assert not watch.observe(key, 10, 10) and not watch.observe(key, 10, 6)
    assert DriftWatch(confirmations=1).observe(key, 1, 2)


def test_api_calls_counts_tmall_batches_of_20_per_item():
    writes = [StockWrite("s", str(i), 1, "item-a") for i in range(25)] + [StockWrite("s", "x", 1, "item-b")]
    assert api_calls("tmall", writes) == 3
    assert api_calls("jd", writes) == 26


async def test_quota_spreads_calls_and_pauses_after_a_throttle():
    quota = ShopQuota(calls_per_s=20)
    started = time.monotonic()
    await quota.acquire(20)  # the burst
    await quota.acquire(10)  # half a second's worth more
    assert 0.35 < time.monotonic() - started < 1.5
    quota.pause(0.3)
    paused = time.monotonic()
    await quota.acquire(1)
    assert time.monotonic() - paused >= 0.29


async def test_quota_acquires_more_than_its_burst_in_steps():
    quota = ShopQuota(calls_per_s=5)
    started = time.monotonic()
    await asyncio.wait_for(quota.acquire(8), timeout=5)
    assert time.monotonic() - started >= 0.5
    with pytest.raises(ValueError):
        ShopQuota(0)
