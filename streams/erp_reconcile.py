"""ERP on-hand import: compare the ERP's on_hand per (SKU, location) with stockstream's (the latest
snapshot per SKU in the compacted `ats` topic) and publish the differences to `reconciliation`.

Record in `reconciliation` (JSON), key ``erp-on-hand:<sku>:<location>``:
``{"kind": "erp_on_hand", "sku", "location", "erp_on_hand", "stockstream_on_hand", "difference"
(stockstream minus ERP), "ats_version" (null: SKU unknown to stockstream), "source", "checked_at_ms"}``.
A (SKU, location) missing on one side counts as 0 there.
"""

from __future__ import annotations

import csv
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterable, Mapping, Optional

import orjson
from confluent_kafka import Producer

from stockstream.settings import Settings
from stockstream.topics import RECONCILIATION, ensure_topics

Key = tuple[str, str]  # (sku, location)
CSV_COLUMNS = ("sku", "location", "on_hand")


@dataclass(frozen=True)
class Discrepancy:
    sku: str
    location: str
    erp_on_hand: int
    stockstream_on_hand: int
    ats_version: Optional[int]

    @property
    def difference(self) -> int:
        return self.stockstream_on_hand - self.erp_on_hand

    def to_record(self, source: str, checked_at_ms: int) -> dict:
        return {"kind": "erp_on_hand", **asdict(self), "difference": self.difference, "source": source,
                "checked_at_ms": checked_at_ms}


def read_onhand_lines(lines: Iterable[str], on_row: Callable[[], None] = lambda: None) -> dict[Key, int]:
    """CSV text (header sku,location,on_hand) -> on_hand per (sku, location). Repeated keys add up
    (an ERP export may list several bins of one location). Raises ValueError naming the line."""
    reader = csv.DictReader(lines)
    missing = set(CSV_COLUMNS) - set(reader.fieldnames or ())
    if missing:
        raise ValueError(f"the CSV has no column(s) {sorted(missing)}; expected {','.join(CSV_COLUMNS)}")
    totals: dict[Key, int] = {}
    for row in reader:
        sku, location = (row["sku"] or "").strip(), (row["location"] or "").strip()
        try:
            on_hand = int((row["on_hand"] or "").strip())
        except ValueError:
            raise ValueError(f"line {reader.line_num}: on_hand {row['on_hand']!r} is not a whole number") from None
        if not sku or not location:
            raise ValueError(f"line {reader.line_num}: sku and location are required")
        totals[(sku, location)] = totals.get((sku, location), 0) + on_hand
        on_row()
    return totals


def stockstream_on_hand(snapshots: Mapping[str, dict]) -> tuple[dict[Key, int], dict[str, int]]:
    """(on_hand per (sku, location), ATS version per sku) from latest `ats` snapshots."""
    on_hand = {(sku, location): stock["on_hand"] for sku, snap in snapshots.items() for location, stock in snap["locations"].items()}
    return on_hand, {sku: snap["version"] for sku, snap in snapshots.items()}


def discrepancies(erp: Mapping[Key, int], ours: Mapping[Key, int], versions: Mapping[str, int]) -> list[Discrepancy]:
    """Every (sku, location) where the two differ, sorted."""
    return [
        Discrepancy(sku, location, erp.get((sku, location), 0), ours.get((sku, location), 0), versions.get(sku))
        for sku, location in sorted(set(erp) | set(ours))
        if erp.get((sku, location), 0) != ours.get((sku, location), 0)
    ]


def publish(settings: Settings, found: list[Discrepancy], source: str) -> None:
    ensure_topics(settings, (RECONCILIATION,))
    producer = Producer({"bootstrap.servers": settings.bootstrap_servers, "enable.idempotence": True, "acks": "all"})
    now_ms = int(time.time() * 1000)
    errors: list[str] = []
    for d in found:
        producer.produce(
            settings.topic(RECONCILIATION.name),
            key=f"erp-on-hand:{d.sku}:{d.location}".encode(),
            value=orjson.dumps(d.to_record(source, now_ms)),
            on_delivery=lambda error, _m: errors.append(str(error)) if error else None,
        )
        producer.poll(0)
    producer.flush()
    if errors:
        raise RuntimeError(f"{len(errors)} discrepancies not published: {errors[0]}")


def reconcile_csv(settings: Settings, path: Path, on_row: Callable[[], None] = lambda: None) -> tuple[int, list[Discrepancy]]:
    """Read the CSV, compare, publish; returns (keys compared, discrepancies)."""
    from streams.ats_topic import latest_snapshots

    with path.open(newline="", encoding="utf-8-sig") as handle:
        erp = read_onhand_lines(handle, on_row)
    ours, versions = stockstream_on_hand(latest_snapshots(settings))
    found = discrepancies(erp, ours, versions)
    publish(settings, found, str(path))
    return len(set(erp) | set(ours)), found
