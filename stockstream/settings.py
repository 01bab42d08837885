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

from pydantic import AliasChoices, BaseModel, Field, SecretStr
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

    def to_env(self) -> dict[str, str]:
        """These settings as environment variables: how a child process (worker, adapter) gets them."""
        env = {}
        for name, value in self.model_dump(mode="json", exclude={"shops"}).items():
            if value is not None:
                env[f"STOCKSTREAM_{name.upper()}"] = str(value)
        env["STOCKSTREAM_SHOPS"] = json.dumps(
            [{**shop.model_dump(mode="json"), "app_secret": shop.app_secret.get_secret_value(),
              "access_token": shop.access_token.get_secret_value()} for shop in self.shops]
        )
        return env

    def worker_instance_id(self) -> Optional[str]:
        """The consumer group instance id of this worker, None for dynamic membership."""
        if self.group_instance_id == "none":
            return None
        if self.group_instance_id:
            return self.group_instance_id
        return f"{socket.gethostname()}-{self.web_port}"

    def group_membership(self, role: str) -> dict[str, object]:
        """librdkafka settings for a consumer group of this worker (`role`: ingest, retry...):
        static membership and the session timeout, as the Faust consumer gets them."""
        config: dict[str, object] = {"session.timeout.ms": int(self.consumer_session_timeout_s * 1000)}
        instance_id = self.worker_instance_id()
        if instance_id is not None:
            config["group.instance.id"] = f"{instance_id}-{role}"
        return config

    def topic(self, name: str) -> str:
        """Physical topic name for a logical one, with the deployment's prefix."""
        return f"{self.topic_prefix}{name}"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
