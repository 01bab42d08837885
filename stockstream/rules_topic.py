"""The compacted ``allocation-rules`` topic and the internal ``allocation-commands`` topic: record
formats, the default rules, and publishing both.

``allocation-rules`` (compacted, latest record per key wins):

* key ``*``: the defaults for every SKU, value the JSON of `AllocationRules.to_dict()` (a whole
  rule set, ``version`` required);
* key ``<master SKU>``: that SKU's overrides, the same JSON with any key left out (keys it omits
  inherit the defaults, channel rules merge field by field, see `merge_rules`), ``version``
  required. A SKU's effective version is defaults version + override version, so it increases
  whenever either does (the allocation core re-allocates an unchanged ATS only under a higher one);
* a tombstone (null value) removes a SKU's overrides (or topic defaults).

While the topic holds no defaults, the defaults come from the settings (`settings_default_rules`):
every configured shop a channel, shared mode at 100 %, no buffer, version 0.

``allocation-commands`` (co-partitioned with the stock table, keyed like it): after publishing a
rule record, the publisher asks the workers to re-allocate at once instead of at the SKU's next
movement: ``{"rule_version": v, "sku": X}`` keyed by X (re-allocate X once the worker's rules feed
has seen version v of X's overrides), or for defaults ``{"rule_version": v, "all": true}`` to every
partition (re-allocate every SKU of that partition once the feed has seen defaults version v).
Commands are at-least-once; re-processing one re-emits the current allocation, nothing more.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Optional

import orjson

from stockstream.core.allocation import AllocationMode, AllocationRules, ChannelRule, merge_rules
from stockstream.settings import Settings
from stockstream.topics import ALLOCATION_COMMANDS, ALLOCATION_RULES

DEFAULTS_KEY = "*"


def settings_default_rules(settings: Settings) -> AllocationRules:
    """The defaults while the topic has none: every shop a channel, each seeing all of ATS."""
    channels = tuple(ChannelRule(f"{shop.platform}:{shop.shop_id}") for shop in settings.shops)
    return AllocationRules(version=0, mode=AllocationMode.SHARED, channels=channels)


# --- allocation-rules records --------------------------------------------------------------------


@dataclass(frozen=True)
class RulesRecord:
    """One record of the rules topic. `data` None: a tombstone."""

    key: str  # DEFAULTS_KEY or a master SKU
    data: Optional[dict] = None

    @property
    def is_defaults(self) -> bool:
        return self.key == DEFAULTS_KEY

    @property
    def version(self) -> Optional[int]:
        return None if self.data is None else self.data["version"]


def validate(key: str, data: Mapping) -> dict:
    """`data` as a rule record of `key`; raises ValueError if it is not one."""
    if not isinstance(data, Mapping):
        raise ValueError(f"rules {key!r}: not a JSON object")
    version = data.get("version")
    if type(version) is not int or version < 0:
        raise ValueError(f"rules {key!r}: version must be a non-negative integer, got {version!r}")
    try:
        # Defaults are a whole rule set; overrides may omit anything (merged over no defaults here,
        # which checks every key and channel rule they do give).
        rules = AllocationRules.from_dict(data) if key == DEFAULTS_KEY else merge_rules(None, data)
    except (TypeError, KeyError) as exc:
        raise ValueError(f"rules {key!r}: {exc}") from exc
    if key == DEFAULTS_KEY:
        return rules.to_dict()
    return dict(data)


def encode(record: RulesRecord) -> tuple[bytes, Optional[bytes]]:
    """(Kafka key, Kafka value) of one rules record."""
    if not record.key:
        raise ValueError("rules record without a key")
    if record.data is None:
        return record.key.encode(), None
    return record.key.encode(), orjson.dumps(validate(record.key, record.data))


def decode(key: Optional[bytes], value: Optional[bytes]) -> RulesRecord:
    """Raises ValueError on a record that does not follow the format."""
    if not key:
        raise ValueError("rules record without a key")
    text_key = key.decode("utf-8")
    if value is None:
        return RulesRecord(text_key)
    try:
        data = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"rules {text_key!r}: not JSON: {exc}") from exc
    return RulesRecord(text_key, validate(text_key, data))


# --- allocation-commands records -----------------------------------------------------------------


@dataclass(frozen=True)
class ReallocateCommand:
    """Re-allocate `sku` (None: every SKU of the partition the command is on) once the rules feed
    has seen `rule_version` of that SKU's overrides (None SKU: of the defaults)."""

    rule_version: int
    sku: Optional[str] = None

    @property
    def rules_key(self) -> str:
        return DEFAULTS_KEY if self.sku is None else self.sku

    def to_json(self) -> bytes:
        if self.sku is None:
            return orjson.dumps({"rule_version": self.rule_version, "all": True})
        return orjson.dumps({"rule_version": self.rule_version, "sku": self.sku})


def decode_command(value: Optional[bytes]) -> ReallocateCommand:
    """Raises ValueError on a record that is not a command."""
    try:
        data = orjson.loads(value or b"")
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"allocation command is not JSON: {exc}") from exc
    if not isinstance(data, dict) or type(data.get("rule_version")) is not int:
        raise ValueError(f"allocation command without an integer rule_version: {data!r}")
    if data.get("all") is True:
        return ReallocateCommand(data["rule_version"])
    sku = data.get("sku")
    if not isinstance(sku, str) or not sku:
        raise ValueError(f"allocation command names neither a SKU nor all: {data!r}")
    return ReallocateCommand(data["rule_version"], sku)


# --- publishing ----------------------------------------------------------------------------------


def _producer(settings: Settings):
    from confluent_kafka import Producer

    return Producer(
        {
            "bootstrap.servers": settings.bootstrap_servers,
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 5,
            # Keyed like every stockstream producer (and Faust's tables): see streams/partitioning.py.
            "partitioner": "murmur2_random",
        }
    )


def _flush(producer, failures: list, timeout: float, what: str) -> None:
    from confluent_kafka import KafkaException

    if producer.flush(timeout) or failures:
        raise KafkaException(failures[0] if failures else f"{what} not acknowledged in time")


def publish_rules(settings: Settings, record: RulesRecord, timeout: float = 30.0) -> ReallocateCommand:
    """Write a rules record, and once the broker has it, the command(s) that make workers apply it
    now: one keyed by the SKU, or for defaults one to every partition. Returns the command."""
    producer = _producer(settings)
    failures: list = []

    def on_delivery(error, _message) -> None:
        if error is not None:
            failures.append(error)

    key, value = encode(record)
    producer.produce(settings.topic(ALLOCATION_RULES.name), key=key, value=value, on_delivery=on_delivery)
    # The rule first: a worker that sees the command waits until its feed has the rule anyway,
    # but a command for a rule that never made it would only wait in vain.
    _flush(producer, failures, timeout, "rules record")
    command = ReallocateCommand(record.version or 0, None if record.is_defaults else record.key)
    commands_topic = settings.topic(ALLOCATION_COMMANDS.name)
    if command.sku is not None:
        producer.produce(commands_topic, key=key, value=command.to_json(), on_delivery=on_delivery)
    else:
        for partition in range(settings.partitions):
            producer.produce(commands_topic, key=key, value=command.to_json(), partition=partition, on_delivery=on_delivery)
    _flush(producer, failures, timeout, "allocation commands")
    return command
