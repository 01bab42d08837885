"""Raw records -> movements: parse each platform's payload, apply it to the order (or warehouse
document) it concerns, and group the resulting movements by the partition of their master SKU.

Plain Python over a key-value store: the Faust agent hands in one ingest batch and the table of
its partition; tests hand in a dict.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Callable, Optional, Protocol, Sequence

import orjson

from connectors import warehouse as warehouse_feed
from connectors.base import Rejected
from connectors.registry import PLATFORMS, get_connector
from schemas import codec
from schemas.batches import decode_ingest, encode_movements
from schemas.errors import CodecError
from schemas.names import QUARANTINE_RECORD
from stockstream.core.catalog import Catalog
from stockstream.core.model import LineUpdate, SkuComponent
from stockstream.core.movements import Movement, Origin
from stockstream.core.orders import OrderState, apply_order_update
from stockstream.core.warehouse import DocumentState, apply_warehouse_event
from stockstream.settings import Settings
from streams.partitioning import partition_for

# Several updates parsed from one raw record get disjoint origin index ranges.
INDEX_STRIDE = 1024

# (position of the raw record in its batch, raw record) -> (origin stream, origin offset, base index):
# the ordered source the movements derived from that record are marked with downstream.
OriginOf = Callable[[int, dict], tuple[str, int, int]]


def ingest_origin(ingest_partition: int) -> OriginOf:
    """Records of the `ingest` topic: one stream per (ingest partition, raw topic partition), at
    the raw record's own offset (a replayed raw record lands at the same position)."""
    return lambda _position, raw: (f"{ingest_partition}|{raw['topic']}/{raw['partition']}", raw["offset"], 0)

UNMAPPED_SKU = "unmapped_sku"
MALFORMED_BATCH = "malformed_batch"
UNKNOWN_SOURCE = "unknown_source"


class KeyValueStore(Protocol):
    def get(self, key: bytes) -> Optional[bytes]: ...

    def put(self, key: bytes, value: bytes) -> None: ...


@dataclass
class NormalizeOutput:
    movement_batches: list[tuple[int, bytes]] = field(default_factory=list)  # (partition, MovementBatch)
    # Counts for metrics: quarantine reason codes, raw records per platform, movements per type.
    quarantine_reasons: Counter = field(default_factory=Counter)
    records_by_platform: Counter = field(default_factory=Counter)
    movements_by_type: Counter = field(default_factory=Counter)
    quarantined: list[tuple[Optional[bytes], bytes]] = field(default_factory=list)  # (key, QuarantineRecord)
    movements: int = 0
    records: int = 0
    # (platform, shop_id, order_id) whose status notifications named lines the order state does
    # not know yet: held, not lost; fetching the order detail lets them take effect. Once per batch.
    detail_requests: list[tuple[str, str, str]] = field(default_factory=list)

    def quarantine(self, key: Optional[bytes], raw: dict, reason_code: str, reason: str, retryable: bool = False) -> None:
        self.quarantined.append((key, quarantine_record(raw, reason_code, reason, retryable)))
        self.quarantine_reasons[reason_code] += 1


class IdentityCatalog:
    """No catalog configured: the merchant code on the listing is the master SKU."""

    def resolve(self, platform: str, line: LineUpdate) -> Optional[tuple[SkuComponent, ...]]:
        if not line.merchant_code:
            return None
        return (SkuComponent(line.merchant_code, 1),)


def load_catalog(settings: Settings):
    """The catalog of a worker that follows no catalog topic: the CSV seed (if any) with the
    fallback of `catalog_mode` (see streams/catalog_feed.py)."""
    from streams.catalog_feed import CatalogResolver, catalog_mode, seed_catalog

    identity = catalog_mode(settings) == "identity"
    if settings.catalog_path is None and identity:
        return IdentityCatalog()
    return CatalogResolver(seed_catalog(settings), identity=identity)


def quarantine_record(raw: dict, reason_code: str, reason: str, retryable: bool = False) -> bytes:
    return codec.encode(
        QUARANTINE_RECORD,
        {
            "source_topic": raw["topic"],
            "source_partition": raw["partition"],
            "source_offset": raw["offset"],
            "key": raw.get("key"),
            "value": raw["value"],
            "headers": raw.get("headers") or {},
            "reason_code": reason_code,
            "reason": reason,
            "quarantined_at_ms": int(time.time() * 1000),
            "retryable": retryable,
        },
    )


class _BatchState:
    """The keys one ingest batch touches: each is read from the store once and written once."""

    def __init__(self, store: KeyValueStore) -> None:
        self.store = store
        self.values: dict[bytes, object] = {}
        self.dirty: set[bytes] = set()

    def get(self, key: bytes, kind):
        value = self.values.get(key)
        if value is None:
            stored = self.store.get(key)
            if stored is not None:
                value = self.values[key] = kind.from_dict(orjson.loads(stored))
        return value

    def changed(self, key: bytes, value) -> None:
        self.values[key] = value
        self.dirty.add(key)

    def flush(self) -> None:
        for key in self.dirty:
            self.store.put(key, orjson.dumps(self.values[key].to_dict()))


class Normalizer:
    def __init__(self, settings: Settings, catalog: Catalog | IdentityCatalog | None = None) -> None:
        self.settings = settings
        self.catalog = catalog if catalog is not None else load_catalog(settings)
        self.partitions = settings.partitions
        self._shops = {(shop.platform, shop.shop_id): shop for shop in settings.shops}
        prefix = settings.topic("raw.")
        self._platform_by_topic = {prefix + p: p for p in (*PLATFORMS, warehouse_feed.PLATFORM)}

    def process(
        self, batch_value: bytes, ingest_partition: int, store: KeyValueStore, origin: Optional[OriginOf] = None
    ) -> NormalizeOutput:
        """`origin` names the ordered source of each record (default: `ingest_origin`); records
        that are not first deliveries (the retry topic) must come from a stream of their own."""
        output = NormalizeOutput()
        origin_of = origin or ingest_origin(ingest_partition)
        try:
            records = decode_ingest(batch_value)
        except CodecError as exc:
            envelope = {"topic": "ingest", "partition": ingest_partition, "offset": -1, "value": batch_value}
            output.quarantine(None, envelope, MALFORMED_BATCH, str(exc))
            return output
        state = _BatchState(store)
        movements: list[Movement] = []
        for position, raw in enumerate(records):
            output.records += 1
            platform = self._platform_by_topic.get(raw["topic"])
            output.records_by_platform[platform or "unknown"] += 1
            source = origin_of(position, raw)
            if platform is None:
                reason = f"records of topic {raw['topic']!r} are not marketplace or warehouse input"
                output.quarantine(raw.get("key"), raw, UNKNOWN_SOURCE, reason)
            elif platform == warehouse_feed.PLATFORM:
                self._warehouse(raw, source, state, movements, output)
            else:
                self._order(platform, raw, source, state, movements, output)
        state.flush()
        output.movements = len(movements)
        output.movements_by_type.update(movement.type.value for movement in movements)
        output.movement_batches = self._batches(movements)
        return output

    def _order(self, platform: str, raw: dict, origin: tuple, state: _BatchState, movements: list, output) -> None:
        stream, offset, base = origin
        parsed = get_connector(platform).parse(raw["value"], raw.get("headers") or {})
        if isinstance(parsed, Rejected):
            output.quarantine(raw.get("key"), raw, parsed.reason_code, parsed.reason)
            return
        for number, update in enumerate(parsed):
            key = f"o|{platform}|{update.shop_id}|{update.order_id}".encode()
            shop = self._shops.get((platform, update.shop_id))
            result = apply_order_update(
                state.get(key, OrderState),
                update,
                resolve=self.catalog.resolve,
                reserve_unpaid=shop.reserve_unpaid if shop else False,
                fulfilment_location=(shop.fulfilment_location if shop else None) or self.settings.default_location,
                origin=Origin(stream, offset, base + number * INDEX_STRIDE),
            )
            if result.changed or result.replay:
                # A replay is written again unchanged: its first write may have reached this
                # worker's local state but not the changelog (killed in between); the changelog
                # must not miss what the marks in the local state say was applied.
                state.changed(key, result.state)
            if result.needs_detail:
                wanted = (platform, update.shop_id, update.order_id)
                if wanted not in output.detail_requests:
                    output.detail_requests.append(wanted)
            if result.deferred or result.unmapped:
                codes = ", ".join(result.unmapped) or "(see earlier record)"
                reason = f"order {update.order_id}: no master SKU known for {codes}; retried when the catalog learns it"
                output.quarantine(raw.get("key"), raw, UNMAPPED_SKU, reason, retryable=True)
            movements.extend(result.movements)

    def _warehouse(self, raw: dict, origin: tuple, state: _BatchState, movements: list, output) -> None:
        stream, offset, base = origin
        parsed = warehouse_feed.parse(raw["value"], raw.get("headers") or {})
        if isinstance(parsed, Rejected):
            output.quarantine(raw.get("key"), raw, parsed.reason_code, parsed.reason)
            return
        for number, event in enumerate(parsed):
            key = f"w|{event.location}|{event.document_id}".encode()
            document, produced, changed = apply_warehouse_event(
                state.get(key, DocumentState), event, Origin(stream, offset, base + number)
            )
            if changed or produced:  # produced unchanged: a replay, written again (see _order)
                state.changed(key, document)
            movements.extend(produced)

    def _batches(self, movements: Sequence[Movement]) -> list[tuple[int, bytes]]:
        by_partition: dict[int, list[Movement]] = defaultdict(list)
        for movement in movements:
            by_partition[partition_for(movement.sku.encode(), self.partitions)].append(movement)
        return [(partition, encode_movements(batch)) for partition, batch in by_partition.items()]
