"""The compacted ``catalog`` topic: its record format, and publishing a catalog to it.

One record per mapping, keyed so that compaction keeps the latest mapping of each:

* key ``<merchant code>`` (UTF-8): the components of that merchant code, on every platform;
* key ``listing:<platform>:<platform_sku_id>``: the components of one platform listing, used when
  an order line has no merchant code or one the catalog does not know.

Value: UTF-8 JSON

    {"merchant_code": "GIFTSET-01" | null, "platform": "tmall" | null,
     "platform_sku_id": "5012345678901" | null,
     "components": [{"sku": "SKU-001", "quantity": 1}, {"sku": "SKU-002", "quantity": 2}]}

`components` is what one unit of the listing consists of (several: a bundle); quantities are
positive. A tombstone (null value) removes the mapping of its key. `platform` and
`platform_sku_id` are informational on merchant-code records (a code maps the same on every
platform); on listing records they repeat the key.

A CSV catalog (``platform,platform_sku_id,merchant_code,master_sku,quantity``, rows sharing a
merchant code form a bundle) is published as one record per merchant code plus one record per
(platform, platform_sku_id): exactly what ``Catalog.from_rows`` builds from the same rows.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Optional

from stockstream.core.catalog import CatalogRow
from stockstream.core.model import SkuComponent
from stockstream.settings import Settings
from stockstream.topics import CATALOG

LISTING_PREFIX = "listing:"


def listing_key(platform: str, platform_sku_id: str) -> str:
    return f"{LISTING_PREFIX}{platform}:{platform_sku_id}"


@dataclass(frozen=True)
class CatalogRecord:
    """One record of the catalog topic. `components` None: a tombstone (removes the key)."""

    key: str
    merchant_code: Optional[str] = None
    platform: Optional[str] = None
    platform_sku_id: Optional[str] = None
    components: Optional[tuple[SkuComponent, ...]] = None

    @property
    def listing(self) -> Optional[tuple[str, str]]:
        """(platform, platform_sku_id) for a listing key, None for a merchant-code key."""
        if not self.key.startswith(LISTING_PREFIX):
            return None
        platform, _, sku_id = self.key[len(LISTING_PREFIX):].partition(":")
        return platform, sku_id


def encode_value(record: CatalogRecord) -> Optional[bytes]:
    if record.components is None:
        return None
    if not record.components or any(c.quantity <= 0 for c in record.components):
        raise ValueError(f"catalog record {record.key!r}: components must be non-empty with positive quantities")
    return json.dumps(
        {
            "merchant_code": record.merchant_code,
            "platform": record.platform,
            "platform_sku_id": record.platform_sku_id,
            "components": [{"sku": c.master_sku, "quantity": c.quantity} for c in record.components],
        },
        separators=(",", ":"),
    ).encode()


def encode(record: CatalogRecord) -> tuple[bytes, Optional[bytes]]:
    """(Kafka key, Kafka value) of one catalog record."""
    return record.key.encode(), encode_value(record)


def decode(key: bytes, value: Optional[bytes]) -> CatalogRecord:
    """Raises ValueError on a record that does not follow the format."""
    if not key:
        raise ValueError("catalog record without a key")
    text_key = key.decode("utf-8")
    if value is None:
        return CatalogRecord(text_key)
    data = json.loads(value)
    if not isinstance(data, dict):
        raise ValueError(f"catalog record {text_key!r}: value is not a JSON object")
    components = tuple(SkuComponent(str(c["sku"]), int(c["quantity"])) for c in data.get("components") or ())
    if not components or any(c.quantity <= 0 for c in components):
        raise ValueError(f"catalog record {text_key!r}: components must be non-empty with positive quantities")
    return CatalogRecord(
        text_key,
        merchant_code=data.get("merchant_code"),
        platform=data.get("platform"),
        platform_sku_id=None if data.get("platform_sku_id") is None else str(data["platform_sku_id"]),
        components=components,
    )


def tombstone(merchant_code: Optional[str] = None, listing: Optional[tuple[str, str]] = None) -> CatalogRecord:
    if (merchant_code is None) == (listing is None):
        raise ValueError("a tombstone names either a merchant code or a listing")
    return CatalogRecord(merchant_code if merchant_code is not None else listing_key(*listing))


def records_from_rows(rows: Iterable[CatalogRow | tuple]) -> list[CatalogRecord]:
    """Catalog rows -> topic records: one per merchant code, one per (platform, platform_sku_id).
    As in `Catalog.from_rows`, a component is keyed by master SKU (the last row wins)."""
    by_code: dict[str, dict[str, int]] = {}
    code_listing: dict[str, tuple[str, str]] = {}
    by_listing: dict[tuple[str, str], dict[str, int]] = {}
    listing_code: dict[tuple[str, str], Optional[str]] = {}
    for row in rows:
        platform, platform_sku_id, code, master_sku, quantity = row
        if int(quantity) <= 0:
            raise ValueError(f"catalog row {row!r}: quantity must be positive")
        listing = (platform, str(platform_sku_id))
        if code:
            by_code.setdefault(code, {})[master_sku] = int(quantity)
            code_listing.setdefault(code, listing)
        if platform and platform_sku_id:
            by_listing.setdefault(listing, {})[master_sku] = int(quantity)
            listing_code.setdefault(listing, code or None)

    def parts(units: dict[str, int]) -> tuple[SkuComponent, ...]:
        return tuple(SkuComponent(sku, qty) for sku, qty in units.items())

    records = [
        CatalogRecord(code, code, code_listing[code][0], code_listing[code][1], parts(units))
        for code, units in by_code.items()
    ]
    records += [
        CatalogRecord(listing_key(*listing), listing_code[listing], listing[0], listing[1], parts(units))
        for listing, units in by_listing.items()
    ]
    return records


def read_csv(path: Path | str) -> list[CatalogRow]:
    with open(path, newline="", encoding="utf-8") as rows:
        return [
            CatalogRow(r["platform"], r["platform_sku_id"], r.get("merchant_code") or None, r["master_sku"], int(r["quantity"]))
            for r in csv.DictReader(rows)
        ]


def publish_records(
    settings: Settings,
    records: Iterable[CatalogRecord],
    timeout: float = 30.0,
    on_progress: Optional[Callable[[int], None]] = None,
) -> int:
    """Write catalog records (tombstones included) to the catalog topic; returns how many once the
    broker acknowledged all of them, raises if any failed. Keyed like every stockstream producer."""
    from confluent_kafka import KafkaException, Producer

    producer = Producer(
        {
            "bootstrap.servers": settings.bootstrap_servers,
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 5,
            "partitioner": "murmur2_random",
        }
    )
    topic = settings.topic(CATALOG.name)
    failures: list = []

    def on_delivery(error, _message) -> None:
        if error is not None:
            failures.append(error)
        elif on_progress is not None:
            on_progress(1)

    count = 0
    for record in records:
        key, value = encode(record)
        while True:
            try:
                producer.produce(topic, key=key, value=value, on_delivery=on_delivery)
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
        count += 1
    if producer.flush(timeout) or failures:
        raise KafkaException(failures[0] if failures else "catalog records not acknowledged in time")
    return count


def publish_catalog(
    settings: Settings, rows: Iterable[CatalogRow | tuple], timeout: float = 30.0,
    on_progress: Optional[Callable[[int], None]] = None,
) -> int:
    """Publish catalog rows (CSV semantics) to the catalog topic; returns the records written."""
    return publish_records(settings, records_from_rows(rows), timeout, on_progress)

