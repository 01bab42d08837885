"""Load for the benchmarks: four-platform + warehouse traffic from the seeded generator (cached on
disk: generating costs ~140 us of CPU per event), and a paced producer that offers it at chosen
rates with latency probes mixed in.

A probe is a one-line warehouse receipt for a SKU of its own (`PROBE-<n>`, document `PRB-<n>`).
It travels the same path as every raw record (raw topic -> ingest batcher -> normalizer -> stock
agent), and its SKU's first output record (allocation change, else ATS snapshot) can only come
from it, so the probe's latency is exact: output record timestamp - raw record timestamp (both
Kafka CreateTime, same clock). Ordinary records give no such one-to-one match.
"""

from __future__ import annotations

import pickle
import time
from dataclasses import dataclass, field
from typing import Iterator, Optional, Sequence

from confluent_kafka import Producer

from bench.harness import RESULTS_DIR
from connectors import warehouse
from connectors.base import RawRecord, raw_record
from connectors.simulators.traffic import Traffic, generate
from stockstream.core.model import WarehouseEvent, WarehouseEventType
from stockstream.settings import Settings
from stockstream.topics import raw_topic

PROBE_SKU_PREFIX = "PROBE-"
PROBE_DOC_PREFIX = "PRB-"
PROBE_LOCATION = "SH-DC"


def traffic_pool(events: int, skus: int = 2000, seed: int = 7) -> Traffic:
    """`events` raw records (20% redeliveries) over `skus` SKUs, generated once and cached."""
    cache = RESULTS_DIR / "cache" / f"traffic-{skus}-{events}-{seed}.pkl"
    if cache.exists():
        return pickle.loads(cache.read_bytes())
    traffic = generate(skus=skus, events=events, duplicate_rate=0.2, seed=seed)
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_bytes(pickle.dumps(traffic, protocol=pickle.HIGHEST_PROTOCOL))
    return traffic


def probe_record(n: int, now_ms: int) -> RawRecord:
    doc = f"{PROBE_DOC_PREFIX}{n:07d}"
    event = WarehouseEvent(WarehouseEventType.RECEIPT, doc, 1, PROBE_LOCATION, f"{PROBE_SKU_PREFIX}{n:07d}", 1, now_ms)
    return raw_record(
        platform=warehouse.PLATFORM, shop=PROBE_LOCATION, kind=warehouse.KIND_JSON, key=doc,
        payload=warehouse.json_document([event]), received_at_ms=now_ms,
    )


def producer_for(settings: Settings) -> Producer:
    # The adapters' settings (connectors/publisher.py): idempotent, acks=all, murmur2 like every
    # stockstream producer, a small linger.
    return Producer({
        "bootstrap.servers": settings.bootstrap_servers, "enable.idempotence": True, "acks": "all",
        "linger.ms": 5, "compression.type": "lz4", "partitioner": "murmur2_random",
        "queue.buffering.max.messages": 1_000_000,
    })


@dataclass
class Phase:
    seconds: float
    rate: float  # offered raw events/s (probes included)
    name: str = ""


@dataclass
class FeedReport:
    produced: int = 0
    probes: int = 0
    phases: list[dict] = field(default_factory=list)  # per phase: offered and achieved rate, window


class PacedProducer:
    """Offers records at a rate per phase, in 10 ms ticks, one probe every `probe_every` records."""

    def __init__(self, settings: Settings, records: Iterator[tuple[str, RawRecord]], probe_every: int = 100) -> None:
        self.settings = settings
        self.records = records
        self.probe_every = probe_every
        self.producer = producer_for(settings)
        self.topics = {p: settings.topic(raw_topic(p)) for p in ("tmall", "jd", "douyin", "pdd", "warehouse")}
        self.report = FeedReport()
        self.started_at: Optional[float] = None  # time.time() of the first record

    def _send(self, platform: str, record: RawRecord) -> None:
        while True:
            try:
                self.producer.produce(self.topics[platform], key=record.key.encode(), value=record.value,
                                      headers=record.kafka_headers())
                return
            except BufferError:
                self.producer.poll(0.01)

    def _next(self) -> tuple[str, RawRecord]:
        report = self.report
        if report.produced % self.probe_every == self.probe_every - 1:
            report.probes += 1
            return warehouse.PLATFORM, probe_record(report.probes, int(time.time() * 1000))
        try:
            return next(self.records)
        except StopIteration:
            raise RuntimeError(f"traffic pool exhausted after {report.produced} records: make it larger") from None

    def run(self, phases: Sequence[Phase], on_tick=None) -> FeedReport:
        """Produce every phase in turn; `on_tick(produced)` is called about every 100 ms."""
        report = self.report
        self.started_at = self.started_at or time.time()
        for phase in phases:
            start, begin_count = time.monotonic(), report.produced
            phase_start_wall = time.time()
            last_tick = start
            while True:
                elapsed = time.monotonic() - start
                if elapsed >= phase.seconds:
                    break
                due = int(elapsed * phase.rate) - (report.produced - begin_count)
                for _ in range(max(due, 0)):
                    self._send(*self._next())
                    report.produced += 1
                self.producer.poll(0)
                if on_tick and time.monotonic() - last_tick >= 0.1:
                    last_tick = time.monotonic()
                    on_tick(report.produced)
                time.sleep(0.005)
            sent = report.produced - begin_count
            took = time.monotonic() - start
            report.phases.append({
                "name": phase.name, "seconds": round(took, 2), "offered_per_s": phase.rate,
                "achieved_per_s": round(sent / took, 1), "records": sent,
                "start_wall": phase_start_wall, "end_wall": time.time(),
            })
        self.producer.flush(60)
        return report


def probe_latencies(settings: Settings, output_topic: str) -> list[tuple[float, float]]:
    """(raw produced epoch s, latency ms) per probe that has reached `output_topic`, read back
    from the topics: the raw record's Kafka timestamp and its SKU's first output record's."""
    from bench.harness import read_timestamps

    raw = {
        key.decode()[len(PROBE_DOC_PREFIX):]: ts
        for key, ts in read_timestamps(settings.bootstrap_servers, settings.topic(raw_topic("warehouse")),
                                       settings.partitions, PROBE_DOC_PREFIX.encode())
    }
    first_out: dict[str, int] = {}
    for key, ts in read_timestamps(settings.bootstrap_servers, settings.topic(output_topic), settings.partitions,
                                   PROBE_SKU_PREFIX.encode()):
        n = key.decode()[len(PROBE_SKU_PREFIX):]
        if n not in first_out or ts < first_out[n]:
            first_out[n] = ts
    return sorted((raw[n] / 1000, float(first_out[n] - raw[n])) for n in first_out if n in raw)
