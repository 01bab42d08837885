"""Every topic stockstream uses, declared once: name, partitioning, retention, compaction, schema.

Topics that feed the same keyed state share one partition count (``settings.partitions``) so that
a key always lands on the same partition number everywhere (co-partitioning), which Faust tables
rely on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from stockstream.settings import Settings

PLATFORMS = ("tmall", "jd", "douyin", "pdd")

DAY_MS = 24 * 3600 * 1000


@dataclass(frozen=True)
class TopicSpec:
    name: str
    purpose: str
    compacted: bool = False
    retention_ms: Optional[int] = None  # None: broker default; -1: forever
    schema: Optional[str] = None  # Avro schema full name of the record value, None for raw bytes
    # True for topics whose partition count must equal settings.partitions (co-partitioned).
    keyed_state: bool = True
    # Any other topic configs, e.g. (("message.timestamp.type", "LogAppendTime"),).
    extra_config: tuple[tuple[str, str], ...] = ()

    def config(self) -> dict[str, str]:
        cfg: dict[str, str] = {}
        if self.compacted:
            cfg["cleanup.policy"] = "compact"
        if self.retention_ms is not None:
            cfg["retention.ms"] = str(self.retention_ms)
        cfg.update(self.extra_config)
        return cfg


def raw_topic(platform: str) -> str:
    return f"raw.{platform}"


def changelog_topic(app_id: str, table: str) -> TopicSpec:
    """The changelog of a Faust table, created before Faust starts (which then finds it). Its
    segments roll hourly: the log cleaner never compacts the active segment, and with the 1 GB /
    7-day defaults a day of 618 writes would stay uncompacted, so a worker that lost its disk
    would replay every one of them instead of about one record per key."""
    return TopicSpec(
        f"{app_id}-{table}-changelog", f"Faust changelog of the {table} table", compacted=True,
        extra_config=(("segment.ms", str(3600 * 1000)), ("min.cleanable.dirty.ratio", "0.25")),
    )


RAW_TOPICS = {
    p: TopicSpec(raw_topic(p), f"{p} payloads exactly as the platform sent them, keyed by order id", retention_ms=7 * DAY_MS)
    for p in PLATFORMS
}
RAW_WAREHOUSE = TopicSpec(
    "raw.warehouse", "WMS / bonded / 3PL feed: receipts, counts, transfers, customs, returns", retention_ms=7 * DAY_MS
)
INGEST = TopicSpec(
    "ingest",
    "internal: raw records re-partitioned by order key and micro-batched (one Kafka record carries many)",
    retention_ms=3 * DAY_MS,
    schema="stockstream.IngestBatch",
)
QUARANTINE = TopicSpec(
    "quarantine", "input that parsed but made no sense, or could not be mapped, with the reason", retention_ms=30 * DAY_MS
)
RETRY = TopicSpec(
    "retry",
    "internal: quarantined raw records the catalog can now map, re-submitted to the normalizer "
    "(one RawRecord per record, partitioned by order key like ingest)",
    retention_ms=7 * DAY_MS,
    schema="stockstream.IngestBatch",
)
CATALOG = TopicSpec("catalog", "platform SKU / merchant code -> master SKU and bundle components", compacted=True)
MOVEMENTS = TopicSpec(
    "movements",
    "the ledger: every inventory movement, keyed by master SKU, micro-batched per partition",
    retention_ms=-1,
    schema="stockstream.MovementBatch",
    # CreateTime (the default). LogAppendTime was tried for the ERP journal and dropped while
    # chasing an intermittent crash-recovery fault that later showed up without it too (issue 4).
    # The journal's windows are deterministic either way: its effective time follows offsets.
)
ATS = TopicSpec("ats", "latest available-to-sell per master SKU", compacted=True, schema="stockstream.AtsSnapshot")
ALLOCATION_RULES = TopicSpec("allocation-rules", "allocation rule sets per SKU and channel defaults", compacted=True)
ALLOCATIONS = TopicSpec("allocations", "per-channel published quantity changes", schema="stockstream.AllocationChange")
ALLOCATION_COMMANDS = TopicSpec(
    "allocation-commands",
    "internal: re-allocate a SKU (keyed by SKU) or a whole partition after a rule change (JSON)",
    retention_ms=1 * DAY_MS,
)
SIGNALS = TopicSpec("signals", "reallocation and replenishment signals")
ERP_JOURNAL = TopicSpec(
    "erp.journal", "the ERP's contract: inventory adjustment entries", retention_ms=-1, schema="stockstream.ErpJournalEntry"
)
ERP_DLQ = TopicSpec("erp.dead-letter", "journal entries the ERP refused as invalid (JSON, with its answer)", retention_ms=30 * DAY_MS)
CHANNEL_DLQ = TopicSpec("channel.dead-letter", "stock pushes that failed permanently, with the reason", retention_ms=30 * DAY_MS)
RECONCILIATION = TopicSpec("reconciliation", "differences between what we pushed and what channels show")
CONNECTOR_STATE = TopicSpec("connector-state", "durable connector cursors (JD poll windows)", compacted=True)

ALL_TOPICS: tuple[TopicSpec, ...] = (
    *RAW_TOPICS.values(),
    RAW_WAREHOUSE,
    INGEST,
    QUARANTINE,
    RETRY,
    CATALOG,
    MOVEMENTS,
    ATS,
    ALLOCATION_RULES,
    ALLOCATIONS,
    ALLOCATION_COMMANDS,
    SIGNALS,
    ERP_JOURNAL,
    ERP_DLQ,
    CHANNEL_DLQ,
    RECONCILIATION,
    CONNECTOR_STATE,
)


def ensure_topics(settings: Settings, specs: tuple[TopicSpec, ...] = ALL_TOPICS, timeout: float = 30.0) -> None:
    """Create missing topics with their declared configuration (idempotent)."""
    from confluent_kafka.admin import AdminClient, NewTopic
    from confluent_kafka import KafkaException

    admin = AdminClient({"bootstrap.servers": settings.bootstrap_servers})
    existing = set(admin.list_topics(timeout=timeout).topics)
    wanted = [
        NewTopic(
            settings.topic(s.name),
            num_partitions=settings.partitions,
            replication_factor=settings.replication_factor,
            config=s.config(),
        )
        for s in specs
        if settings.topic(s.name) not in existing
    ]
    if not wanted:
        return
    for name, future in admin.create_topics(wanted, operation_timeout=timeout).items():
        try:
            future.result(timeout)
        except KafkaException as exc:
            if exc.args[0].name() != "TOPIC_ALREADY_EXISTS":
                raise
