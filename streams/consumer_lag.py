"""Consumer lag per topic (`stockstream_consumer_lag{topic}`), from the consumers a worker runs.

Lag of a partition = its highwater (the offset the next record produced will get) minus the offset
this worker has consumed up to (the next one it will read or commit). A worker reports the sum over
the partitions it is assigned, per logical topic name (`ingest`, `raw.tmall`: the deployment
prefix is cut so dashboards read the same everywhere); the cluster's lag per topic is the sum over
workers. Partitions are not labels (a worker's set changes at every rebalance) and neither are SKUs.

Two readers: the Faust consumer (agents' topics), read on the event loop, and the ingest
batcher's confluent-kafka consumer (raw topics), read on the batcher's own thread between polls,
since that thread owns the consumer.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Callable, Iterable, Mapping, Optional

from confluent_kafka import KafkaException

from streams import metrics

log = logging.getLogger(__name__)

LAG_INTERVAL_S = 5.0

OffsetRow = tuple[str, Optional[int], Optional[int]]  # (topic, highwater, consumed up to), per partition


def lag_by_topic(rows: Iterable[OffsetRow], prefix: str = "") -> dict[str, int]:
    """Records behind, summed per logical topic. A partition whose highwater or offset is not known
    yet (never fetched, nothing committed: librdkafka reports those as negative sentinels) counts
    0, and so does an offset past a highwater read from an older fetch: lag is never negative."""
    out: dict[str, int] = {}
    for topic, high, offset in rows:
        name = topic.removeprefix(prefix)
        known = high is not None and offset is not None and high >= 0 and offset >= 0
        out[name] = out.get(name, 0) + (max(high - offset, 0) if known else 0)
    return out


class TopicGauge:
    """Sets one labelled gauge from a complete {label: value} reading each time. A label missing
    from a reading (the topic's partitions moved to another worker) is removed rather than left at
    its last value, which would count it twice in a sum over workers."""

    def __init__(self, gauge: Any) -> None:
        self.gauge = gauge
        self.labels: set[str] = set()

    def set(self, values: Mapping[str, int]) -> None:
        for label in self.labels - values.keys():
            self.gauge.remove(label)
        for label, value in values.items():
            self.gauge.labels(label).set(value)
        self.labels = set(values)


def confluent_offset_rows(consumer: Any) -> list[OffsetRow]:
    """Offsets of a confluent-kafka consumer's assignment, without a network call: the highwater
    cached from the last fetch response, and the local fetch position (the ingest batcher commits
    right after forwarding, so position and committed offset differ by one poll at most)."""
    assigned = consumer.assignment()
    if not assigned:
        return []
    rows: list[OffsetRow] = []
    for tp in consumer.position(assigned):
        watermarks = consumer.get_watermark_offsets(tp, cached=True)
        rows.append((tp.topic, watermarks[1] if watermarks else None, tp.offset))
    return rows


class RawLagProbe:
    """Called by the ingest batcher on every loop; reads its consumer's lag every `interval_s`."""

    def __init__(self, prefix: str, interval_s: float = LAG_INTERVAL_S, clock: Callable[[], float] = time.monotonic) -> None:
        self.prefix = prefix
        self.interval_s = interval_s
        self.clock = clock
        self.next_at = 0.0
        self.gauge = TopicGauge(metrics.CONSUMER_LAG)

    def poll(self, consumer: Any) -> None:
        now = self.clock()
        if now < self.next_at:
            return
        self.next_at = now + self.interval_s
        try:
            rows = confluent_offset_rows(consumer)
        except (KafkaException, RuntimeError) as exc:  # mid-rebalance or closing: next time
            log.debug("raw topics' lag not read: %s", exc)
            return
        self.gauge.set(lag_by_topic(rows, self.prefix))


def faust_offset_rows(consumer: Any, skip_topics: Iterable[str] = ()) -> list[OffsetRow]:
    """Offsets of a Faust consumer's assignment: the highwater aiokafka cached from the last fetch,
    and the offset Faust last committed (`Consumer._committed_offset`, Faust's own bookkeeping,
    the next offset to read, as Kafka stores it; None before its first commit on a partition).
    `skip_topics`: the tables' changelogs, which are read for recovery and standbys, never
    committed."""
    skip = set(skip_topics)
    committed = consumer._committed_offset
    rows: list[OffsetRow] = []
    for tp in consumer.assignment():
        if tp.topic in skip:
            continue
        try:
            high = consumer.highwater(tp)
        except Exception:  # revoked between assignment() and here (aiokafka raises IllegalStateError)
            high = None
        rows.append((tp.topic, high, committed.get(tp)))
    return rows
