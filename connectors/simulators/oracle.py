"""Ground truth for generated traffic, computed from what the generator *knows* happened, without
stockstream's order or stock logic (it must not import `stockstream.core.orders` / `.stock`:
an oracle that shares the code under test proves nothing).

Facts it is given:

* every order line's final state (`LineFact`): master SKU, quantity, final status, whether its
  goods left the warehouse and when (the physical consign time), from where, on which channel,
  and whether that channel reserves unpaid orders;
* every warehouse event (`WarehouseEvent`), as the warehouse recorded it.

What it computes, brute force over the full history of one SKU:

* reserved per channel: lines whose final status holds stock (PAID; CREATED on channels that
  reserve unpaid orders). Shipped and closed lines hold none.
* per location:
  - on_hand, with the documented count semantics: a STOCK_COUNT at time T says "on_hand was q as
    of T"; on_hand = q of the latest count (by event time) + every on_hand delta with event time
    > T. Deltas at exactly T are in the count. Without a count: the sum of all deltas. Deltas:
    RECEIPT +q, ADJUSTMENT +q (signed), CUSTOMS_HOLD -q, CUSTOMS_RELEASE +q, TRANSFER_OUT -q at
    the source, TRANSFER_IN +q at the destination, RETURN_RESTOCKED +q, and -q for every shipped
    line at its fulfilment location at its consign time;
  - customs_hold (HOLD - RELEASE), inspection (RECEIVED - RESTOCKED - SCRAPPED), in_transit
    (counted at the destination: OUT to it - IN at it). No count semantics for these.
* ATS with every location sellable and no safety stock: max(sum of on_hand - total reserved, 0).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Iterable, Optional

from stockstream.core.model import LineStatus, WarehouseEvent, WarehouseEventType

W = WarehouseEventType


@dataclass(frozen=True)
class LineFact:
    """One order line as it finally stands."""

    channel: str  # "<platform>:<shop_id>"
    order_id: str
    line_id: str
    sku: str  # master SKU
    quantity: int
    status: LineStatus
    shipped: bool  # goods left the warehouse (SHIPPED / FINISHED, or CLOSED after shipment)
    ship_ms: Optional[int]  # the consign time, when shipped
    location: str  # the shop's fulfilment location
    reserve_unpaid: bool  # the channel's policy

    @property
    def reserves(self) -> bool:
        if self.status == LineStatus.PAID:
            return True
        return self.status == LineStatus.CREATED and self.reserve_unpaid


@dataclass
class LocationTruth:
    on_hand: int = 0
    customs_hold: int = 0
    inspection: int = 0
    in_transit: int = 0

    def as_dict(self) -> dict[str, int]:
        return {"on_hand": self.on_hand, "customs_hold": self.customs_hold, "inspection": self.inspection, "in_transit": self.in_transit}


@dataclass
class SkuTruth:
    sku: str
    locations: dict[str, LocationTruth] = field(default_factory=dict)
    reserved: dict[str, int] = field(default_factory=dict)  # channel -> units (no zero entries)

    @property
    def on_hand(self) -> int:
        return sum(loc.on_hand for loc in self.locations.values())

    @property
    def total_reserved(self) -> int:
        return sum(self.reserved.values())

    @property
    def ats(self) -> int:
        return max(self.on_hand - self.total_reserved, 0)


# On_hand delta of a warehouse event at its own location (transfers: see _deltas).
_ON_HAND_SIGN = {
    W.RECEIPT: 1,
    W.ADJUSTMENT: 1,
    W.CUSTOMS_HOLD: -1,
    W.CUSTOMS_RELEASE: 1,
    W.TRANSFER_OUT: -1,
    W.TRANSFER_IN: 1,
    W.RETURN_RESTOCKED: 1,
}


class GroundTruth:
    """Facts in, truth out. Mutable while the generator runs; queries read the full history."""

    def __init__(self) -> None:
        self._lines: dict[tuple[str, str, str], LineFact] = {}
        self._lines_by_sku: dict[str, dict[tuple[str, str, str], LineFact]] = defaultdict(dict)
        self._events: list[WarehouseEvent] = []
        self._events_by_sku: dict[str, list[WarehouseEvent]] = defaultdict(list)

    # --- facts ---------------------------------------------------------------------------------

    def set_line(self, fact: LineFact) -> None:
        """The line's final state (replaces an earlier statement about the same line)."""
        key = (fact.channel, fact.order_id, fact.line_id)
        old = self._lines.get(key)
        if old is not None and old.sku != fact.sku:
            del self._lines_by_sku[old.sku][key]
        self._lines[key] = fact
        self._lines_by_sku[fact.sku][key] = fact

    def add_event(self, event: WarehouseEvent) -> None:
        self._events.append(event)
        self._events_by_sku[event.sku].append(event)

    def add_events(self, events: Iterable[WarehouseEvent]) -> None:
        for event in events:
            self.add_event(event)

    @property
    def lines(self) -> list[LineFact]:
        return list(self._lines.values())

    @property
    def events(self) -> list[WarehouseEvent]:
        return list(self._events)

    def skus(self) -> list[str]:
        return sorted(set(self._lines_by_sku) | set(self._events_by_sku))

    def locations(self) -> list[str]:
        found = {e.location for e in self._events} | {e.counterpart_location for e in self._events if e.counterpart_location}
        found |= {line.location for line in self._lines.values() if line.shipped}
        return sorted(found)

    # --- truth ---------------------------------------------------------------------------------

    def _deltas(self, sku: str, location: str) -> list[tuple[int, int]]:
        """(event time, on_hand delta) at `location`, every one in the history."""
        out = []
        for e in self._events_by_sku.get(sku, ()):
            sign = _ON_HAND_SIGN.get(e.event_type)
            if sign is not None and e.location == location:
                out.append((e.event_time_ms, sign * e.quantity))
        for line in self._lines_by_sku.get(sku, {}).values():
            if line.shipped and line.location == location:
                if line.ship_ms is None:
                    raise ValueError(f"shipped line {line.order_id}/{line.line_id} has no ship time")
                out.append((line.ship_ms, -line.quantity))
        return out

    def _counts(self, sku: str, location: str) -> list[tuple[int, int]]:
        """(event time, counted) in the order recorded (equal times: the later recorded wins)."""
        return [
            (e.event_time_ms, e.quantity)
            for e in self._events_by_sku.get(sku, ())
            if e.event_type == W.STOCK_COUNT and e.location == location
        ]

    def on_hand(self, sku: str, location: str, as_of_ms: Optional[int] = None) -> int:
        """on_hand at `location`, after everything (as_of None) or as of `as_of_ms` inclusive
        (what a count taken at that time should say)."""
        counts = self._counts(sku, location)
        if as_of_ms is not None:
            counts = [c for c in counts if c[0] <= as_of_ms]
        base_ms: Optional[int] = None
        total = 0
        for count_ms, counted in counts:
            if base_ms is None or count_ms >= base_ms:
                base_ms, total = count_ms, counted
        for event_ms, delta in self._deltas(sku, location):
            if as_of_ms is not None and event_ms > as_of_ms:
                continue
            if base_ms is None or event_ms > base_ms:
                total += delta
        return total

    def stock(self, sku: str) -> SkuTruth:
        truth = SkuTruth(sku)

        def loc(name: str) -> LocationTruth:
            found = truth.locations.get(name)
            if found is None:
                found = truth.locations[name] = LocationTruth()
            return found

        for e in self._events_by_sku.get(sku, ()):
            t, q = e.event_type, e.quantity
            if t == W.CUSTOMS_HOLD:
                loc(e.location).customs_hold += q
            elif t == W.CUSTOMS_RELEASE:
                loc(e.location).customs_hold -= q
            elif t == W.RETURN_RECEIVED:
                loc(e.location).inspection += q
            elif t in (W.RETURN_RESTOCKED, W.RETURN_SCRAPPED):
                loc(e.location).inspection -= q
            elif t == W.TRANSFER_OUT:
                loc(e.counterpart_location or e.location).in_transit += q
            elif t == W.TRANSFER_IN:
                loc(e.location).in_transit -= q
            loc(e.location)
        for line in self._lines_by_sku.get(sku, {}).values():
            if line.shipped:
                loc(line.location)
            if line.reserves:
                truth.reserved[line.channel] = truth.reserved.get(line.channel, 0) + line.quantity
        truth.reserved = {channel: units for channel, units in truth.reserved.items() if units}
        for name, location in truth.locations.items():
            location.on_hand = self.on_hand(sku, name)
        return truth

    def ats(self, sku: str) -> int:
        return self.stock(sku).ats

    def reserved(self, sku: str, channel: Optional[str] = None) -> int:
        reserved = self.stock(sku).reserved
        return sum(reserved.values()) if channel is None else reserved.get(channel, 0)
