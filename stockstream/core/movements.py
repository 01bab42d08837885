"""The ledger entry: one inventory movement. Its id is derived from its cause, so the same cause
always yields the same movement and duplicates can be recognised anywhere downstream."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from enum import Enum
from typing import Optional


class MovementType(str, Enum):
    RESERVE = "RESERVE"  # channel `reserved` += q
    RELEASE = "RELEASE"  # channel `reserved` -= q
    SHIP = "SHIP"  # channel `reserved` -= q and `on_hand` at location -= q
    RETURN_RECEIVED = "RETURN_RECEIVED"  # `inspection` at location += q (not sellable)
    RETURN_RESTOCKED = "RETURN_RESTOCKED"  # `inspection` -= q, `on_hand` += q
    RETURN_SCRAPPED = "RETURN_SCRAPPED"  # `inspection` -= q
    RECEIPT = "RECEIPT"  # `on_hand` += q
    STOCK_COUNT = "STOCK_COUNT"  # `on_hand` at location := q as of event_time
    CUSTOMS_HOLD = "CUSTOMS_HOLD"  # `on_hand` -= q, `customs_hold` += q (bonded stock not yet sellable)
    CUSTOMS_RELEASE = "CUSTOMS_RELEASE"  # `customs_hold` -= q, `on_hand` += q
    TRANSFER_OUT = "TRANSFER_OUT"  # `on_hand` at location -= q, `in_transit` at counterpart += q
    TRANSFER_IN = "TRANSFER_IN"  # `in_transit` at location -= q, `on_hand` += q
    ADJUSTMENT = "ADJUSTMENT"  # `on_hand` += q (signed)
    PRESALE_ALLOWANCE = "PRESALE_ALLOWANCE"  # presale allowance := q (ATS may go down to -q)
    SAFETY_STOCK = "SAFETY_STOCK"  # safety stock := q
    # A SHIP's time corrected: the shipment's `on_hand` -q at location moves from
    # `previous_event_time_ms` to `event_time_ms` (better evidence of when the goods left arrived
    # after SHIP was emitted). Reserved unchanged. It matters when a stock count lies in between.
    SHIP_REDATE = "SHIP_REDATE"
    # Keep last. The Avro enum default: a reader meeting a symbol added by a newer writer reads it
    # as UNKNOWN. Never produced; the stock core does not apply it (Outcome.INVALID, state and
    # replay marks untouched) and counts it.
    UNKNOWN = "UNKNOWN"


@dataclass(frozen=True)
class Origin:
    """Where a movement came from in Kafka: the idempotency mark downstream.

    `stream` names an ordered source (e.g. ``ingest/3|raw.tmall/3``): movements derived from one
    stream reach each SKU in increasing (`offset`, `index`) order, so a consumer that remembers the
    highest position it applied per stream can drop any replay exactly.
    """

    stream: str
    offset: int
    index: int


@dataclass(frozen=True)
class Movement:
    movement_id: str
    type: MovementType
    sku: str  # master SKU
    quantity: int
    event_time_ms: int
    location: Optional[str] = None
    counterpart_location: Optional[str] = None
    channel: Optional[str] = None  # "<platform>:<shop_id>" for reserve/release/ship
    platform: Optional[str] = None
    reference: Optional[str] = None  # order id or warehouse document id
    line: Optional[str] = None  # order line id or document line number
    reason: Optional[str] = None
    origin: Optional[Origin] = None
    # SHIP_REDATE: the event time the shipment had until now (None for every other type).
    previous_event_time_ms: Optional[int] = None


def movement_id(*cause: object) -> str:
    """Deterministic id from the parts of a cause (platform, shop, order, line, transition...)."""
    digest = hashlib.blake2b("\x1f".join(str(part) for part in cause).encode(), digest_size=16)
    return digest.hexdigest()
