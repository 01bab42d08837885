"""The canonical vocabulary shared by connectors (which parse into it) and the inventory core.

Plain frozen dataclasses: no Kafka, no I/O. Quantities are whole units (int). Times are epoch
milliseconds (int) in UTC; platform-local times are converted by the platform's parser.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum, IntEnum
from typing import Optional


class LineStatus(IntEnum):
    """An order line's lifecycle, platform-neutral. The value is the rank: a later stage never
    moves back to an earlier one, so an update with a lower rank than what was applied is stale."""

    CREATED = 10  # placed, not paid
    PAID = 20  # paid, waiting for shipment
    SHIPPED = 30  # left the warehouse
    FINISHED = 40  # buyer confirmed / trade success
    CLOSED = 50  # closed: cancelled or refunded (before or after shipment, see `shipped`)


@dataclass(frozen=True)
class LineUpdate:
    """One order line as a platform message or snapshot describes it at `OrderUpdate.modified_ms`."""

    line_id: str  # Taobao oid; JD/Douyin/PDD: the platform SKU id within the order (line key)
    # None (with `quantity` None): a status change only, the line's details are not in the
    # message (a notification). The core keeps what it knows of the line, or holds the status
    # until a detail (snapshot) makes the line known.
    platform_sku_id: Optional[str]
    merchant_code: Optional[str]  # outer_sku_id / outerSkuId / code / outer_id: maps to the master SKU
    quantity: Optional[int]  # None: not in the message (see `platform_sku_id`)
    status: LineStatus
    # Whether goods for this line have left the warehouse. Matters for CLOSED: closed after
    # shipment is a refund whose goods come back (if at all) through the warehouse's return flow.
    # None: the message does not say. Once known True it stays True (a later False or None does
    # not undo a shipment); SHIPPED and FINISHED imply it.
    shipped: Optional[bool] = False
    listing_id: Optional[str] = None  # num_iid / wareId / product_id / goods_id
    # When this line's goods left the warehouse, as the platform states it (Tmall sub-order
    # consign_time, Douyin sku order ship_time). Only read with shipped evidence; dates the SHIP
    # movement. None: not in the message (`OrderUpdate.shipped_ms` or the update's time is used).
    shipped_ms: Optional[int] = None


@dataclass(frozen=True)
class OrderUpdate:
    """A platform's statement about an order: from a push message, a poll or a detail fetch."""

    platform: str
    shop_id: str
    order_id: str  # always a string: Taobao tids exceed 2**53
    modified_ms: int  # the platform's own modification time of the order (ordering tie-break)
    lines: tuple[LineUpdate, ...]
    message_id: Optional[str] = None  # the platform's delivery id, when it has one (dedupe key)
    # True when this is a full snapshot (detail fetch / poll) listing every line of the order.
    snapshot: bool = False
    # An order-level status: the notification names the order but not its lines (PDD frames,
    # oid-less TMC messages, Douyin pushes without s_ids). It applies to every line of the order
    # that is not closed (see stockstream/core/orders.py); `lines` may then be empty.
    status: Optional[LineStatus] = None
    shipped: Optional[bool] = None  # with `status`: as `LineUpdate.shipped`, for the whole order
    # When the order's goods left the warehouse, as the platform states it (PDD shipping_time: one
    # shipment per order). For the order-level `status` and for every line of `lines` without a
    # `shipped_ms` of its own; only read with shipped evidence. None: not stated (see orders.py).
    shipped_ms: Optional[int] = None


class WarehouseEventType(str, Enum):
    RECEIPT = "RECEIPT"
    STOCK_COUNT = "STOCK_COUNT"
    TRANSFER_OUT = "TRANSFER_OUT"
    TRANSFER_IN = "TRANSFER_IN"
    CUSTOMS_HOLD = "CUSTOMS_HOLD"
    CUSTOMS_RELEASE = "CUSTOMS_RELEASE"
    RETURN_RECEIVED = "RETURN_RECEIVED"
    RETURN_RESTOCKED = "RETURN_RESTOCKED"
    RETURN_SCRAPPED = "RETURN_SCRAPPED"
    ADJUSTMENT = "ADJUSTMENT"


@dataclass(frozen=True)
class WarehouseEvent:
    """One line of a warehouse document (WMS, bonded/FTZ warehouse, 3PL)."""

    event_type: WarehouseEventType
    document_id: str  # the warehouse's document id; with `line_no` it identifies the event
    line_no: int
    location: str
    sku: str  # master SKU (warehouses speak the brand's SKU)
    quantity: int  # STOCK_COUNT: absolute count; ADJUSTMENT: signed; others: positive
    event_time_ms: int
    counterpart_location: Optional[str] = None  # transfers: the other end
    reason: Optional[str] = None


@dataclass(frozen=True)
class SkuComponent:
    master_sku: str
    quantity: int


@dataclass(frozen=True)
class CatalogEntry:
    """A platform SKU (or merchant code) and the master SKUs it consists of (one unless a bundle)."""

    merchant_code: str
    components: tuple[SkuComponent, ...] = field(default_factory=tuple)

    @property
    def is_bundle(self) -> bool:
        return len(self.components) > 1 or any(c.quantity != 1 for c in self.components)
