"""The benchmark suite's pure parts: modules import, the percentile function, the oversell
simulation on a tiny input, the profile parser. No timing assertions: speed is measured in
bench/, never in unit tests."""

from __future__ import annotations

import importlib
import random

import pytest

from bench.oversell import CHANNELS, Demand, Sync, rules_for, run, simulate_sku
from bench.profile import layer_of, parse_collapsed, shares
from bench.stats import percentile, slope, summarize_ms


@pytest.mark.parametrize("module", ["harness", "feed", "paced", "throughput", "latency", "spike", "scale", "oversell", "profile", "processors", "report", "__main__"])
def test_bench_modules_import(module):
    importlib.import_module(f"bench.{module}")


def test_percentile_interpolates_between_ranks():
    values = [10, 20, 30, 40, 50]
    assert percentile(values, 0) == 10
    assert percentile(values, 50) == 30
    assert percentile(values, 100) == 50
    assert percentile(values, 25) == 20
    assert percentile([1, 2], 50) == 1.5
    assert percentile([7], 99) == 7


def test_percentile_refuses_empty_and_out_of_range():
    with pytest.raises(ValueError):
        percentile([], 50)
    with pytest.raises(ValueError):
        percentile([1], 101)


def test_summary_and_slope():
    assert summarize_ms([])["p99_ms"] is None
    assert summarize_ms(range(1, 101))["p50_ms"] == 50.5
    assert slope([(0, 0), (1, 2), (2, 4)]) == pytest.approx(2)


def _orders(n: int, seed: int = 1) -> list[tuple[float, int]]:
    rng = random.Random(seed)
    return [(i * 1.0, rng.randrange(len(CHANNELS))) for i in range(n)]


def test_shared_mode_batch_sync_oversells_and_instant_sync_does_not():
    orders = _orders(60)
    batch = simulate_sku("X", 10, orders, rules_for("shared"), Sync("batch", interval_s=900), 100, random.Random(1))
    instant = simulate_sku("X", 10, orders, rules_for("shared"), Sync("stream", latencies_s=[0.0]), 100, random.Random(1))
    assert batch.oversold > 0  # every channel lists all 10 units until the next sync
    assert instant.oversold == 0 and instant.sold == 10


def test_split_mode_never_oversells_and_sells_what_the_reconciliation_relists():
    orders = _orders(200)
    for sync in (Sync("batch", interval_s=30), Sync("stream", latencies_s=[0.25], reconcile_s=20)):
        outcome = simulate_sku("X", 10, orders, rules_for("split"), sync, 220, random.Random(2))
        assert outcome.oversold == 0
        assert outcome.sold == 10
        assert outcome.orders == 200


def test_oversell_run_on_a_tiny_demand():
    result = run([100.0], "fixed", Demand(skus=5, orders_per_hour=50, hours=1, spike_start_h=0.25, spike_hours=0.25),
                 factors=(10.0,), modes=("shared", "split"))
    assert result["simulation"] is True
    assert {(r["mode"], r["sync"]) for r in result["rows"]} == {
        ("shared", "batch 15 min"), ("shared", "stockstream"), ("split", "batch 15 min"), ("split", "stockstream"),
    }
    same_demand = {r["orders"] for r in result["rows"]}
    assert len(same_demand) == 1  # every world sees the same orders


def test_profile_shares_by_layer():
    text = (
        "MainThread;run (asyncio/base_events.py:600);process (streams/stock.py:120) 6\n"
        "MainThread;run (asyncio/base_events.py:600);send (aiokafka/producer/producer.py:50) 4\n"
    )
    stacks = parse_collapsed(text)
    result = shares(stacks)
    assert result["samples"] == 10
    assert dict(result["layers"]) == {"stockstream: streams (agents, processors)": 60.0, "aiokafka": 40.0}
    assert layer_of("loads (orjson)") == "other (python, other libraries)"


def test_processors_alone_run_the_whole_traffic_through_both_stages():
    from bench.processors import PARTITIONS, _ingest_batches, _once
    from connectors.simulators.traffic import generate
    from stockstream.settings import Settings

    traffic = generate(skus=20, events=300, duplicate_rate=0.2, seed=3)
    settings = Settings(partitions=PARTITIONS, shops=traffic.shop_settings())
    batches = _ingest_batches(traffic, settings)
    assert sum(1 for _ in batches) >= 1
    _normalize_s, _stock_s, movement_batches = _once(batches, settings)
    assert movement_batches >= 1
