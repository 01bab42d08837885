"""Stock of one master SKU, built from the movement ledger, and its available-to-sell (ATS).

Buckets (see `MovementType` for which movement moves which):

* per location: ``on_hand`` (sellable, physically there), ``customs_hold`` (bonded stock waiting
  for clearance), ``inspection`` (returns not yet checked), ``in_transit`` (transfers on their way
  *to* this location);
* per channel (``"<platform>:<shop_id>"``): ``reserved`` (ordered, not shipped);
* ``safety_stock`` and ``presale_allowance``: settings, latest by event time.

Exactly-once: every movement carries its Kafka `Origin`. Movements of one source stream reach a
SKU in increasing (offset, index) order, so the state keeps, per stream, the highest position it
applied and skips anything at or below it: an exact replay filter without remembering ids.
Movements without an origin are always applied (tests, manual corrections).

Re-dated shipments: SHIP_REDATE says "the SHIP of q dated t1 (`previous_event_time_ms`) really
happened at t0 (`event_time_ms`)". It moves the shipment's on_hand delta: +q at t1 and -q at t0,
each under the count rules below. So with a count at Tc, t0 < Tc <= t1 (the count already
includes the shipment that the SHIP at t1 then took off again) on_hand goes up by q; with the count
before t0 or at/after t1 nothing changes but the count log. Reserved is unchanged (the SHIP
consumed the reservation). Chains (t1 -> t0 -> t00) compose. Each half is an ordinary on_hand
delta, so like any delta the result does not depend on when it arrives relative to counts.

Stock counts: STOCK_COUNT says "on_hand at this location was q as of event_time T". So
``on_hand = q + every on_hand delta at that location with event_time > T``, whatever the arrival
order: a delta that arrives after the count but happened before it is already in the count (it
changes no on_hand), a delta applied before the count arrived but younger than it is kept. Deltas
with event_time == T count as included. Of several counts the one with the latest event time wins
(equal times: the one applied last). To re-base on_hand when a count arrives, each location keeps
a log of its on_hand deltas younger than its latest count, bounded by event-time horizon
(`LOG_HORIZON_MS`, measured from the newest logged delta) and by entry count (`LOG_MAX_ENTRIES`;
deltas with the same event time share an entry). A count older than a delta the log had to drop
cannot be re-based exactly: it is ignored (outcome SUPERSEDED) and on_hand keeps following the
previous count plus deltas.

The functions mutate the state they are given and return it: the stream reads a value from its
table, applies a batch, writes it back. Copy first (``StockState.from_dict(s.to_dict())``) to keep
the old value.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass, field
from enum import Enum
from operator import itemgetter
from typing import Collection, Iterable, Mapping, Optional, Sequence

from stockstream.core.movements import Movement, MovementType, Origin

DAY_MS = 24 * 3600 * 1000
LOG_HORIZON_MS = 7 * DAY_MS
LOG_MAX_ENTRIES = 512

_event_time = itemgetter(0)


class Outcome(str, Enum):
    APPLIED = "applied"
    REPLAY = "replay"  # origin at or below the mark of its stream: already applied
    SUPERSEDED = "superseded"  # a count or setting older than the current one (or than the count log)
    # Not applicable: an UNKNOWN movement (a type this release cannot read). State and replay
    # marks are left alone, so nothing of it is recorded; callers count it.
    INVALID = "invalid"


@dataclass(slots=True)
class LocationStock:
    on_hand: int = 0
    customs_hold: int = 0
    inspection: int = 0
    in_transit: int = 0  # inbound to this location
    count_time_ms: Optional[int] = None  # event time of the count on_hand is based on
    # Deltas at or before this event time may have been dropped from `log`; None: nothing dropped.
    log_floor_ms: Optional[int] = None
    # [event_ms, on_hand delta] for deltas younger than the count, sorted by event_ms.
    log: list[list[int]] = field(default_factory=list)

    def to_list(self) -> list:
        return [
            self.on_hand,
            self.customs_hold,
            self.inspection,
            self.in_transit,
            self.count_time_ms,
            self.log_floor_ms,
            [x for entry in self.log for x in entry],
        ]

    @classmethod
    def from_list(cls, data: Sequence) -> "LocationStock":
        flat = data[6]
        return cls(data[0], data[1], data[2], data[3], data[4], data[5], [[flat[i], flat[i + 1]] for i in range(0, len(flat), 2)])


@dataclass(slots=True)
class StockState:
    sku: str
    locations: dict[str, LocationStock] = field(default_factory=dict)
    reserved: dict[str, int] = field(default_factory=dict)  # channel -> units; zero entries removed
    safety_stock: int = 0
    safety_stock_ms: Optional[int] = None  # event time of the setting in force
    presale_allowance: int = 0
    presale_allowance_ms: Optional[int] = None
    version: int = 0  # +1 per applied movement
    marks: dict[str, tuple[int, int]] = field(default_factory=dict)  # stream -> (offset, index) applied

    def location(self, name: str) -> LocationStock:
        loc = self.locations.get(name)
        if loc is None:
            loc = self.locations[name] = LocationStock()
        return loc

    @property
    def on_hand(self) -> int:
        return sum(loc.on_hand for loc in self.locations.values())

    @property
    def total_reserved(self) -> int:
        return sum(self.reserved.values())

    def to_dict(self) -> dict:
        data: dict = {"k": self.sku, "v": self.version}
        if self.locations:
            data["l"] = {name: loc.to_list() for name, loc in self.locations.items()}
        if self.reserved:
            data["r"] = dict(self.reserved)
        if self.safety_stock_ms is not None:
            data["ss"] = [self.safety_stock, self.safety_stock_ms]
        if self.presale_allowance_ms is not None:
            data["pa"] = [self.presale_allowance, self.presale_allowance_ms]
        if self.marks:
            data["m"] = {stream: list(mark) for stream, mark in self.marks.items()}
        return data

    @classmethod
    def from_dict(cls, data: Mapping) -> "StockState":
        state = cls(data["k"], version=data["v"])
        for name, loc in data.get("l", {}).items():
            state.locations[name] = LocationStock.from_list(loc)
        state.reserved = dict(data.get("r", {}))
        if "ss" in data:
            state.safety_stock, state.safety_stock_ms = data["ss"]
        if "pa" in data:
            state.presale_allowance, state.presale_allowance_ms = data["pa"]
        state.marks = {stream: (mark[0], mark[1]) for stream, mark in data.get("m", {}).items()}
        return state


# --- on_hand with count semantics ---------------------------------------------------------------


def _on_hand_delta(loc: LocationStock, event_ms: int, delta: int, horizon_ms: int, max_entries: int) -> None:
    count_ms = loc.count_time_ms
    if count_ms is not None and event_ms <= count_ms:
        return  # happened before the count: the count already includes it
    loc.on_hand += delta
    floor = loc.log_floor_ms
    if floor is not None and event_ms <= floor:
        return  # below the log's floor no count can be re-based anyway
    log = loc.log
    if not log or log[-1][0] < event_ms:
        log.append([event_ms, delta])  # the common case: in event-time order
    elif log[-1][0] == event_ms:
        log[-1][1] += delta
    else:
        at = bisect_right(log, event_ms, key=_event_time)
        if at and log[at - 1][0] == event_ms:
            log[at - 1][1] += delta
        else:
            log.insert(at, [event_ms, delta])
    cutoff = log[-1][0] - horizon_ms
    if log[0][0] < cutoff or len(log) > max_entries:
        drop = max(bisect_right(log, cutoff - 1, key=_event_time), len(log) - max_entries)
        dropped_ms = log[drop - 1][0]
        del log[:drop]
        loc.log_floor_ms = dropped_ms if floor is None or dropped_ms > floor else floor


def _stock_count(loc: LocationStock, event_ms: int, counted: int) -> Outcome:
    count_ms = loc.count_time_ms
    if count_ms is not None and event_ms < count_ms:
        return Outcome.SUPERSEDED
    floor = loc.log_floor_ms
    if floor is not None and event_ms < floor:
        return Outcome.SUPERSEDED  # deltas between the count and the floor are gone
    log = loc.log
    del log[: bisect_right(log, event_ms, key=_event_time)]
    loc.on_hand = counted + sum(entry[1] for entry in log)
    loc.count_time_ms = event_ms
    loc.log_floor_ms = None  # everything at or before the count is in it: no gap left
    return Outcome.APPLIED


# --- movements ----------------------------------------------------------------------------------


def _need(value: Optional[str], m: Movement, what: str) -> str:
    if value is None:
        raise ValueError(f"{m.type.value} movement {m.movement_id} has no {what}")
    return value


def _add_reserved(state: StockState, channel: str, delta: int) -> None:
    value = state.reserved.get(channel, 0) + delta
    if value:
        state.reserved[channel] = value
    else:
        state.reserved.pop(channel, None)


def apply_movement(
    state: StockState,
    m: Movement,
    *,
    log_horizon_ms: int = LOG_HORIZON_MS,
    log_max_entries: int = LOG_MAX_ENTRIES,
) -> Outcome:
    """Apply one movement of this SKU (mutates `state`)."""
    if m.sku != state.sku:
        raise ValueError(f"movement {m.movement_id} is for {m.sku!r}, not {state.sku!r}")
    if m.type is MovementType.UNKNOWN:
        return Outcome.INVALID
    origin: Optional[Origin] = m.origin
    if origin is not None:
        position = (origin.offset, origin.index)
        mark = state.marks.get(origin.stream)
        if mark is not None and position <= mark:
            return Outcome.REPLAY

    t = m.type
    q = m.quantity
    ms = m.event_time_ms
    outcome = Outcome.APPLIED
    if t is MovementType.RESERVE:
        _add_reserved(state, _need(m.channel, m, "channel"), q)
    elif t is MovementType.SHIP:
        loc = state.location(_need(m.location, m, "location"))
        _add_reserved(state, _need(m.channel, m, "channel"), -q)
        _on_hand_delta(loc, ms, -q, log_horizon_ms, log_max_entries)
    elif t is MovementType.RELEASE:
        _add_reserved(state, _need(m.channel, m, "channel"), -q)
    elif t is MovementType.SHIP_REDATE:
        loc = state.location(_need(m.location, m, "location"))
        previous_ms = m.previous_event_time_ms
        if previous_ms is None:
            raise ValueError(f"{t.value} movement {m.movement_id} has no previous_event_time_ms")
        # The shipment's -q moves from previous_ms to ms: undo it there, redo it here. Each half
        # follows the count rules, so on_hand changes only when a count lies in between.
        _on_hand_delta(loc, previous_ms, q, log_horizon_ms, log_max_entries)
        _on_hand_delta(loc, ms, -q, log_horizon_ms, log_max_entries)
    elif t is MovementType.RECEIPT or t is MovementType.ADJUSTMENT:
        _on_hand_delta(state.location(_need(m.location, m, "location")), ms, q, log_horizon_ms, log_max_entries)
    elif t is MovementType.STOCK_COUNT:
        outcome = _stock_count(state.location(_need(m.location, m, "location")), ms, q)
    elif t is MovementType.RETURN_RECEIVED:
        state.location(_need(m.location, m, "location")).inspection += q
    elif t is MovementType.RETURN_RESTOCKED:
        loc = state.location(_need(m.location, m, "location"))
        loc.inspection -= q
        _on_hand_delta(loc, ms, q, log_horizon_ms, log_max_entries)
    elif t is MovementType.RETURN_SCRAPPED:
        state.location(_need(m.location, m, "location")).inspection -= q
    elif t is MovementType.CUSTOMS_HOLD:
        loc = state.location(_need(m.location, m, "location"))
        loc.customs_hold += q
        _on_hand_delta(loc, ms, -q, log_horizon_ms, log_max_entries)
    elif t is MovementType.CUSTOMS_RELEASE:
        loc = state.location(_need(m.location, m, "location"))
        loc.customs_hold -= q
        _on_hand_delta(loc, ms, q, log_horizon_ms, log_max_entries)
    elif t is MovementType.TRANSFER_OUT:
        source = _need(m.location, m, "location")
        # In transit counts at the destination (where it will be sellable); unknown destination:
        # at the source, so that the units stay visible somewhere.
        state.location(m.counterpart_location or source).in_transit += q
        _on_hand_delta(state.location(source), ms, -q, log_horizon_ms, log_max_entries)
    elif t is MovementType.TRANSFER_IN:
        loc = state.location(_need(m.location, m, "location"))
        loc.in_transit -= q
        _on_hand_delta(loc, ms, q, log_horizon_ms, log_max_entries)
    elif t is MovementType.SAFETY_STOCK:
        if state.safety_stock_ms is not None and ms < state.safety_stock_ms:
            outcome = Outcome.SUPERSEDED
        else:
            state.safety_stock, state.safety_stock_ms = q, ms
    elif t is MovementType.PRESALE_ALLOWANCE:
        if state.presale_allowance_ms is not None and ms < state.presale_allowance_ms:
            outcome = Outcome.SUPERSEDED
        else:
            state.presale_allowance, state.presale_allowance_ms = q, ms
    else:  # pragma: no cover - every MovementType is handled above
        raise ValueError(f"unknown movement type {t!r}")
    if origin is not None:  # only now: a malformed movement (ValueError above) leaves no mark
        state.marks[origin.stream] = position
    if outcome is Outcome.APPLIED:
        state.version += 1
    return outcome


def apply_movements(
    state: Optional[StockState],
    movements: Iterable[Movement],
    *,
    log_horizon_ms: int = LOG_HORIZON_MS,
    log_max_entries: int = LOG_MAX_ENTRIES,
) -> tuple[StockState, list[str]]:
    """Apply a batch of movements of one SKU, in order. Returns the state (the same object when one
    was given; a new one for the batch's SKU otherwise) and the ids of the movements that took
    effect (not replays, not superseded counts / settings, not INVALID ones)."""
    applied: list[str] = []
    for m in movements:
        if state is None:
            state = StockState(m.sku)
        if apply_movement(state, m, log_horizon_ms=log_horizon_ms, log_max_entries=log_max_entries) is Outcome.APPLIED:
            applied.append(m.movement_id)
    if state is None:
        raise ValueError("apply_movements: no state and no movement to create one from")
    return state, applied


# --- available to sell --------------------------------------------------------------------------


def ats(state: StockState, sellable_locations: Optional[Collection[str]] = None) -> int:
    """on_hand at the locations that may serve (None: all) - all reservations - safety stock,
    floored at -presale_allowance: negative only as far as presale allows (0 with no presale).
    customs_hold, inspection and in_transit are never sellable."""
    locations = state.locations
    if sellable_locations is None:
        on_hand = sum(loc.on_hand for loc in locations.values())
    else:
        on_hand = sum(locations[name].on_hand for name in sellable_locations if name in locations)
    available = on_hand - sum(state.reserved.values()) - state.safety_stock
    floor = -state.presale_allowance
    return available if available > floor else floor


def bundle_ats(components: Iterable[tuple[str, int]], ats_by_sku: Mapping[str, int]) -> int:
    """How many bundles the components allow: min over components of floor(ats / qty).

    Floor division rounds toward minus infinity in both signs, so the result never overstates
    supply: ``bundle * qty <= ats`` for every component, also when presale made an ATS negative
    (ATS -3 of a component needed twice: -2 bundles, the bundle is oversold by 1.5, call it 2).
    A component missing from `ats_by_sku` counts as ATS 0; no components: 0."""
    result: Optional[int] = None
    for sku, qty in components:
        if qty <= 0:
            raise ValueError(f"bundle component {sku!r}: quantity must be positive, got {qty}")
        n = ats_by_sku.get(sku, 0) // qty
        if result is None or n < result:
            result = n
    return 0 if result is None else result
