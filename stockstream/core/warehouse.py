"""Warehouse document lines -> ledger movements.

One warehouse event is one movement of the same name (see `MovementType` for the effects). The
movement id comes from (location, document id, line number, event type): the warehouse's own
identity of the fact, so a re-sent document line yields the same id.

Two kinds of duplicates, two mechanisms:

* A Kafka replay (the same record processed again after a crash) carries the same `Origin`; the
  stock state drops it by its per-stream origin marks. `warehouse_movements` alone is enough.
* A WMS that re-sends a document (a new Kafka record, a new origin) is NOT caught by origin marks:
  the stock state would apply it twice. `apply_warehouse_event` dedupes those with a small state
  per document (table key: ``(location, document_id)``), remembering which lines it has turned into
  movements and from which origin, so that a crash replay still gets its movement back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from stockstream.core.model import WarehouseEvent, WarehouseEventType
from stockstream.core.movements import Movement, MovementType, Origin, movement_id

_MOVEMENT_TYPE = {t: MovementType(t.value) for t in WarehouseEventType}


def warehouse_movement_id(event: WarehouseEvent) -> str:
    # The location is part of the id because document ids are only unique within one WMS.
    return movement_id("warehouse", event.location, event.document_id, event.line_no, event.event_type.value)


def warehouse_movements(event: WarehouseEvent, origin: Optional[Origin] = None) -> list[Movement]:
    """The movements of one warehouse event (one today; a list so that a type may need more)."""
    event_type = event.event_type
    if event_type is not WarehouseEventType.ADJUSTMENT and event.quantity < 0:
        raise ValueError(f"{event_type.value} {event.document_id}/{event.line_no}: negative quantity {event.quantity}")
    return [
        Movement(
            movement_id=warehouse_movement_id(event),
            type=_MOVEMENT_TYPE[event_type],
            sku=event.sku,
            quantity=event.quantity,
            event_time_ms=event.event_time_ms,
            location=event.location,
            counterpart_location=event.counterpart_location,
            reference=event.document_id,
            line=str(event.line_no),
            reason=event.reason,
            origin=origin,
        )
    ]


@dataclass(slots=True)
class DocumentState:
    """What one warehouse document has already produced: line key -> the origin that first
    produced it (``None`` when it was processed without an origin)."""

    seen: dict[str, Optional[tuple[str, int, int]]] = field(default_factory=dict)
    updated_ms: int = 0  # the newest event time seen: for expiry by the caller

    def to_dict(self) -> dict:
        return {"s": {k: (None if o is None else list(o)) for k, o in self.seen.items()}, "t": self.updated_ms}

    @classmethod
    def from_dict(cls, data: dict) -> "DocumentState":
        return cls({k: (None if o is None else tuple(o)) for k, o in data["s"].items()}, data["t"])


def _line_key(event: WarehouseEvent) -> str:
    return f"{event.line_no}:{event.event_type.value}"


def apply_warehouse_event(
    state: Optional[DocumentState], event: WarehouseEvent, origin: Optional[Origin] = None
) -> tuple[DocumentState, list[Movement], bool]:
    """(state, movements, changed). A line seen before yields nothing, unless this is a replay of
    the very record that first produced it (same origin): then its movement again, unchanged, since
    the crash may have lost it. A corrected re-send of a line (same document line, other quantity)
    is a duplicate too: warehouses correct with ADJUSTMENT documents."""
    if state is None:
        state = DocumentState()
    key = _line_key(event)
    mark = None if origin is None else (origin.stream, origin.offset, origin.index)
    if key in state.seen:
        if mark is not None and state.seen[key] == mark:
            return state, warehouse_movements(event, origin), False
        return state, [], False
    movements = warehouse_movements(event, origin)
    state.seen[key] = mark
    if event.event_time_ms > state.updated_ms:
        state.updated_ms = event.event_time_ms
    return state, movements, True
