"""Issue #5, done means: generated 618-style traffic on four simulated marketplaces, end to end on
the real broker, with every part a real process or the real code path:

    `simulate` shoppers (a steady rate, then 10x for a while, then steady again; orders refused
    when a shop shows too little) -> the four marketplace simulators -> the four adapters and the
    warehouse adapter -> raw.* -> `stockstream worker` (ledger, ATS, split allocation) ->
    `allocations` -> `stockstream sink` -> the simulators' stock-write APIs
    and   movements -> `stockstream journal` -> erp.journal -> `stockstream erp-sink` -> ERP simulator.

At the end (after the platforms recover, in the faulty run):

* every SKU's ATS over HTTP equals the simulation's ground truth;
* every simulated shop shows, for every SKU, what the pure allocation core
  (`stockstream.core.allocation.allocation_targets`) computes from the ground truth's ATS under
  the same rules (split mode, no hysteresis: the final allocation depends on the final ATS only).
  The platforms take stock off a listing when a buyer orders, so a shop whose allocation did not
  change after a sale shows less until the sink's reconciliation reads it back and pushes again:
  reconciliation runs every 2 s here, as it would every few minutes in production;
* no channel ever showed more than was available, checked exactly on two records:
  the published `allocations` stream - for every SKU and every ATS version it went through, the
  channel quantities in force sum to at most that ATS (`tests.support.e2e.allocation_problems`) -
  and the simulators' write history - every quantity a shop was written comes from an allocation
  of that SKU and channel with that quantity, computed before the write, and is at most its ATS
  (`write_problems`). Shops start listed at 0, so every unit sold was put there by a write. A sum
  across platforms at one wall-clock instant is not asserted: two companies' APIs are written by
  independent calls and no push design removes the moment between them; the largest such excess
  is printed;
* the ERP simulator holds every journal entry exactly once (one record per external id, the
  entry's body, never overwritten with other content, nothing else), and its adjustments sum,
  per SKU and location, to the ground truth's on hand.

Push latency (allocation computed -> the platform applied the write, first write of each
allocation version, from the simulators' write history; and the sink's own histogram) is printed.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from connectors.adapters import make_adapter
from connectors.publisher import RawPublisher
from connectors.simulators.base_api import PlatformSim, SimShop
from connectors.simulators.erp_api import ErpSim
from stockstream.core.allocation import AllocationRules
from stockstream.process import WorkerProcess
from stockstream.settings import Settings, ShopCredentials
from stockstream.simulate import FAULTS, PLATFORMS, SHOP_BASE, SKU_STYLE, SimulateOptions, build_simulator, simulate
from stockstream.topics import ensure_topics
from tests.conftest import free_tcp_port
from tests.support.adapters import cancel
from tests.support.ats import ats_over_http
from tests.support.e2e import (
    ShopListing,
    differences,
    allocation_problems,
    erp_problems,
    erp_totals,
    expected_allocations,
    histogram_quantile,
    latest_allocations,
    listings_start_empty,
    percentile,
    publish_default_rules,
    read_allocations,
    read_journal,
    scrape,
    shop_mismatches,
    split_rules,
    write_listings_csv,
    write_problems,
)
from tests.support.erp import CommandProcess

pytestmark = pytest.mark.integration

LOCATION = "main"
SKUS = 12
INITIAL_STOCK = 80  # per SKU: about what the run orders, so shops run dry and orders are refused
ERP_TOKEN = "e2e-erp-token"


def traffic_options(urls: dict[str, str], seed: int) -> SimulateOptions:
    """618 scaled to this machine: 1.5 orders/s for 25 s, 15 orders/s for 20 s, 1.5 orders/s
    for 30 s more; lifecycles (pay, ship, finish, cancel, refund, return) go on meanwhile."""
    return SimulateOptions(
        rate=1.5, shape="spike", spike_factor=10, spike_start_s=25, spike_minutes=20 / 60, duration_s=75,
        seed=seed, shops=1, skus=SKUS, initial_stock=INITIAL_STOCK, location=LOCATION,
        step_delay_s=(0.2, 2.0), settle_s=90, simulator_urls=urls,
    )


class Marketplaces:
    """The four simulators in this process (their write history and knobs at hand), driven over
    their control API by `simulate`, with the real adapters in front of them (also here)."""

    def __init__(self, faults: bool) -> None:
        self.shops = {
            p: SimShop(str(SHOP_BASE[p]), f"{p}-e2e-app", f"{p}-e2e-secret", f"{p}-e2e-token") for p in PLATFORMS
        }
        knobs = {k: v for k, v in FAULTS.items() if k not in ("fail_rate", "throttle_rate")} if faults else {}
        self.sims: dict[str, PlatformSim] = {
            p: build_simulator(p, [shop], seed=11 + i, **knobs) for i, (p, shop) in enumerate(self.shops.items())
        }
        for sim in self.sims.values():
            listings_start_empty(sim)
        self.urls: dict[str, str] = {}
        self.adapters: dict[str, Any] = {}
        self.tasks: list[asyncio.Task] = []
        self.listings = [
            ShopListing(p, self.shops[p].shop_id, SKU_STYLE[p][0], str(SKU_STYLE[p][1] + i), f"SIM-{i + 1:03d}")
            for p in PLATFORMS for i in range(SKUS)
        ]  # what `simulate` lists (merchant codes SIM-001...: the master SKUs, identity catalog)

    def credentials(self) -> list[ShopCredentials]:
        return [
            ShopCredentials(platform=p, shop_id=s.shop_id, app_key=s.app_key, app_secret=s.app_secret, access_token=s.access_token,
                            api_base_url=self.urls[p], fulfilment_location=LOCATION)
            for p, s in self.shops.items()
        ]

    @property
    def channels(self) -> list[str]:
        return [f"{p}:{s.shop_id}" for p, s in self.shops.items()]

    async def start(self) -> None:
        for p, sim in self.sims.items():
            self.urls[p] = await sim.start()

    async def start_adapters(self, settings: Settings) -> None:
        publisher = RawPublisher(settings)
        by_platform = {p: [s for s in settings.shops if s.platform == p] for p in PLATFORMS}
        self.adapters = {
            "tmall": make_adapter("tmall", by_platform["tmall"], publisher, idle_wait_s=0.2),
            "jd": make_adapter("jd", by_platform["jd"], publisher, overlap_s=5, lag_s=0.5, poll_interval_s=0.5, initial_lookback_s=120),
            "douyin": make_adapter("douyin", by_platform["douyin"], publisher),
            "pdd": make_adapter("pdd", by_platform["pdd"], publisher, heartbeat_s=5),
        }
        self.sims["douyin"].set_callback(await self.adapters["douyin"].start())  # type: ignore[attr-defined]
        self.tasks = [asyncio.create_task(self.adapters[p].run()) for p in ("tmall", "jd", "pdd")]

    def set_failures(self, fail: float, throttle: float) -> None:
        for sim in self.sims.values():
            sim.knobs.fail_rate, sim.knobs.throttle_rate = fail, throttle

    async def stop(self) -> None:
        for task in self.tasks:
            await cancel(task)
        if "douyin" in self.adapters:
            await self.adapters["douyin"].stop()
        for adapter in self.adapters.values():
            await adapter.close()
        for sim in self.sims.values():
            await sim.stop()


async def run_end_to_end(settings: Settings, tmp_path: Path, *, faults: bool, seed: int) -> dict:
    started = time.monotonic()
    erp = ErpSim(ERP_TOKEN, seed=seed)
    shops = Marketplaces(faults)
    await erp.start()
    await shops.start()
    settings = settings.model_copy(update={
        "shops": shops.credentials(),
        "listings_path": write_listings_csv(tmp_path / "listings.csv", shops.listings),
        "reconcile_interval_s": 2.0, "reconcile_confirmations": 2, "sink_metrics_port": free_tcp_port(),
        "erp_journal_window_s": 2.0, "erp_journal_grace_s": 0.5, "erp_base_url": erp.base_url, "erp_max_backoff_s": 1.0,
        "default_location": LOCATION,
    })
    settings.erp_token = type(settings.erp_token)(ERP_TOKEN)
    await asyncio.to_thread(ensure_topics, settings)
    rules: AllocationRules = await asyncio.to_thread(publish_default_rules, settings, split_rules(shops.channels))

    worker = WorkerProcess(settings, tmp_path / "worker.log").start()
    processes = {
        name: CommandProcess(settings, [name], tmp_path / f"{name}.log").start() for name in ("sink", "journal", "erp-sink")
    }
    try:
        await asyncio.to_thread(worker.wait_ready, 120)
        await shops.start_adapters(settings)
        if faults:
            shops.set_failures(fail=0.15, throttle=0.15)  # 30% of every platform API call refused
        opts = traffic_options(shops.urls, seed)
        driving = asyncio.create_task(simulate(settings, opts))
        await asyncio.sleep(opts.duration_s)
        shops.set_failures(0.0, 0.0)  # the platforms recover as the shoppers stop
        truth = await driving
        assert truth["settled"], f"the adapters did not deliver everything: {truth['counters']}"
        print(f"\n{'faulty' if faults else 'clean'} run: {truth['counters']}; published {truth['published']}")

        expected_ats = {sku: entry["expected_ats"] for sku, entry in truth["skus"].items()}
        expected_on_hand = {(sku, LOCATION): e["expected_on_hand"][LOCATION] for sku, e in truth["skus"].items()}
        expected_on_hand = {k: v for k, v in expected_on_hand.items() if v}
        expected = expected_allocations(expected_ats, rules)

        async def converged() -> dict:
            for name, process in processes.items():
                assert process.alive, f"{name} died:\n{process.log_tail()}"
            assert worker.alive, worker.log_tail()
            assert "Crashed reason=" not in worker.log_path.read_text(errors="replace"), f"an agent crashed:\n{worker.log_tail(80)}"
            got_ats = {sku: await asyncio.to_thread(ats_over_http, worker, sku) for sku in expected_ats}
            return {
                "ats": differences(got_ats, expected_ats),
                "shops": shop_mismatches(shops.sims, shops.listings, expected),
                "erp": differences(erp_totals(erp), expected_on_hand),
            }

        deadline = time.monotonic() + 150
        while True:
            wrong = await converged()
            if not any(wrong.values()) or time.monotonic() > deadline:
                break
            await asyncio.sleep(2)
        assert not wrong["ats"], f"ATS (got, oracle): {wrong['ats']}"
        assert not wrong["shops"], f"shops (show, allocation of the oracle's ATS): {wrong['shops']}"
        assert not wrong["erp"], f"ERP totals (ERP, oracle on hand): {wrong['erp']}"

        records = await asyncio.to_thread(read_allocations, settings)
        latest = {k: r["quantity"] for k, r in latest_allocations(records).items()}
        assert differences(latest, expected) == {}, f"allocations (topic, core from oracle): {differences(latest, expected)}"
        problems = allocation_problems(records)
        assert not problems, problems[:10]
        report = write_problems(shops.sims, shops.listings, records)
        assert not report.problems, report.problems[:10]
        assert report.writes > 0

        entries, journal_problems = await asyncio.to_thread(read_journal, settings)
        assert not journal_problems, journal_problems[:10]
        assert not erp_problems(erp, entries), erp_problems(erp, entries)[:10]

        exposition = await asyncio.to_thread(scrape, settings.sink_metrics_port)
        histogram = {q: histogram_quantile(exposition, "stockstream_channel_push_latency_seconds", q) for q in (0.5, 0.99)}
        stats = {p: dict(sim.stats) for p, sim in shops.sims.items()}
        summary = {
            "seconds": round(time.monotonic() - started, 1),
            "orders": truth["counters"].get("orders"), "refused_out_of_stock": truth["counters"].get("out_of_stock", 0),
            "allocation_records": len(records), "stock_writes": report.writes,
            "push_latency_ms_p50": percentile(report.latencies_ms, 50), "push_latency_ms_p99": percentile(report.latencies_ms, 99),
            "sink_histogram_s_p50_le": histogram[0.5], "sink_histogram_s_p99_le": histogram[0.99],
            "cross_platform_max_excess_units": report.max_excess, "level_changes_with_cross_platform_excess": report.writes_with_excess,
            "erp_entries": len(entries), "erp_rewrites": erp.stats.get("rewrites", 0),
            "platform_stats": stats,
        }
        print(f"end-to-end {'with 30% platform failures' if faults else 'clean'}: {summary}")
        return summary
    finally:
        await shops.stop()
        worker.stop()
        for process in processes.values():
            process.stop()
        await erp.stop()


async def test_618_traffic_reaches_every_shop_and_the_erp_exactly(settings, tmp_path):
    summary = await run_end_to_end(settings, tmp_path, faults=False, seed=618)
    assert summary["orders"] > 300


async def test_the_same_holds_after_platforms_throttle_and_fail_30_percent_of_calls(settings, tmp_path):
    summary = await run_end_to_end(settings, tmp_path, faults=True, seed=1111)
    faulted = summary["platform_stats"]
    assert sum(s.get("failed", 0) + s.get("throttled", 0) for s in faulted.values()) > 50, faulted
