"""Prometheus metrics of a worker process, declared once.

Naming follows Prometheus conventions (`stockstream_` prefix, `_total` counters, base units).
No label takes a per-SKU or per-order value: label values are platforms, reasons, movement
types and agent names, a few dozen series in all, whatever the catalog size.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

REGISTRY = CollectorRegistry(auto_describe=True)

RAW_RECORDS_BATCHED = Counter(
    "stockstream_raw_records_batched_total", "Raw records moved from raw.<platform> topics into ingest batches",
    ["platform"], registry=REGISTRY,
)
RAW_RECORDS_PROCESSED = Counter(
    "stockstream_raw_records_processed_total", "Raw records the normalizer processed", ["platform"], registry=REGISTRY,
)
QUARANTINED = Counter(
    "stockstream_quarantined_total", "Records set aside in the quarantine topic", ["reason"], registry=REGISTRY,
)
MOVEMENTS = Counter("stockstream_movements_total", "Movements written to the ledger", ["type"], registry=REGISTRY)
REPLAYS_SUPPRESSED = Counter(
    "stockstream_replayed_movements_suppressed_total",
    "Movements the stock agent had already applied (redelivered after a crash or rebalance)", registry=REGISTRY,
)
INPUT_GAPS = Counter(
    "stockstream_input_gaps_total",
    "Records an agent was handed past the offset it expected (records not delivered); it rewound to read them",
    ["agent"], registry=REGISTRY,
)
INPUT_REWINDS = Counter(
    "stockstream_input_rewinds_total",
    "Seeks the rewinder asked of the consumer so that agents read every record: gap (records past the expected one "
    "arrived), stalled (no progress while the log holds more), start (no start offset yet: seek to the committed ones)",
    ["reason"], registry=REGISTRY,
)
INPUT_EXPIRED = Counter(
    "stockstream_input_expired_records_total",
    "Records of an agent topic deleted by retention before any worker processed them (lost: the lag exceeded the "
    "topic's retention); the partition goes on from its log start",
    ["topic"], registry=REGISTRY,
)
TABLE_RESTORED = Counter(
    "stockstream_table_restored_records_total",
    "Changelog records restored in bulk into local table state before Faust's recovery (a worker without the "
    "partition's state: new disk, takeover)", registry=REGISTRY,
)
TABLE_RESTORE_SECONDS = Counter(
    "stockstream_table_restore_seconds_total", "Time spent restoring table state in bulk from changelogs",
    registry=REGISTRY,
)
ATS_UPDATES = Counter("stockstream_ats_updates_total", "ATS snapshots published", registry=REGISTRY)
DETAIL_REQUESTS = Counter(
    "stockstream_order_detail_requests_total", "Status-only notifications held until the order detail arrives",
    ["platform"], registry=REGISTRY,
)
BATCH_SECONDS = Histogram(
    "stockstream_batch_processing_seconds", "Time an agent spends on one batch record", ["agent"], registry=REGISTRY,
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
GC_PAUSE = Histogram(
    "stockstream_gc_pause_seconds", "Pauses of the cyclic garbage collector (they hold the interpreter lock), by the "
    "generation collected (2: a full collection)", ["generation"], registry=REGISTRY,
    buckets=(0.0005, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1),
)
SUMMARY_SWEEP_SECONDS = Counter(
    "stockstream_api_summary_sweep_seconds_total", "Time the dashboard summary's sweep held the event loop reading "
    "the stock table (streams/api_summary.py; it runs only while summaries are asked for)", registry=REGISTRY,
)
BATCH_SIZE = Histogram(
    "stockstream_batch_events", "Events carried by one batch record", ["agent"], registry=REGISTRY,
    buckets=(1, 10, 50, 100, 250, 500, 1000, 2500, 5000),
)
BATCHER_ALIVE = Gauge("stockstream_ingest_batcher_up", "1 while the ingest batcher thread runs", registry=REGISTRY)
HOT_PATH_COMPILED = Gauge(
    "stockstream_hot_path_compiled", "1 if the worker runs the compiled build of its hot path (stockstream/compiled.py)",
    registry=REGISTRY,
)
# channel is "<platform>:<shop_id>": one series per configured shop, not per SKU.
ALLOCATION_CHANGES = Counter(
    "stockstream_allocation_changes_total", "Per-channel allocation changes published (re-emissions not counted)",
    ["channel"], registry=REGISTRY,
)
SIGNALS = Counter(
    "stockstream_signals_total", "Reallocation / replenishment signals raised or cleared", ["kind"], registry=REGISTRY,
)

# ERP journal and sink processes (`stockstream journal`, `stockstream erp-sink`).
ERP_JOURNAL_ENTRIES = Counter(
    "stockstream_erp_journal_entries_total", "Journal entries published to erp.journal (re-emissions after a crash included)",
    registry=REGISTRY,
)
# outcome: ok (the ERP stored it), retry (a failed attempt, tried again), rejected (refused as
# invalid, parked in erp.dead-letter).
ERP_PUSHES = Counter("stockstream_erp_pushes_total", "PUTs of journal entries to the ERP", ["outcome"], registry=REGISTRY)
ERP_PUSH_LATENCY = Histogram(
    "stockstream_erp_push_latency_seconds", "From the first attempt to push an entry to the ERP's acknowledgment",
    registry=REGISTRY, buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
)

# Worker health (streams/worker_metrics.py). `topic` is the logical name (`ingest`, `raw.tmall`:
# no deployment prefix), summed over the partitions this worker holds; the cluster's lag is the sum
# over workers.
CONSUMER_LAG = Gauge(
    "stockstream_consumer_lag", "Records in the topic's partitions this worker consumes that it has not committed yet",
    ["topic"], registry=REGISTRY,
)
REBALANCES = Counter(
    "stockstream_rebalances_total", "Consumer group rebalances this worker's Faust consumer took part in", registry=REGISTRY,
)
TABLE_KEYS = Gauge(
    "stockstream_table_keys", "Keys (RocksDB estimate) of the table partitions this worker holds actively",
    ["table"], registry=REGISTRY,
)


def exposition() -> bytes:
    return generate_latest(REGISTRY)


def observe_normalized(output, seconds: float) -> None:
    """Record what the normalizer did with one batch (a `streams.normalize.NormalizeOutput`)."""
    BATCH_SECONDS.labels("normalize").observe(seconds)
    BATCH_SIZE.labels("normalize").observe(output.records)
    for platform, count in output.records_by_platform.items():
        RAW_RECORDS_PROCESSED.labels(platform).inc(count)
    for reason, count in output.quarantine_reasons.items():
        QUARANTINED.labels(reason).inc(count)
    for movement_type, count in output.movements_by_type.items():
        MOVEMENTS.labels(movement_type).inc(count)
    for platform, _shop, _order in output.detail_requests:
        DETAIL_REQUESTS.labels(platform).inc()


def observe_stock(output, seconds: float) -> None:
    """Record what the stock agent did with one batch (a `streams.stock.StockOutput`)."""
    BATCH_SECONDS.labels("stock").observe(seconds)
    BATCH_SIZE.labels("stock").observe(output.applied + output.replayed)
    REPLAYS_SUPPRESSED.inc(output.replayed)
    ATS_UPDATES.inc(len(output.ats_records))
    for reason, count in output.quarantine_reasons.items():
        QUARANTINED.labels(reason).inc(count)


def observe_allocation(output) -> None:
    """Record the allocation part of a `streams.stock.StockOutput` (movement batch or rule change)."""
    for channel, count in output.allocation_changes.items():
        ALLOCATION_CHANGES.labels(channel).inc(count)
    for kind, count in output.signals.items():
        SIGNALS.labels(kind).inc(count)


def observe_batched(records_by_topic: dict[str, int], raw_prefix: str) -> None:
    for topic, count in records_by_topic.items():
        RAW_RECORDS_BATCHED.labels(topic.removeprefix(raw_prefix)).inc(count)
