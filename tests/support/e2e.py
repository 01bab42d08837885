"""What the end-to-end (issue #5) and chaos (issue #7) tests share: allocation rules and the
allocation the pure core computes from the oracle, reading `allocations` and `erp.journal` back,
the checks on the simulators' write history, the ERP checks, fault injection in a simulator's
HTTP path, and percentiles.

The checks return lists of problems (empty: fine) so that a test can say everything that is
wrong at once instead of the first thing.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
import urllib.request
from bisect import bisect_right
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional, Sequence

from confluent_kafka import Consumer, TopicPartition

from connectors.simulators.base_api import PlatformSim
from connectors.simulators.erp_api import ErpSim
from schemas import codec
from schemas.names import ALLOCATION_CHANGE, ERP_JOURNAL_ENTRY
from sinks.listings import Listing, write_listings_csv as write_csv
from stockstream.core.allocation import AllocationRules, allocation_targets
from stockstream.core.journal import JournalEntry
from stockstream.rules_topic import DEFAULTS_KEY, RulesRecord, publish_rules
from stockstream.settings import Settings
from stockstream.topics import ALLOCATIONS, ERP_JOURNAL
from streams.erp_sink import adjustment_body

# --------------------------------------------------------------------------------------------
# Rules and the expected allocation


def split_rules(channels: Sequence[str], version: int = 1) -> dict:
    """Split mode without hysteresis, so the final allocation is a function of the final ATS
    alone: weights 3, 2, 2, 1, ... in channel order, 5 units reserved for the first channel
    (the brand's flagship), a buffer of 1 on the second, `min_to_list` 3 on the last."""
    rules = []
    for i, channel in enumerate(channels):
        rule: dict[str, Any] = {"channel": channel, "weight": (3, 2, 2, 1)[i % 4]}
        if i == 0:
            rule["reserve"] = 5
        if i == 1:
            rule["buffer"] = 1
        if i == len(channels) - 1 and i > 1:
            rule["min_to_list"] = 3
        rules.append(rule)
    return {"version": version, "mode": "split", "hysteresis_units": 0, "channels": rules}


def publish_default_rules(settings: Settings, rules: dict) -> AllocationRules:
    """The rules as the `*` record of `allocation-rules` (what `stockstream rules set --default`
    publishes); returns them as the core reads them."""
    publish_rules(settings, RulesRecord(DEFAULTS_KEY, rules))
    return AllocationRules.from_dict(rules)


def expected_allocations(ats_by_sku: Mapping[str, int], rules: AllocationRules) -> dict[tuple[str, str], int]:
    """(SKU, channel) -> the quantity the pure core allocates from the oracle's ATS."""
    return {(sku, channel): q for sku, ats in ats_by_sku.items() for channel, q in allocation_targets(ats, rules).items()}


# --------------------------------------------------------------------------------------------
# Reading topics back


def _read_everything(settings: Settings, topic: str, timeout_s: float = 120.0) -> list[tuple[int, int, Optional[bytes], bytes]]:
    """(partition, offset, key, value) of every record in `topic` right now, partition order."""
    consumer = Consumer({"bootstrap.servers": settings.bootstrap_servers, "group.id": f"e2e-reader-{time.monotonic_ns()}",
                         "enable.auto.commit": False})
    out: list[tuple[int, int, Optional[bytes], bytes]] = []
    try:
        metadata = consumer.list_topics(topic, timeout=30)
        highs = {}
        for p in metadata.topics[topic].partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=30)
            if high > low:
                highs[p] = high
        consumer.assign([TopicPartition(topic, p, 0) for p in highs])
        deadline = time.monotonic() + timeout_s
        while highs:
            assert time.monotonic() < deadline, f"{topic}: could not read to the end in {timeout_s}s ({highs} left)"
            for message in consumer.consume(5000, timeout=0.5):
                if message.error() is not None:
                    continue
                out.append((message.partition(), message.offset(), message.key(), message.value()))
                if message.offset() + 1 >= highs.get(message.partition(), 0):
                    highs.pop(message.partition(), None)
    finally:
        consumer.close()
    out.sort(key=lambda r: (r[0], r[1]))
    return out


def read_allocations(settings: Settings) -> list[dict]:
    """Every AllocationChange record in the topic (replays and re-emissions included), in
    partition order, each with `_partition` / `_offset`."""
    out = []
    for partition, offset, _key, value in _read_everything(settings, settings.topic(ALLOCATIONS.name)):
        record = codec.decode(value, ALLOCATION_CHANGE)
        record["_partition"], record["_offset"] = partition, offset
        out.append(record)
    return out


def latest_allocations(records: Iterable[dict]) -> dict[tuple[str, str], dict]:
    """The highest version per (SKU, channel): what a consumer of the topic ends up with."""
    latest: dict[tuple[str, str], dict] = {}
    for r in records:
        key = (r["sku"], r["channel"])
        if key not in latest or r["version"] > latest[key]["version"]:
            latest[key] = r
    return latest


def first_publications(records: Iterable[dict]) -> dict[tuple[str, str], list[dict]]:
    """Per (SKU, channel), the first record of each version, by version. A version is published
    once and re-emitted unchanged after a replay (with a later `computed_at_ms`): the first one
    is when it was computed."""
    firsts: dict[tuple[str, str, int], dict] = {}
    for r in records:
        key = (r["sku"], r["channel"], r["version"])
        if key not in firsts or r["computed_at_ms"] < firsts[key]["computed_at_ms"]:
            firsts[key] = r
    out: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for (sku, channel, _v), r in sorted(firsts.items(), key=lambda kv: kv[0]):
        out[(sku, channel)].append(r)
    return out


def allocation_problems(records: Sequence[dict]) -> list[str]:
    """The split-mode invariants on the published stream.

    * Every record: 0 <= quantity <= max(ATS, 0) of the record, and a version is never published
      with two different quantities (a re-emission repeats it exactly).
    * Every SKU, at every allocation it went through - each (ats_version, rule_version) key k
      that appears - the quantities in force at k sum to at most max(ATS at k, 0). The quantity
      in force for a channel at k is that of its highest version whose key is <= k (channels that
      did not change at k keep their quantity: the core emits only changes). This is order-
      independent, so replays and re-emissions after crashes cannot fool it, and it checks the
      allocation once complete, never the half-published moment between two channels' records.
    """
    problems: list[str] = []
    quantity_of: dict[tuple[str, str, int], int] = {}
    by_sku: dict[str, list[dict]] = defaultdict(list)
    for r in records:
        if not 0 <= r["quantity"] <= max(r["ats"], 0):
            problems.append(f"{r['sku']} {r['channel']} v{r['version']}: quantity {r['quantity']} with ATS {r['ats']}")
        key = (r["sku"], r["channel"], r["version"])
        if quantity_of.setdefault(key, r["quantity"]) != r["quantity"]:
            problems.append(f"{key}: version published as {quantity_of[key]} and as {r['quantity']}")
        by_sku[r["sku"]].append(r)
    for sku, rows in by_sku.items():
        ats_at: dict[tuple[int, int], int] = {}
        for r in rows:
            ats_at[(r["ats_version"], r["rule_version"])] = r["ats"]
        per_channel: dict[str, list[tuple[tuple[int, int], int, int]]] = defaultdict(list)
        for r in rows:
            per_channel[r["channel"]].append(((r["ats_version"], r["rule_version"]), r["version"], r["quantity"]))
        channels = []
        for entries in per_channel.values():
            entries.sort()  # versions grow with the key: the last entry with key <= k is in force
            channels.append(([key for key, _v, _q in entries], [q for _k, _v, q in entries]))
        for k, ats in ats_at.items():
            total = 0
            for keys, quantities in channels:
                i = bisect_right(keys, k)
                if i:
                    total += quantities[i - 1]
            if total > max(ats, 0):
                problems.append(f"{sku} at ATS version {k}: channels sum to {total} > ATS {ats}")
    return problems


# --------------------------------------------------------------------------------------------
# What the simulated shops were written


@dataclass(frozen=True)
class ShopListing:
    platform: str
    shop_id: str
    listing_id: str
    sku_id: str
    sku: str  # master SKU (merchant code, identity catalog)

    @property
    def channel(self) -> str:
        return f"{self.platform}:{self.shop_id}"


def write_listings_csv(path: Path, listings: Iterable[ShopListing]) -> Path:
    """The seller-centre export the sink reads (STOCKSTREAM_LISTINGS_PATH)."""
    return write_csv(path, (Listing(l.platform, l.shop_id, l.listing_id, l.sku_id, l.sku) for l in listings))


def shop_levels(sims: Mapping[str, PlatformSim], listings: Iterable[ShopListing]) -> dict[tuple[str, str], Optional[int]]:
    """(SKU, channel) -> what the simulated shop shows now."""
    return {(l.sku, l.channel): sims[l.platform].stock_of(l.shop_id, l.sku_id) for l in listings}


def shop_mismatches(sims: Mapping[str, PlatformSim], listings: Sequence[ShopListing], expected: Mapping[tuple[str, str], int]) -> dict:
    shown = shop_levels(sims, listings)
    return {key: (shown.get(key), want) for key, want in expected.items() if shown.get(key) != want}


@dataclass
class WriteReport:
    problems: list[str]
    latencies_ms: list[int]  # allocation computed -> the platform applied it, first write of each version
    writes: int
    max_excess: int  # largest cross-platform excess over the latest ATS seen (see write_problems)
    writes_with_excess: int  # level changes (writes, sales, cancellations) after which there was one


def write_problems(sims: Mapping[str, PlatformSim], listings: Sequence[ShopListing], records: Sequence[dict]) -> WriteReport:
    """Every stock write the simulators recorded (seller API writes only: seeds and the
    platforms' own order changes are not ours) against the allocations.

    Asserted (problems): each write of quantity q on a listing at time t comes from a published
    allocation of that listing's (SKU, channel) with quantity q computed at or before t, and q
    is at most that allocation's ATS. With `allocation_problems` (each allocation sums to at most
    its ATS) this is the whole no-oversell chain: nothing reaches a channel that was not
    allocated, and nothing was allocated beyond ATS.

    Measured, not asserted: the shops are separate platforms written by independent per-shop
    pushers, so at a wall-clock instant one platform may already show a SKU's new, higher share
    while another still shows its old one (the window between two HTTP calls to two companies),
    and the platforms move their own levels (a sale lowers one, a cancelled unpaid order puts the
    units back while stockstream never reserved them). `max_excess` is the largest amount by which
    what a SKU's shops showed together (every change in the simulators' history) exceeded the
    newest ATS published at that moment; `writes_with_excess` counts the changes after which it
    was positive.
    """
    by_listing = {(l.platform, l.shop_id, l.sku_id): l for l in listings}
    firsts = first_publications(records)
    ats_timeline: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for r in records:
        ats_timeline[r["sku"]].append((r["computed_at_ms"], r["ats"]))
    for timeline in ats_timeline.values():
        timeline.sort()
    problems: list[str] = []
    latencies: list[int] = []
    credited: set[tuple[str, str, int]] = set()
    changes = []
    for platform, sim in sims.items():
        for change in sim.history:
            listing = by_listing.get((platform, change.shop_id, change.sku_id))
            if listing is None:
                if change.source == "write":
                    problems.append(f"{platform} {change.shop_id}/{change.sku_id}: written but not a listing of the test")
                continue
            changes.append((change.at_ms, listing, change.quantity, change.source))
    changes.sort(key=lambda c: c[0])
    writes = 0
    shown: dict[str, dict[str, int]] = defaultdict(dict)
    max_excess = 0
    with_excess = 0
    for at_ms, listing, q, source in changes:
        shown[listing.sku][listing.channel] = q
        if source == "write":
            writes += 1
            candidates = [r for r in firsts.get((listing.sku, listing.channel), []) if r["quantity"] == q and r["computed_at_ms"] <= at_ms]
            if not candidates:
                problems.append(f"{listing.channel} {listing.sku}: wrote {q} at {at_ms}, no allocation of {q} computed before")
                continue
            source_record = max(candidates, key=lambda r: r["version"])
            if q > max(source_record["ats"], 0):
                problems.append(f"{listing.channel} {listing.sku}: wrote {q} from v{source_record['version']} with ATS {source_record['ats']}")
            key = (listing.sku, listing.channel, source_record["version"])
            if key not in credited:
                credited.add(key)
                latencies.append(at_ms - source_record["computed_at_ms"])
        timeline = ats_timeline[listing.sku]
        i = bisect_right(timeline, (at_ms, float("inf")))
        if i:
            excess = sum(shown[listing.sku].values()) - max(timeline[i - 1][1], 0)
            if excess > 0:
                with_excess += 1
                max_excess = max(max_excess, excess)
    return WriteReport(problems, latencies, writes, max_excess, with_excess)


# --------------------------------------------------------------------------------------------
# The ERP


def read_journal(settings: Settings) -> tuple[dict[str, JournalEntry], list[str]]:
    """external id -> entry, from every record of erp.journal; problems: an id published twice
    with different content (the contract says re-emissions are identical)."""
    entries: dict[str, JournalEntry] = {}
    problems = []
    for _p, _o, _key, value in _read_everything(settings, settings.topic(ERP_JOURNAL.name)):
        record = codec.decode(value, ERP_JOURNAL_ENTRY)
        entry = JournalEntry(**{**record, "movement_ids": tuple(record["movement_ids"])})
        before = entries.setdefault(entry.external_id, entry)
        if before != entry:
            problems.append(f"{entry.external_id}: published twice with different content")
    return entries, problems


def erp_problems(erp: ErpSim, entries: Mapping[str, JournalEntry]) -> list[str]:
    """The ERP holds each journal entry exactly once: one record per external id, with the
    entry's body, never overwritten with other content, and nothing else."""
    problems = []
    held = set(erp.records)
    if held - set(entries):
        problems.append(f"{len(held - set(entries))} ERP records are no journal entry, e.g. {sorted(held - set(entries))[:3]}")
    if set(entries) - held:
        problems.append(f"{len(set(entries) - held)} journal entries missing in the ERP, e.g. {sorted(set(entries) - held)[:3]}")
    for external_id, entry in entries.items():
        record = erp.records.get(external_id)
        if record is not None and record.body != adjustment_body(entry):
            problems.append(f"{external_id}: ERP holds {record.body}, the journal says {adjustment_body(entry)}")
        if record is not None and record.content_changed:
            problems.append(f"{external_id}: overwritten with other content")
    return problems


def erp_totals(erp: ErpSim) -> dict[tuple[str, str], int]:
    """(SKU, location) -> the sum of the ERP's adjustments (zero sums left out)."""
    totals: dict[tuple[str, str], int] = defaultdict(int)
    for record in erp.records.values():
        totals[(record.body["sku"], record.body["location"])] += record.body["quantity"]
    return {k: v for k, v in totals.items() if v}


def differences(got: Mapping, want: Mapping, limit: int = 8) -> dict:
    keys = set(got) | set(want)
    wrong = {k: (got.get(k), want.get(k)) for k in keys if got.get(k) != want.get(k)}
    return dict(sorted(wrong.items(), key=lambda kv: str(kv[0]))[:limit]) | ({"...": f"{len(wrong)} in all"} if len(wrong) > limit else {})


# --------------------------------------------------------------------------------------------
# Faults in a simulator's HTTP path


class Timeouts:
    """Makes a share of a simulator's platform API calls (not its control API) time out for the
    caller: the answer comes after `delay_s`, longer than the adapters' request timeout. Half of
    them are slow before the platform acts (the write lands late, possibly after a newer one the
    caller sent meanwhile: only reconciliation can notice), half after (the write happened, the
    answer is lost: the caller retries a write that already took effect)."""

    def __init__(self, rate: float, delay_s: float, seed: int) -> None:
        self.rate = rate
        self.delay_s = delay_s
        self.rng = random.Random(seed)
        self.count = 0

    def install(self, sim: PlatformSim) -> "Timeouts":
        from aiohttp import web

        @web.middleware
        async def slow(request, handler):
            if request.path.startswith("/_sim/") or self.rng.random() >= self.rate:
                return await handler(request)
            self.count += 1
            if self.rng.random() < 0.5:
                await asyncio.sleep(self.delay_s)
                return await handler(request)
            response = await handler(request)
            await asyncio.sleep(self.delay_s)
            return response

        sim.app.middlewares.append(slow)
        return self


def set_channel_faults(sims: Iterable[PlatformSim], timeouts: Iterable[Timeouts], fail: float, throttle: float, timeout: float) -> None:
    for sim in sims:
        sim.knobs.fail_rate, sim.knobs.throttle_rate = fail, throttle
    for t in timeouts:
        t.rate = timeout


def listings_start_empty(sim: PlatformSim) -> None:
    """Seeding a listing through the control API (what `simulate` does before its run) lists it
    with 0: every unit a shop sells was then put there by a stockstream write, so "no channel
    ever showed more than was available" covers the whole run, the first seconds included."""
    seed = sim.set_stock

    def empty(shop_id: str, sku_id: str, quantity: int, listing_id: str = "") -> None:
        seed(shop_id, sku_id, 0, listing_id)

    sim.set_stock = empty  # type: ignore[method-assign]


# --------------------------------------------------------------------------------------------
# Numbers


def percentile(values: Sequence[float], p: float) -> Optional[float]:
    """Nearest-rank percentile (p in 0..100); None without values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(-(-p * len(ordered) // 100))))
    return ordered[rank - 1]


def histogram_quantile(exposition: str, name: str, q: float) -> Optional[float]:
    """The q-quantile of a Prometheus histogram summed over its labels (upper bucket bound, as
    Prometheus's histogram_quantile would interpolate no further than that)."""
    buckets: dict[float, float] = defaultdict(float)
    for line in exposition.splitlines():
        if line.startswith(f"{name}_bucket{{"):
            labels, value = line.rsplit(" ", 1)
            le = labels.split('le="')[1].split('"')[0]
            buckets[float("inf") if le == "+Inf" else float(le)] += float(value)
    if not buckets:
        return None
    total = buckets[float("inf")]
    if not total:
        return None
    for bound in sorted(buckets):
        if buckets[bound] >= q * total:
            return bound
    return None


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        return response.read().decode()


def write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=1, sort_keys=True, default=str))
