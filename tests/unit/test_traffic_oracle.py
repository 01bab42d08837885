"""The ground-truth oracle on hand-made facts: count semantics, buckets, reservations, ATS."""

from __future__ import annotations

from typing import Optional

from connectors.simulators.oracle import GroundTruth, LineFact
from stockstream.core.model import LineStatus, WarehouseEvent, WarehouseEventType

W = WarehouseEventType
T = 1_731_254_400_000


def event(t: WarehouseEventType, qty: int, at: int, loc: str = "SH", sku: str = "A", doc: str = "D", line: int = 1,
          counterpart: Optional[str] = None) -> WarehouseEvent:
    return WarehouseEvent(t, doc, line, loc, sku, qty, at, counterpart)


def line(status: LineStatus, qty: int = 1, *, shipped: bool = False, ship_ms: Optional[int] = None, channel: str = "tmall:1",
         reserve_unpaid: bool = False, line_id: str = "1", loc: str = "SH") -> LineFact:
    return LineFact(channel, "o1", line_id, "A", qty, status, shipped, ship_ms, loc, reserve_unpaid)


def test_count_semantics() -> None:
    g = GroundTruth()
    g.add_events([
        event(W.RECEIPT, 100, T, doc="R1"),
        event(W.ADJUSTMENT, -5, T + 10, doc="A1"),  # before the count: in it
        event(W.RECEIPT, 7, T + 20, doc="R2"),  # at the count time: in it
        event(W.RECEIPT, 3, T + 30, doc="R3"),  # after: added
        event(W.STOCK_COUNT, 50, T + 20, doc="C1"),
    ])
    g.set_line(line(LineStatus.SHIPPED, 2, shipped=True, ship_ms=T + 15, line_id="x"))  # before: in the count
    g.set_line(line(LineStatus.FINISHED, 4, shipped=True, ship_ms=T + 40, line_id="y"))  # after: taken off
    assert g.on_hand("A", "SH") == 50 + 3 - 4
    assert g.on_hand("A", "SH", as_of_ms=T + 19) == 100 - 5 - 2
    assert g.on_hand("A", "SH", as_of_ms=T + 20) == 50
    # A later count wins whatever order it was recorded in; an older one changes nothing.
    g.add_event(event(W.STOCK_COUNT, 10, T + 5, doc="C0"))
    assert g.on_hand("A", "SH") == 50 + 3 - 4
    g.add_event(event(W.STOCK_COUNT, 20, T + 35, doc="C2"))
    assert g.on_hand("A", "SH") == 20 - 4
    assert g.on_hand("A", "OTHER") == 0


def test_buckets_and_transfers() -> None:
    g = GroundTruth()
    g.add_events([
        event(W.RECEIPT, 50, T, loc="FTZ", doc="R"),
        event(W.CUSTOMS_HOLD, 20, T + 1, loc="FTZ", doc="H"),
        event(W.CUSTOMS_RELEASE, 5, T + 2, loc="FTZ", doc="REL"),
        event(W.TRANSFER_OUT, 10, T + 3, loc="FTZ", doc="O1", counterpart="SH"),
        event(W.TRANSFER_IN, 6, T + 4, loc="SH", doc="I1", counterpart="FTZ"),
        event(W.RETURN_RECEIVED, 4, T + 5, loc="SH", doc="RMA"),
        event(W.RETURN_RESTOCKED, 2, T + 6, loc="SH", doc="INS", line=1),
        event(W.RETURN_SCRAPPED, 1, T + 6, loc="SH", doc="INS", line=2),
    ])
    s = g.stock("A")
    assert s.locations["FTZ"].as_dict() == {"on_hand": 50 - 20 + 5 - 10, "customs_hold": 15, "inspection": 0, "in_transit": 0}
    assert s.locations["SH"].as_dict() == {"on_hand": 6 + 2, "customs_hold": 0, "inspection": 1, "in_transit": 4}
    assert s.ats == 25 + 8


def test_reservations_by_final_status_and_channel_policy() -> None:
    g = GroundTruth()
    g.add_event(event(W.RECEIPT, 10, T))
    g.set_line(line(LineStatus.PAID, 2, line_id="paid"))
    g.set_line(line(LineStatus.CREATED, 3, line_id="unpaid"))  # reserve on payment: nothing
    g.set_line(line(LineStatus.CREATED, 1, line_id="unpaid-dy", channel="douyin:9", reserve_unpaid=True))
    g.set_line(line(LineStatus.CLOSED, 5, line_id="closed"))
    g.set_line(line(LineStatus.CLOSED, 1, shipped=True, ship_ms=T + 1, line_id="refunded"))  # goods gone
    s = g.stock("A")
    assert s.reserved == {"tmall:1": 2, "douyin:9": 1}
    assert s.on_hand == 9
    assert s.ats == 6
    g.set_line(line(LineStatus.PAID, 20, line_id="paid"))  # a restatement replaces the fact
    assert g.ats("A") == 0  # floored
    assert g.reserved("A") == 21 and g.reserved("A", "douyin:9") == 1
