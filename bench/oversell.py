"""Oversold units and stranded stock on simulated 618 demand over four channels sharing stock:
a 15-minute batch sync (the overnight-CSV world made frequent) against stockstream, whose channel
quantities follow each sale after the pipeline latency measured by bench.latency.

A discrete-event simulation over the pure allocation core (`stockstream.core.allocation.allocate`,
the same function the stock agent runs), not the live pipeline: per SKU, orders arrive as a
Poisson process whose rate steps up `spike_factor` x during the 618 window; each order picks a
channel by its share of traffic. A channel sells while its listing shows stock and decrements
its listing itself (as the marketplaces do); the seller's system learns of the sale later (after
one sampled pipeline latency for stockstream, at the next 15-minute sync for the baseline),
allocates the new ATS under the same rules in both worlds and overwrites the listings (full
overwrite, as the channel sinks do: sales the system has not seen yet are not subtracted).

* oversold units: units sold beyond the stock there was;
* stranded: orders refused on a channel that showed 0 while stock remained (lost sales), and
  channel-hours of a listing at 0 while the SKU still had stock.

    python -m bench.oversell [--skus 300] [--latency-ms 250]
"""

from __future__ import annotations

import argparse
import heapq
import math
import random
from dataclasses import dataclass, field
from typing import Optional, Sequence

from stockstream.core.allocation import AllocationMode, AllocationRules, AllocationState, ChannelRule, allocate

HOUR_S = 3600.0
CHANNELS = ("tmall:2200754211234", "jd:10086001", "douyin:4463798", "pdd:987654321")
CHANNEL_SHARES = (0.4, 0.2, 0.25, 0.15)  # of orders


@dataclass(frozen=True)
class Demand:
    skus: int = 300
    orders_per_hour: float = 1500.0  # all SKUs, at 1x
    hours: float = 4.0
    spike_start_h: float = 1.0  # 618 opens at 20:00: one steady hour before
    spike_hours: float = 1.0
    spike_factor: float = 10.0
    stock_cover: float = 1.0  # initial stock = this x the SKU's 1x demand over the horizon (+-40%)
    seed: int = 618


@dataclass(frozen=True)
class Sync:
    """How the seller's system learns of sales: after `latencies_s` (one sampled per sale:
    stockstream) or at every `interval_s` (batch)."""

    name: str
    interval_s: Optional[float] = None
    latencies_s: Sequence[float] = ()
    push_delay_s: float = 0.0  # from the new allocation to the listing changed on the platform
    # stockstream's sink pushes changes only, and reads listings back every `reconcile_s`: a
    # listing that differs from what was pushed on `confirmations` reads in a row is pushed again.
    reconcile_s: Optional[float] = None
    confirmations: int = 2


@dataclass
class Outcome:
    sold: int = 0
    oversold: int = 0
    stranded_orders: int = 0  # refused while stock remained (lost sales)
    stranded_channel_hours: float = 0.0
    refused_sold_out: int = 0  # refused when no stock remained (true sell-out)
    orders: int = 0

    def add(self, other: "Outcome") -> None:
        for name in ("sold", "oversold", "stranded_orders", "stranded_channel_hours", "refused_sold_out", "orders"):
            setattr(self, name, getattr(self, name) + getattr(other, name))


def rules_for(mode: str) -> AllocationRules:
    mode = AllocationMode(mode)
    if mode is AllocationMode.SHARED:
        channels = tuple(ChannelRule(c) for c in CHANNELS)
    elif mode is AllocationMode.SPLIT:
        channels = tuple(ChannelRule(c, weight=w) for c, w in zip(CHANNELS, CHANNEL_SHARES))
    else:  # a floor per channel: without one, the first channel to sell takes the whole rest
        channels = tuple(ChannelRule(c, weight=w, floor=0.1) for c, w in zip(CHANNELS, CHANNEL_SHARES))
    return AllocationRules(version=1, mode=mode, channels=channels)


def _rate_at(t: float, d: Demand, base: float) -> float:
    start, end = d.spike_start_h * HOUR_S, (d.spike_start_h + d.spike_hours) * HOUR_S
    return base * (d.spike_factor if start <= t < end else 1.0)


def orders_for_sku(d: Demand, per_sku_rate: float, rng: random.Random) -> list[tuple[float, int]]:
    """(time s, channel index) of one SKU's orders: Poisson, piecewise-constant rate."""
    out = []
    bounds = [0.0, d.spike_start_h * HOUR_S, (d.spike_start_h + d.spike_hours) * HOUR_S, d.hours * HOUR_S]
    for lo, hi in zip(bounds, bounds[1:]):
        if hi <= lo:
            continue
        rate = _rate_at(lo, d, per_sku_rate)
        t = lo
        while rate > 0:
            t += rng.expovariate(rate)
            if t >= hi:
                break
            out.append((t, rng.choices(range(len(CHANNELS)), CHANNEL_SHARES)[0]))
    return out


def simulate_sku(sku: str, stock: int, orders: list[tuple[float, int]], rules: AllocationRules, sync: Sync,
                 horizon_s: float, rng: random.Random) -> Outcome:
    out = Outcome(orders=len(orders))
    state = AllocationState(sku)
    version = 1
    known_sold = 0
    listed = {c: 0 for c in CHANNELS}
    for change in allocate(state, stock, version, rules, 0)[1]:
        listed[change.channel] = change.quantity
    sold = 0
    unseen_sales: dict[str, int] = {}  # by channel, not yet known to the system (batch)
    events: list[tuple[float, int, str, object]] = [(t, i, "order", ch) for i, (t, ch) in enumerate(orders)]
    seq = len(events)
    for every, kind in ((sync.interval_s, "sync"), (sync.reconcile_s, "reconcile")):
        k = 1
        while every and k * every < horizon_s:
            events.append((k * every, seq, kind, None))
            seq, k = seq + 1, k + 1
    suspect: dict[str, tuple[int, int]] = {}  # reconciliation: channel -> (listing seen differing, reads)
    heapq.heapify(events)
    last_t = 0.0

    def stranded_channels() -> int:
        return sum(1 for q in listed.values() if q <= 0) if sold < stock else 0

    while events:
        t, _, kind, data = heapq.heappop(events)
        out.stranded_channel_hours += (t - last_t) * stranded_channels() / HOUR_S
        last_t = t
        if kind == "order":
            channel = CHANNELS[data]
            if listed[channel] > 0:
                listed[channel] -= 1
                sold += 1
                if sold > stock:
                    out.oversold += 1
                if sync.interval_s:
                    unseen_sales[channel] = unseen_sales.get(channel, 0) + 1
                else:
                    delay = rng.choice(sync.latencies_s) if sync.latencies_s else 0.0
                    heapq.heappush(events, (t + delay, seq, "seen", channel))
                    seq += 1
            elif sold < stock:
                out.stranded_orders += 1
            else:
                out.refused_sold_out += 1
            continue
        if kind == "seen":
            known_sold += 1
            sales = {data: 1}
        elif kind == "sync":  # the batch job: every listing overwritten with its allocation
            sales, unseen_sales = unseen_sales, {}
            known_sold += sum(sales.values())
            version += 1
            allocate(state, stock - known_sold, version, rules, int(t * 1000), sales_by_channel=sales)
            listed.update(state.quantities)
            continue
        elif kind == "reconcile":
            for channel, quantity in state.quantities.items():
                if listed[channel] == quantity:
                    suspect.pop(channel, None)
                    continue
                seen, reads = suspect.get(channel, (None, 0))
                reads = reads + 1 if seen == listed[channel] else 1  # a sale in between: not confirmed
                suspect[channel] = (listed[channel], reads)
                if reads >= sync.confirmations:
                    listed[channel] = quantity
                    suspect.pop(channel)
            continue
        else:  # "push": a new quantity reaches the platform
            channel, quantity = data
            listed[channel] = quantity
            continue
        version += 1
        _, changes = allocate(state, stock - known_sold, version, rules, int(t * 1000), sales_by_channel=sales)
        for change in changes:
            if sync.push_delay_s:
                heapq.heappush(events, (t + sync.push_delay_s, seq, "push", (change.channel, change.quantity)))
                seq += 1
            else:
                listed[change.channel] = change.quantity
    out.stranded_channel_hours += (horizon_s - last_t) * stranded_channels() / HOUR_S
    out.sold = sold
    return out


def simulate(d: Demand, mode: str, sync: Sync) -> Outcome:
    """Every SKU under one allocation mode and one sync; the same demand for any `sync`."""
    rng = random.Random(d.seed)
    ranks = list(range(1, d.skus + 1))
    rng.shuffle(ranks)
    weights = [1.0 / r**0.8 for r in ranks]  # Zipf-like popularity, like the traffic generator
    total_w = sum(weights)
    rules = rules_for(mode)
    horizon = d.hours * HOUR_S
    total = Outcome()
    for i, w in enumerate(weights):
        per_sku_rate = d.orders_per_hour * w / total_w / HOUR_S
        sku_rng = random.Random(f"{d.seed}-{i}")
        expected_1x = per_sku_rate * horizon
        stock = max(1, round(expected_1x * d.stock_cover * sku_rng.uniform(0.6, 1.4)))
        orders = orders_for_sku(d, per_sku_rate, sku_rng)
        total.add(simulate_sku(f"SKU-{i:05d}", stock, orders, rules, sync, horizon, random.Random(f"lat-{d.seed}-{i}")))
    return total


def run(latencies_ms: Optional[Sequence[float]] = None, latency_source: str = "default 250 ms",
        demand: Demand = Demand(), factors=(1.0, 10.0), modes=("shared", "split", "velocity"),
        batch_interval_s: float = 900.0, reconcile_s: float = 300.0) -> dict:
    latencies_s = [ms / 1000 for ms in (latencies_ms or [250.0])]
    syncs = [Sync("batch 15 min", interval_s=batch_interval_s),
             Sync("stockstream", latencies_s=latencies_s, reconcile_s=reconcile_s)]
    rows = []
    for factor in factors:
        d = Demand(**{**demand.__dict__, "spike_factor": factor})
        for mode in modes:
            for sync in syncs:
                o = simulate(d, mode, sync)
                rows.append({
                    "load": f"{factor:g}x", "mode": mode, "sync": sync.name, "orders": o.orders, "sold": o.sold,
                    "oversold_units": o.oversold, "stranded_orders": o.stranded_orders,
                    "stranded_channel_hours": round(o.stranded_channel_hours, 1),
                })
    result = {
        "benchmark": "oversell", "simulation": True, "demand": demand.__dict__,
        "latency_source": latency_source, "latency_samples": len(latencies_s),
        "latency_p50_ms": round(sorted(latencies_s)[len(latencies_s) // 2] * 1000, 1),
        "batch_interval_s": batch_interval_s, "reconcile_s": reconcile_s, "rows": rows,
    }
    return result


def latencies_from_results() -> tuple[Optional[list[float]], str]:
    """The probe latencies of the highest rate bench.latency sustained (or of its lowest rate)."""
    from bench import harness

    latency = harness.load("latency")
    if not latency:
        return None, "default 250 ms (no latency results)"
    pairs = list(zip(latency["levels"], latency["runs"]))
    sustained = [p for p in pairs if p[0]["sustained"] and p[0]["latency"]["count"]]
    level, paced = (sustained[-1] if sustained else pairs[0])
    samples = [ms for _, ms in paced["probe_latencies"]]
    note = "sustained" if sustained else "not sustained: the lowest rate's"
    return samples or None, f"bench.latency probes at {level['offered_per_s']}/s ({note}), {len(samples)} samples"


def main(argv=None) -> None:
    from bench import harness

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--skus", type=int, default=300)
    parser.add_argument("--orders-per-hour", type=float, default=1500)
    parser.add_argument("--latency-ms", type=float, default=None, help="a fixed latency instead of bench.latency's")
    args = parser.parse_args(argv)
    if args.latency_ms is not None:
        samples, source = [args.latency_ms], f"fixed {args.latency_ms} ms"
    else:
        samples, source = latencies_from_results()
    result = run(samples, source, Demand(skus=args.skus, orders_per_hour=args.orders_per_hour))
    harness.save("oversell", result)
    for row in result["rows"]:
        print(f"oversell: {row['load']:>4} {row['mode']:<8} {row['sync']:<13} sold {row['sold']:>6} oversold "
              f"{row['oversold_units']:>5} stranded orders {row['stranded_orders']:>5} "
              f"channel-h {row['stranded_channel_hours']}", flush=True)


if __name__ == "__main__":
    main()
