"""Generated traffic through the real parsers and stream processors, in memory, against the oracle.

Records go in delivery order onto `raw.<platform>` partitions (key-hashed, offsets counting), are
cut into ingest batches per ingest partition (`schemas.batches.encode_ingest`), normalised into
movements (`streams.normalize.Normalizer`, dict stores) and applied (`streams.stock.StockProcessor`,
dict stores). Then every SKU's buckets, reservations and ATS are compared with the oracle.

Known mismatch (see `test_full_mix_matches_oracle`): every movement of an update, SHIP included,
is dated with that update's modified time, which is not always the consign time:

* late: the SHIPPED state itself is never seen (a JD poll missed it) or arrives after FINISHED /
  CLOSED (reordering, Tmall / Douyin / PDD): the shipment is dated at the finish / refund time. A
  stock count at the fulfilment location between consign and that time already excludes the goods
  and the core takes them off again: on_hand low by the line quantity (ATS understated).
* early: a status-only ship notification (PDD frame: order-level; Douyin push: line-level)
  arrives before the order's first snapshot (reordering); the core holds it, and when an older
  PAID snapshot makes the line known the held SHIPPED is applied with the *snapshot's* time. A count between that time and the consign time
  still includes the goods, the core treats the shipment as inside the count: on_hand high by the
  line quantity (ATS overstated: oversell risk).
"""

from __future__ import annotations

import dataclasses
from collections import Counter, defaultdict
from dataclasses import dataclass, field

import orjson
import pytest

from connectors.simulators.oracle import GroundTruth
from connectors.simulators.traffic import Traffic, generate
from schemas import codec
from schemas.batches import decode_movements, encode_ingest
from stockstream.core.movements import MovementType
from stockstream.core.stock import StockState, ats
from stockstream.settings import Settings
from streams.normalize import IdentityCatalog, Normalizer
from streams.partitioning import partition_for
from streams.stock import StockProcessor

PARTITIONS = 4


class DictStore(dict):
    def put(self, key: bytes, value: bytes) -> None:
        self[key] = value


@dataclass
class PipelineResult:
    states: dict[str, StockState]
    quarantined: list[dict]
    ship_ms: dict[tuple[str, str, str], int] = field(default_factory=dict)  # (channel, order, line) -> SHIP time


def run_pipeline(traffic: Traffic, batch_records: int = 400) -> PipelineResult:
    settings = Settings(partitions=PARTITIONS, shops=traffic.shop_settings())
    normalizer = Normalizer(settings, IdentityCatalog())
    stock = StockProcessor(settings)
    order_stores: dict[int, DictStore] = defaultdict(DictStore)
    stock_stores: dict[int, DictStore] = defaultdict(DictStore)
    offsets: Counter = Counter()
    result = PipelineResult({}, [])
    pending: list[dict] = []

    def flush() -> None:
        by_partition: dict[int, list[dict]] = defaultdict(list)
        for raw in pending:
            by_partition[partition_for(raw["key"], PARTITIONS)].append(raw)
        pending.clear()
        for ingest_partition, raws in sorted(by_partition.items()):
            out = normalizer.process(encode_ingest(raws), ingest_partition, order_stores[ingest_partition])
            result.quarantined.extend(codec.decode(value) for _, value in out.quarantined)
            for partition, batch in out.movement_batches:
                for m in decode_movements(batch):
                    if m.type is MovementType.SHIP:
                        result.ship_ms.setdefault((m.channel, m.reference, m.line), m.event_time_ms)
                offsets[("movements", partition)] += 1
                stock.process(batch, ("movements", partition, offsets[("movements", partition)]), stock_stores[partition])

    for platform, record in traffic:
        topic = f"raw.{platform}"
        key = record.key.encode()
        partition = partition_for(key, PARTITIONS)
        pending.append(
            {
                "topic": topic,
                "partition": partition,
                "offset": offsets[(topic, partition)],
                "timestamp_ms": int(record.headers["received-at"]),
                "key": key,
                "value": record.value,
                "headers": dict(record.headers),
            }
        )
        offsets[(topic, partition)] += 1
        if len(pending) >= batch_records:
            flush()
    flush()
    for store in stock_stores.values():
        for key, value in store.items():
            result.states[key.decode()] = StockState.from_dict(orjson.loads(value))
    return result


def differences(truth: GroundTruth, skus: list[str], states: dict[str, StockState]) -> dict[str, list]:
    wrong = {}
    for sku in skus:
        want = truth.stock(sku)
        state = states.get(sku, StockState(sku))
        diffs = []
        if ats(state) != want.ats:
            diffs.append(("ats", ats(state), want.ats))
        for name in set(want.locations) | set(state.locations):
            got = state.locations.get(name)
            expected = want.locations.get(name)
            for bucket in ("on_hand", "customs_hold", "inspection", "in_transit"):
                g = getattr(got, bucket) if got else 0
                w = getattr(expected, bucket) if expected else 0
                if g != w:
                    diffs.append((name, bucket, g, w))
        if dict(state.reserved) != want.reserved:
            diffs.append(("reserved", dict(state.reserved), want.reserved))
        if diffs:
            wrong[sku] = diffs
    return wrong


def assert_quarantine_only_status_only_records(quarantined: list[dict]) -> None:
    """Nothing is rejected by a parser. Status-only notifications (Douyin pushes, PDD frames) may
    be deferred as unmapped while the core cannot apply them to lines it does not know yet; the
    snapshot that follows each carries the details."""
    seen = Counter((q["source_topic"], q["headers"].get("kind"), q["reason_code"]) for q in quarantined)
    assert set(seen) <= {("raw.douyin", "push", "unmapped_sku"), ("raw.pdd", "frame", "unmapped_sku")}, seen


BASE = dict(skus=400, events=8000, duplicate_rate=0.25, counts=8, count_skus=60)


def test_in_order_traffic_with_counts_matches_oracle() -> None:
    traffic = generate(**BASE, seed=1, reorder=0.0, jd_missed_polls=0.0)
    result = run_pipeline(traffic)
    assert_quarantine_only_status_only_records(result.quarantined)
    assert differences(traffic.truth, traffic.skus, result.states) == {}


def test_reordered_traffic_without_counts_matches_oracle() -> None:
    traffic = generate(**{**BASE, "counts": 0}, seed=2, reorder=0.8, reorder_window=5, jd_missed_polls=0.3)
    result = run_pipeline(traffic)
    assert_quarantine_only_status_only_records(result.quarantined)
    assert differences(traffic.truth, traffic.skus, result.states) == {}


@pytest.fixture(scope="module")
def full_mix() -> tuple[Traffic, PipelineResult]:
    traffic = generate(**BASE, seed=1, reorder=0.3, jd_missed_polls=0.2)
    return traffic, run_pipeline(traffic)


@pytest.mark.xfail(
    strict=True,
    reason="core dates SHIP with the modified time of the update that applies it, not the consign time; "
    "a stock count in between counts the shipment twice or not at all (see module docstring)",
)
def test_full_mix_matches_oracle(full_mix: tuple[Traffic, PipelineResult]) -> None:
    traffic, result = full_mix
    assert differences(traffic.truth, traffic.skus, result.states) == {}


def test_full_mix_differs_from_oracle_only_by_ship_dating(full_mix: tuple[Traffic, PipelineResult]) -> None:
    """The oracle with each shipment re-dated to the core's SHIP movement time agrees everywhere:
    the known mismatch is the only one."""
    traffic, result = full_mix
    assert_quarantine_only_status_only_records(result.quarantined)
    redated = GroundTruth()
    redated.add_events(traffic.truth.events)
    moved = Counter()
    for fact in traffic.truth.lines:
        if fact.shipped:
            core_ms = result.ship_ms[(fact.channel, fact.order_id, fact.line_id)]
            if core_ms != fact.ship_ms:
                moved[(fact.channel.split(":")[0], fact.status.name, "late" if core_ms > fact.ship_ms else "early")] += 1
            fact = dataclasses.replace(fact, ship_ms=core_ms)
        redated.set_line(fact)
    assert moved  # reordering / missed polls did date some shipments late
    assert differences(redated, traffic.skus, result.states) == {}
    # ... and that re-dating is what makes the real oracle differ.
    assert differences(traffic.truth, traffic.skus, result.states)
