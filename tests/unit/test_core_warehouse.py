"""Warehouse events -> movements, document-level dedupe, and the flow into the stock state."""

from __future__ import annotations

import os

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stockstream.core.model import WarehouseEvent, WarehouseEventType
from stockstream.core.movements import MovementType, Origin
from stockstream.core.stock import StockState, apply_movements, ats
from stockstream.core.warehouse import DocumentState, apply_warehouse_event, warehouse_movements

DERANDOMIZE = not os.environ.get("STOCKSTREAM_HYPOTHESIS_RANDOM")
W = WarehouseEventType


def event(event_type=W.RECEIPT, quantity=5, line_no=1, document_id="RK-1", location="WH-SH", t=1000, **kw):
    return WarehouseEvent(event_type, document_id, line_no, location, "SKU-1", quantity, t, **kw)


@pytest.mark.parametrize("event_type", list(WarehouseEventType))
def test_each_event_type_maps_to_its_movement(event_type):
    e = event(event_type, counterpart_location="WH-GZ", reason="r")
    origin = Origin("warehouse/0", 17, 3)
    [m] = warehouse_movements(e, origin)
    assert m.type is MovementType(event_type.value)
    assert (m.sku, m.quantity, m.event_time_ms, m.location, m.counterpart_location) == ("SKU-1", 5, 1000, "WH-SH", "WH-GZ")
    assert (m.reference, m.line, m.reason, m.origin, m.channel) == ("RK-1", "1", "r", origin, None)
    assert warehouse_movements(e)[0].movement_id == m.movement_id  # from the cause, not the origin


def test_ids_differ_by_document_line_type_and_location():
    ids = {
        warehouse_movements(e)[0].movement_id
        for e in [
            event(),
            event(line_no=2),
            event(document_id="RK-2"),
            event(W.ADJUSTMENT),
            event(location="WH-GZ"),
        ]
    }
    assert len(ids) == 5
    assert warehouse_movements(event(quantity=9, t=5))[0].movement_id == warehouse_movements(event())[0].movement_id


def test_negative_quantities_only_for_adjustments():
    assert warehouse_movements(event(W.ADJUSTMENT, -3))[0].quantity == -3
    for event_type in set(WarehouseEventType) - {W.ADJUSTMENT}:
        with pytest.raises(ValueError):
            warehouse_movements(event(event_type, -1))


def test_document_state_dedupes_resends_and_replays_crashes():
    origin = Origin("warehouse/0", 5, 0)
    state, first, changed = apply_warehouse_event(None, event(), origin)
    assert changed and len(first) == 1
    state = DocumentState.from_dict(orjson.loads(orjson.dumps(state.to_dict())))
    # Crash replay of the same record: the same movement again, state untouched.
    again, replay, changed = apply_warehouse_event(state, event(), origin)
    assert replay == first and not changed
    # The WMS re-sends the document (a new record): nothing.
    _, resend, changed = apply_warehouse_event(state, event(), Origin("warehouse/0", 9, 0))
    assert resend == [] and not changed
    # Another line or another event type of the same line is new.
    _, other, changed = apply_warehouse_event(state, event(line_no=2), Origin("warehouse/0", 9, 1))
    assert len(other) == 1 and changed
    _, restock, _ = apply_warehouse_event(state, event(W.RETURN_RESTOCKED), Origin("warehouse/0", 9, 2))
    assert len(restock) == 1
    assert state.updated_ms == 1000


@settings(max_examples=200, derandomize=DERANDOMIZE, deadline=None)
@given(
    st.lists(st.tuples(st.sampled_from([W.RECEIPT, W.ADJUSTMENT, W.RETURN_RECEIVED]), st.integers(1, 4), st.integers(1, 9)), max_size=12),
    st.data(),
)
def test_resent_documents_count_once(lines, data):
    events = [event(t, q, line_no=n) for t, q, n in lines]
    deliveries = data.draw(st.lists(st.sampled_from(events), max_size=20)) if events else []
    delivered = events + deliveries  # every event at least once, re-sends after
    doc = None
    stock = StockState("SKU-1")
    for offset, e in enumerate(delivered):
        doc, movements, _ = apply_warehouse_event(doc, e, Origin("warehouse/0", offset, 0))
        apply_movements(stock, movements)
    first = {}
    for e in events:
        first.setdefault((e.line_no, e.event_type), e)
    on_hand = sum(e.quantity for e in first.values() if e.event_type is not W.RETURN_RECEIVED)
    inspection = sum(e.quantity for e in first.values() if e.event_type is W.RETURN_RECEIVED)
    loc = stock.locations.get("WH-SH")
    assert (loc.on_hand if loc else 0, loc.inspection if loc else 0) == (on_hand, inspection)


def test_bonded_receipt_customs_and_returns_through_stock():
    flow = [
        event(W.RECEIPT, 20, 1, "IN-1", "BONDED", t=1),
        event(W.CUSTOMS_HOLD, 20, 2, "IN-1", "BONDED", t=2),
        event(W.CUSTOMS_RELEASE, 15, 1, "CL-1", "BONDED", t=3),
        event(W.TRANSFER_OUT, 5, 1, "TR-1", "BONDED", t=4, counterpart_location="WH-SH"),
        event(W.RETURN_RECEIVED, 2, 1, "RT-1", "WH-SH", t=5),
        event(W.RETURN_RESTOCKED, 1, 1, "RT-1", "WH-SH", t=6),
        event(W.RETURN_SCRAPPED, 1, 1, "RT-1", "WH-SH", t=6),
    ]
    stock, _ = apply_movements(None, [m for e in flow for m in warehouse_movements(e)])
    bonded, sh = stock.locations["BONDED"], stock.locations["WH-SH"]
    assert (bonded.on_hand, bonded.customs_hold) == (10, 5)
    assert (sh.on_hand, sh.in_transit, sh.inspection) == (1, 5, 0)
    assert ats(stock) == 11 and ats(stock, ["WH-SH"]) == 1
    apply_movements(stock, warehouse_movements(event(W.TRANSFER_IN, 5, 1, "TR-1", "WH-SH", t=7)))
    assert (sh.on_hand, sh.in_transit, ats(stock)) == (6, 0, 16)
    apply_movements(stock, warehouse_movements(event(W.STOCK_COUNT, 4, 1, "CC-1", "WH-SH", t=6)))
    assert sh.on_hand == 9  # counted 4 as of t=6, then the transfer arrived (t=7)
