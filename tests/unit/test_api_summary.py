"""The summary's sweep (streams/api_summary.py) over real RocksDB partitions: counts and SKUs at
risk per partition, writes between passes, revoked partitions, and asks before a first pass."""

from __future__ import annotations

import asyncio
import tempfile
from types import SimpleNamespace

import pytest

from streams.api_summary import SummarySweep
from tests.unit.test_api_views import NOW, TMALL, sku_value
from tests.unit.test_table_scan import PARTITIONS, close, open_partitions

THRESHOLD_DAYS = 21.0


def sweep_over(dbs, owned: set[int], slice_keys: int = 3, listed_max: int = 100) -> SummarySweep:
    table = SimpleNamespace(data=SimpleNamespace(_dbs=dbs))
    return SummarySweep(table, lambda: owned, PARTITIONS, THRESHOLD_DAYS, share=1.0, slice_keys=slice_keys,
                        listed_max=listed_max, clock_ms=lambda: NOW)


@pytest.fixture
def dbs():
    with tempfile.TemporaryDirectory() as directory:
        opened = open_partitions(directory, {f"S{i:02d}": 10 for i in range(20)})
        yield opened
        close(opened)


def put(dbs, value):
    from streams.partitioning import partition_for

    key = value.stock.sku.encode()
    dbs[partition_for(key, PARTITIONS)].put(key, value.encode())
    return partition_for(key, PARTITIONS)


async def test_a_pass_counts_every_sku_and_keeps_those_at_risk(dbs):
    partition = put(dbs, sku_value("HOT", 20, sold_per_day={TMALL: 10.0}))  # 2 days of cover
    from streams.metrics import REGISTRY

    held_before = REGISTRY.get_sample_value("stockstream_api_summary_sweep_seconds_total")
    sweep = sweep_over(dbs, set(range(PARTITIONS)))
    for p in range(PARTITIONS):
        await sweep.sweep(p)
    assert sum(s.skus for s in sweep.done.values()) == 21
    assert REGISTRY.get_sample_value("stockstream_api_summary_sweep_seconds_total") > held_before  # SREs see its share
    assert list(sweep.done[partition].at_risk) == ["HOT"]
    assert all(not s.at_risk for p, s in sweep.done.items() if p != partition)


async def test_the_list_of_skus_at_risk_is_bounded_and_keeps_the_fewest_days_of_cover(dbs):
    """Past the bound the rest are counted, not kept: the total stays right as of the pass."""
    for i in range(20):  # 20 SKUs selling 10/day with 1..20 units: 0.1..2 days of cover
        put(dbs, sku_value(f"S{i:02d}", i + 1, sold_per_day={TMALL: 10.0}))
    sweep = sweep_over(dbs, set(range(PARTITIONS)), listed_max=1)
    for p in range(PARTITIONS):
        await sweep.sweep(p)
    for p, summary in sweep.done.items():
        in_partition = sorted((k.decode() for k in dbs[p].keys() if k.startswith(b"S")), key=lambda sku: int(sku[1:]))
        assert len(summary.at_risk) <= 2 and len(summary.at_risk) + summary.not_listed == len(in_partition)
        assert in_partition[0] in summary.at_risk  # the fewest days of cover is listed
    # A listed SKU written again is updated, not counted twice; an unlisted one is left counted.
    sku = next(iter(sweep.done[0].at_risk))
    before = (len(sweep.done[0].at_risk), sweep.done[0].not_listed)
    for _ in range(3):
        sweep.observe(sku_value(sku, 1, sold_per_day={TMALL: 10.0}), NOW)
    assert (len(sweep.done[0].at_risk), sweep.done[0].not_listed) == before


async def test_writes_between_passes_update_the_at_risk_list(dbs):
    sweep = sweep_over(dbs, set(range(PARTITIONS)))
    for p in range(PARTITIONS):
        await sweep.sweep(p)
    hot = sku_value("S03", 5, sold_per_day={TMALL: 10.0})
    partition = put(dbs, hot)
    sweep.observe(hot, hot.allocation.rates[TMALL].at_ms)
    assert "S03" in sweep.done[partition].at_risk
    calm = sku_value("S03", 5000, sold_per_day={TMALL: 10.0})
    sweep.observe(calm, calm.allocation.rates[TMALL].at_ms)
    assert "S03" not in sweep.done[partition].at_risk


async def test_a_write_during_a_pass_is_kept_whether_the_pass_read_it_or_not(dbs):
    """A pass started before a write: a key it has read already is fixed up by `observe`, one it
    has not read yet is read with the new value."""
    sweep = sweep_over(dbs, set(range(PARTITIONS)), slice_keys=1)
    keys = sorted(k for k in dbs[0].keys() if k.startswith(b"S"))
    assert len(keys) >= 2
    first, last = keys[0].decode(), keys[-1].decode()
    running = asyncio.ensure_future(sweep.sweep(0))
    await asyncio.sleep(0)  # the pass reads one slice (the first key), then sleeps
    assert sweep._running[0].read_to == keys[0]
    for sku in (first, last):
        hot = sku_value(sku, 5, sold_per_day={TMALL: 10.0})
        put(dbs, hot)
        sweep.observe(hot, NOW)
    await running
    assert set(sweep.done[0].at_risk) == {first, last}


async def test_revoked_partitions_are_forgotten_and_asks_wait_for_a_first_pass(dbs):
    owned = {0, 1}
    sweep = sweep_over(dbs, owned)
    parts, pending = await sweep.summaries([0, 1], wait_s=0.1)  # nothing runs the sweep here: no pass yet
    assert pending == [0, 1] and all(part.skus == 0 for part in parts.values())
    runner = asyncio.ensure_future(sweep.run())
    try:
        parts, pending = await sweep.summaries([0, 1], wait_s=5.0)
        assert set(parts) == {0, 1} and pending == []
        assert sum(part.skus for part in parts.values()) == sum(1 for p in (0, 1) for k in dbs[p].keys() if k.startswith(b"S"))
        owned.discard(1)
        sweep.forget([1])
        assert 1 not in sweep.done
    finally:
        runner.cancel()


async def test_the_sweep_idles_while_nobody_asks(dbs):
    sweep = sweep_over(dbs, {0})
    sweep.idle_after_s = 0.0
    runner = asyncio.ensure_future(sweep.run())
    await asyncio.sleep(0.2)
    assert sweep.done == {}  # never asked: never read
    await sweep.summaries([0], wait_s=5.0)
    runner.cancel()


async def test_an_ask_during_a_first_pass_gets_the_figures_so_far(dbs):
    sweep = sweep_over(dbs, {0}, slice_keys=1)
    running = asyncio.ensure_future(sweep.sweep(0))
    await asyncio.sleep(0)  # one slice read
    parts, pending = await sweep.summaries([0], wait_s=0)
    assert pending == [0] and parts[0].skus == 1
    await running
    parts, pending = await sweep.summaries([0], wait_s=0)
    assert pending == [] and parts[0].skus == sum(1 for k in dbs[0].keys() if k.startswith(b"S"))


async def test_passes_after_the_first_take_a_tenth_of_the_share(dbs):
    sweep = sweep_over(dbs, {0, 1})
    shares = []
    real_sweep = sweep.sweep

    async def recording(partition, share=None):
        shares.append((partition, share))
        await real_sweep(partition, share)

    sweep.sweep = recording
    runner = asyncio.ensure_future(sweep.run())
    await sweep.summaries([0, 1], wait_s=5.0)
    while len(shares) < 4:
        await asyncio.sleep(0.05)
    runner.cancel()
    assert shares[:4] == [(0, 1.0), (1, 1.0), (0, 0.1), (1, 0.1)]
