"""The worker's health metrics and end-to-end latency, without Kafka: lag summed per logical topic,
gauges that forget topics a worker no longer holds, table sizes from RocksDB's estimate, the event
time carried by allocation changes, and the sink's latency histogram under a fake clock."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from faust.types import TP as FaustTP
from prometheus_client import CollectorRegistry, Gauge
from rocksdict import Rdict

from connectors.adapters.common import Written
from schemas import codec
from schemas.batches import encode_movements
from sinks import metrics as sink_metrics
from sinks.coalesce import Allocation, SinkState
from sinks.listings import Listing
from sinks.pusher import ShopPusher, end_to_end_latency_s
from sinks.quota import ShopQuota
from sinks.targets import TargetIndex
from stockstream.core.movements import Movement, MovementType, Origin
from stockstream.settings import ShopCredentials, Settings
from streams.consumer_lag import RawLagProbe, TopicGauge, confluent_offset_rows, faust_offset_rows, lag_by_topic
from streams.metrics import REGISTRY
from streams.sku_allocation import newest_event_time
from streams.stock import StockProcessor
from streams.worker_metrics import estimated_keys

# --- consumer lag ---------------------------------------------------------------------------------


def test_lag_is_summed_per_logical_topic():
    rows = [("t1-ingest", 100, 40), ("t1-ingest", 50, 50), ("t1-raw.tmall", 10, 3), ("t1-movements", 7, 0)]
    assert lag_by_topic(rows, "t1-") == {"ingest": 60, "raw.tmall": 7, "movements": 7}


def test_unknown_offsets_and_stale_highwaters_count_zero_but_keep_the_topic():
    # librdkafka's OFFSET_INVALID is -1001; None: Faust has not committed the partition yet.
    rows = [("ingest", -1001, 5), ("ingest", 10, None), ("ingest", 10, -1001), ("ingest", 8, 9), ("retry", None, None)]
    assert lag_by_topic(rows) == {"ingest": 0, "retry": 0}


def test_topic_gauge_removes_topics_no_longer_read():
    gauge = Gauge("lag", "lag", ["topic"], registry=CollectorRegistry())
    topics = TopicGauge(gauge)
    topics.set({"ingest": 5, "retry": 1})
    topics.set({"ingest": 2})
    samples = {s.labels["topic"]: s.value for metric in gauge.collect() for s in metric.samples}
    assert samples == {"ingest": 2}


@dataclass
class TP:
    topic: str
    partition: int
    offset: int = -1001


class FakeConfluentConsumer:
    def __init__(self, positions: dict[tuple[str, int], int], highs: dict[tuple[str, int], int]) -> None:
        self.positions, self.highs, self.calls = positions, highs, 0

    def assignment(self):
        return [TP(t, p) for t, p in self.positions]

    def position(self, tps):
        self.calls += 1
        return [TP(tp.topic, tp.partition, self.positions[(tp.topic, tp.partition)]) for tp in tps]

    def get_watermark_offsets(self, tp, cached=False):
        assert cached, "the batcher thread must not wait on the network for a metric"
        return (0, self.highs[(tp.topic, tp.partition)])


def test_confluent_rows_use_positions_and_cached_highwaters():
    consumer = FakeConfluentConsumer({("p-raw.jd", 0): 3, ("p-raw.jd", 1): 10}, {("p-raw.jd", 0): 9, ("p-raw.jd", 1): 10})
    assert sorted(confluent_offset_rows(consumer)) == [("p-raw.jd", 9, 3), ("p-raw.jd", 10, 10)]


def test_raw_lag_probe_reads_once_per_interval():
    now = [100.0]
    probe = RawLagProbe("p-", interval_s=5, clock=lambda: now[0])
    consumer = FakeConfluentConsumer({("p-raw.pdd", 0): 1}, {("p-raw.pdd", 0): 4})
    probe.poll(consumer)
    now[0] += 1
    probe.poll(consumer)
    assert consumer.calls == 1
    assert REGISTRY.get_sample_value("stockstream_consumer_lag", {"topic": "raw.pdd"}) == 3
    now[0] += 5
    consumer.highs[("p-raw.pdd", 0)] = 11
    probe.poll(consumer)
    assert consumer.calls == 2
    assert REGISTRY.get_sample_value("stockstream_consumer_lag", {"topic": "raw.pdd"}) == 10


class FakeFaustConsumer:
    def __init__(self) -> None:
        self._committed_offset = {FaustTP("ingest", 0): 4, FaustTP("app-stock-changelog", 0): 0}
        self.highs = {FaustTP("ingest", 0): 10, FaustTP("ingest", 1): 3, FaustTP("app-stock-changelog", 0): 50}

    def assignment(self):
        return set(self.highs)

    def highwater(self, tp):
        return self.highs[tp]


def test_faust_rows_skip_changelogs_and_use_committed_offsets():
    rows = faust_offset_rows(FakeFaustConsumer(), {"app-stock-changelog"})
    assert sorted(rows, key=lambda r: r[1]) == [("ingest", 3, None), ("ingest", 10, 4)]
    assert lag_by_topic(rows) == {"ingest": 6}


# --- table sizes ----------------------------------------------------------------------------------


def test_table_keys_count_active_partitions_from_rocksdb_estimates(tmp_path):
    dbs = {}
    for partition, keys in ((0, 30), (1, 7), (2, 100)):
        db = dbs[partition] = Rdict(str(tmp_path / f"p{partition}"))
        for i in range(keys):
            db[f"SKU-{i}".encode()] = b"x"
    try:
        assert estimated_keys(dbs, {0, 1}) == 37  # partition 2 is a standby here
        assert estimated_keys(dbs, set()) == 0
    finally:
        for db in dbs.values():
            db.close()


# --- event time on allocation changes -------------------------------------------------------------

TMALL = "tmall:flagship"
SETTINGS = Settings(shops=[{"platform": "tmall", "shop_id": "flagship", "app_key": "k", "app_secret": "s"}], partitions=4)


class DictStore(dict):
    def put(self, key: bytes, value: bytes) -> None:
        self[key] = value


def movement(offset: int, type_: MovementType, quantity: int, event_time_ms: int, channel: str | None = None) -> Movement:
    return Movement(
        movement_id=f"m{offset}", type=type_, sku="A", quantity=quantity, event_time_ms=event_time_ms,
        location=None if channel else "main", channel=channel, origin=Origin("0|raw.tmall/0", offset, 0),
    )


def test_newest_event_time():
    assert newest_event_time([5, 9, 7]) == 9
    assert newest_event_time([]) is None


def test_allocation_changes_carry_the_newest_applied_event_time_and_reemissions_none():
    processor = StockProcessor(SETTINGS)  # the settings' default rules
    store = DictStore()
    # Out of event-time order on purpose: the newest one counts, not the last one.
    batch = encode_movements([
        movement(0, MovementType.RECEIPT, 100, 1_000), movement(1, MovementType.RESERVE, 2, 3_000, TMALL),
        movement(2, MovementType.RESERVE, 1, 2_000, TMALL),
    ])
    first = [codec.decode(v) for _, v in processor.process(batch, ("movements", 0, 0), store).allocation_records]
    assert first and {r["event_time_ms"] for r in first} == {3_000}
    replayed = [codec.decode(v) for _, v in processor.process(batch, ("movements", 0, 0), store).allocation_records]
    assert replayed and {r["event_time_ms"] for r in replayed} == {None}


# --- end-to-end latency in the channel sink -------------------------------------------------------

SHOP = ShopCredentials(platform="jd", shop_id="s1", app_key="k", app_secret="x")
CH = "jd:s1"


class AlwaysWritten:
    async def write_stock(self, shop, writes):
        return [Written(write=w, ok=True) for w in writes]


def e2e(stat: str) -> float:
    return REGISTRY.get_sample_value(f"stockstream_end_to_end_latency_seconds_{stat}", {"platform": "jd"}) or 0.0


async def test_sink_observes_event_to_acknowledgment_once_per_event():
    listings = [Listing("jd", "s1", "", "p0", "SKU-0")]
    state = SinkState(TargetIndex(listings, lambda l: ((l.merchant_code, 1),)), lambda ch: True)
    clock = [1_700_000_010_000]

    async def park(push, decision):
        raise AssertionError("nothing is parked")

    pusher = ShopPusher(state, SHOP, AlwaysWritten(), ShopQuota(1000), park, clock_ms=lambda: clock[0])

    async def push_due() -> None:
        await pusher.push(state.take(CH, 10, float("inf")))

    count, total = e2e("count"), e2e("sum")
    state.apply(Allocation("SKU-0", CH, 5, 1, 1_700_000_009_000, event_time_ms=1_700_000_006_500))
    await push_due()
    # approx: the histogram is process-wide, and the difference of two large float sums rounds
    assert (e2e("count") - count, e2e("sum") - total) == (1, pytest.approx(3.5))

    state.mark_drift((CH, "p0"))  # pushed again from the same allocation: no new event
    await push_due()
    assert e2e("count") - count == 1

    clock[0] += 60_000
    state.apply(Allocation("SKU-0", CH, 4, 2, clock[0] - 100, event_time_ms=None))  # from a rule change: no event
    await push_due()
    assert e2e("count") - count == 1

    state.apply(Allocation("SKU-0", CH, 3, 3, clock[0] - 100, event_time_ms=clock[0] - 250))
    await push_due()
    assert (e2e("count") - count, round(e2e("sum") - total, 6)) == (2, 3.75)


def test_latency_is_never_negative_and_the_histogram_has_the_slo_bucket():
    assert end_to_end_latency_s([Allocation("A", CH, 1, 1, 0, event_time_ms=2_000)], None, 1_000) == 0
    assert end_to_end_latency_s([Allocation("A", CH, 1, 1, 0, event_time_ms=2_000)], 2_000, 9_000) is None
    assert 5 in sink_metrics.END_TO_END_LATENCY._upper_bounds
