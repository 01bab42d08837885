"""One typed settings object, read from environment variables (prefix ``STOCKSTREAM_``).

Every process (worker, adapters, simulators, CLI) reads the same object, so a deployment is
configured in one place: a ConfigMap / Secret in Kubernetes, an env file with docker-compose.
"""

from __future__ import annotations

import json
import socket
from functools import lru_cache
from pathlib import Path
from typing import Literal, Optional

from pydantic import AliasChoices, BaseModel, Field, PositiveInt, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

Platform = Literal["tmall", "jd", "douyin", "pdd"]


class ShopCredentials(BaseModel):
    """One marketplace shop: the app credentials the platform issued and the seller's token."""

    platform: Platform
    shop_id: str
    app_key: str
    app_secret: SecretStr
    # Taobao calls it `session`, JD and Douyin and PDD `access_token`: the seller's authorization.
    access_token: SecretStr = SecretStr("")
    api_base_url: str = ""
    # Whether an unpaid order already holds stock on this channel (reserve-on-order) or only
    # once paid (reserve-on-payment). Platforms and brands differ.
    reserve_unpaid: bool = False
    # The brand's warehouse that ships this shop's orders (SHIP takes stock off its on_hand).
    fulfilment_location: Optional[str] = None


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="STOCKSTREAM_", env_nested_delimiter="__", extra="ignore", populate_by_name=True
    )

    # Kafka. KAFKA_BOOTSTRAP_SERVERS is honoured too: it is what most platforms already export.
    bootstrap_servers: str = Field(
        default="127.0.0.1:19092",
        validation_alias=AliasChoices("STOCKSTREAM_BOOTSTRAP_SERVERS", "KAFKA_BOOTSTRAP_SERVERS"),
    )
    topic_prefix: str = ""
    partitions: int = Field(default=4, ge=1)
    replication_factor: int = Field(default=1, ge=1)

    # Worker
    app_id: str = "stockstream"
    data_dir: Path = Path(".stockstream/data")
    web_host: str = "127.0.0.1"
    web_port: int = 6066
    # How other workers reach this one (routed key lookups); defaults to web_host.
    web_advertised_host: Optional[str] = None
    log_level: str = "warning"
    # Static group membership (KIP-345): a worker that restarts under the same instance id takes
    # its partitions straight back. Without it a killed worker lingers in the group until its
    # session times out, holding half the partitions while nobody processes them. Unset: derived
    # from the host name and web port (stable for a StatefulSet pod or a compose container).
    # "none" turns static membership off.
    group_instance_id: Optional[str] = None
    # How long the group waits for a silent worker before giving its partitions to the others.
    consumer_session_timeout_s: float = Field(default=20.0, gt=3.0)
    # RocksDB memory per table partition a worker holds (active or standby): write buffers of
    # this size (at most two per store) and a block cache of this size. Faust's defaults are
    # 3 x 64 MB and a 2 GB cache per store, which lets RSS grow with the catalogue.
    table_write_buffer_mb: int = Field(default=8, ge=1)
    table_block_cache_mb: int = Field(default=16, ge=1)
    # A worker missing at least this many changelog records of a table partition it was assigned
    # (new disk, takeover) reads them in bulk before Faust's per-record recovery reads the rest
    # (streams/table_restore.py). 0 leaves it all to Faust.
    table_bulk_restore_min_records: int = Field(default=2_000, ge=0)
    # CPython's cyclic-GC thresholds in a worker (streams/gc_tuning.py); JSON in the env var,
    # e.g. STOCKSTREAM_GC_THRESHOLDS='[700,10,10]' for CPython's defaults.
    gc_thresholds: tuple[PositiveInt, PositiveInt, PositiveInt] = (50_000, 20, 100)

    # Embedded local broker (no Docker): resolved from Maven Central, cached, KRaft single node.
    kafka_version: str = "4.3.0"
    kafka_home: Path = Path.home() / ".cache" / "stockstream" / "kafka"
    kafka_port: int = 19092
    kafka_controller_port: int = 19093
    kafka_heap: str = "768m"

    # Marketplace shops and their credentials (JSON list in STOCKSTREAM_SHOPS).
    shops: list[ShopCredentials] = Field(default_factory=list)
    # Where orders of shops without a configured fulfilment location ship from.
    default_location: str = "main"

    # Platform SKU / merchant code -> master SKU map (CSV). Unset: merchant codes are master SKUs.
    catalog_path: Optional[Path] = None
    # identity: a merchant code the catalog (CSV seed + `catalog` topic) does not know is taken as
    # the master SKU itself. strict: it is unmapped (quarantined, retried once the catalog learns
    # it). Unset: strict when catalog_path is set, identity otherwise (see streams/catalog_feed.py).
    catalog_mode: Optional[Literal["identity", "strict"]] = None

    # Channel sink (sinks/): the shops' listings (CSV platform,shop_id,listing_id,platform_sku_id,
    # merchant_code), stock-write API calls per second per shop by platform (JSON; defaults in
    # sinks/quota.py), its /metrics port, and reconciliation (0 s: off; a difference counts as
    # drift once seen by this many consecutive reads).
    listings_path: Optional[Path] = None
    sink_calls_per_s: dict[str, float] = Field(default_factory=dict)
    sink_metrics_port: int = 9109
    reconcile_interval_s: float = Field(default=300.0, ge=0)
    reconcile_confirmations: int = Field(default=2, ge=1)

    # Allocation signals (topic `signals`; rules themselves live in the `allocation-rules` topic).
    # Reallocation: a channel sells out within this many hours while another holds more than
    # `signal_donor_cover_days` of cover. Replenishment: ATS covers fewer days than lead time + safety.
    signal_sellout_hours: float = Field(default=24.0, gt=0)
    signal_donor_cover_days: float = Field(default=14.0, gt=0)
    replenishment_lead_time_days: float = Field(default=14.0, ge=0)
    replenishment_safety_days: float = Field(default=7.0, ge=0)

    # REST list queries (streams/table_scan.py). `GET /ats` reads at most this many keys per worker
    # and request, and pages on past them (`next_after`). The summary's sweep of the stock table
    # takes at most this share of a worker's event loop while anyone asks for summaries.
    api_list_scan_keys: int = Field(default=5_000, ge=1)
    api_summary_sweep_share: float = Field(default=0.2, gt=0, le=1)

    # Adapter processes (`stockstream adapter run`). Redelivered messages already in
    # raw.<platform> within the window are acknowledged without a second write (connectors/dedupe.py).
    adapter_dedupe_window_s: float = Field(default=3600.0, ge=0)
    adapter_dedupe_max_ids: int = Field(default=500_000, ge=1)
    adapter_metrics_port: int = 9108  # /metrics of an adapter process; 0: not served
    adapter_host: str = "127.0.0.1"  # where push receivers (Douyin) listen
    adapter_port: int = 8081

    # ERP journal (`stockstream journal`): window length and how long past its end a window waits
    # for the ledger before closing. ERP sink (`stockstream erp-sink`): the NetSuite-style REST base
    # (PUT {base}/record/v1/inventoryAdjustment/eid:{id}), its bearer token, parallel PUTs, the
    # ceiling of the retry backoff, and the sink's /metrics port (0: not served).
    erp_journal_window_s: float = Field(default=60.0, gt=0)
    erp_journal_grace_s: float = Field(default=5.0, ge=0)
    erp_base_url: str = "http://127.0.0.1:8089/services/rest"
    erp_token: SecretStr = SecretStr("")
    erp_push_concurrency: int = Field(default=8, ge=1)
    erp_max_backoff_s: float = Field(default=30.0, gt=0)
    erp_request_timeout_s: float = Field(default=10.0, gt=0)
    erp_metrics_port: int = 0
    # The journal process's /metrics port (0: not served).
    journal_metrics_port: int = 0

    def to_env(self) -> dict[str, str]:
        """These settings as environment variables: how a child process (worker, adapter) gets them."""
        env = {}
        for name, value in self.model_dump(mode="json", exclude={"shops"}).items():
            if value is not None:
                # dict / list fields travel as JSON, which is what pydantic-settings parses back
                env[f"STOCKSTREAM_{name.upper()}"] = json.dumps(value) if isinstance(value, (dict, list)) else str(value)
        env["STOCKSTREAM_SHOPS"] = json.dumps(
            [{**shop.model_dump(mode="json"), "app_secret": shop.app_secret.get_secret_value(),
              "access_token": shop.access_token.get_secret_value()} for shop in self.shops]
        )
        env["STOCKSTREAM_ERP_TOKEN"] = self.erp_token.get_secret_value()  # model_dump masks secrets
        return env

    def worker_instance_id(self) -> Optional[str]:
        """The consumer group instance id of this worker, None for dynamic membership."""
        if self.group_instance_id == "none":
            return None
        if self.group_instance_id:
            return self.group_instance_id
        return f"{socket.gethostname()}-{self.web_port}"

    def group_membership(self, role: str, static: bool = True) -> dict[str, object]:
        """librdkafka settings for a consumer group (`role`: ingest, retry...): the session timeout,
        and with `static` the worker's static membership, as the Faust consumer gets them. Only
        the worker's own consumers are static: their instance id is the worker's identity. Other
        processes (journal, ERP sink) have no such identity, and librdkafka treats a fenced static
        member as fatal."""
        config: dict[str, object] = {"session.timeout.ms": int(self.consumer_session_timeout_s * 1000)}
        instance_id = self.worker_instance_id() if static else None
        if instance_id is not None:
            config["group.instance.id"] = f"{instance_id}-{role}"
        return config

    def topic(self, name: str) -> str:
        """Physical topic name for a logical one, with the deployment's prefix."""
        return f"{self.topic_prefix}{name}"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
