"""Order lines -> reserve / release / ship movements, exactly once, whatever the delivery order.

Each line has a stock *effect*: NONE, RESERVED or SHIPPED, given by its status:

    CREATED           RESERVED if the channel reserves unpaid orders, else NONE
    PAID              RESERVED
    SHIPPED/FINISHED  SHIPPED
    CLOSED            SHIPPED if `shipped` (a refund after shipment: goods come back, if at all,
                      through the warehouse return flow), else NONE

Movements are the change of effect:

    NONE -> RESERVED      RESERVE q
    RESERVED -> NONE      RELEASE q          (only when the line closes, see below)
    RESERVED -> SHIPPED   SHIP q             (SHIP consumes the reserve and takes q off on_hand)
    NONE -> SHIPPED       RESERVE q, SHIP q  (so SHIP always consumes a reserve)
    SHIPPED -> anything   nothing            (shipping is irreversible)

Effects only move forward: a reserved line is released only by CLOSED, which is terminal (a
CREATED update on a channel whose `reserve_unpaid` was switched off meanwhile keeps the reserve).
So each movement type happens at most once per line and component, and its id
``movement_id(platform, shop, order, line, sku, type)`` is unique and the same whichever message
caused it (SHIP_REDATE, see "Re-dating", adds its new time to the id).

Ordering: an update is applied to a line only if its (status rank, modified_ms) is above what the
line applied; equal is a duplicate, lower is stale. A push and a poll snapshot of the same change
yield one movement. Out-of-order delivery ends in the same effects and the same SHIP movements as
in-order delivery; it may skip a RESERVE + RELEASE pair that in-order delivery would have emitted
(a line whose CLOSED arrives before its PAID is never reserved): the net stock is the same.

Status-only statements: a notification may carry a line's status without its details
(`LineUpdate.platform_sku_id` and `quantity` None), or a status for the whole order
(`OrderUpdate.status`, lines unnamed). Each statement is (status rank, modified_ms, shipped
evidence and the ship time it proves, see "Ship dating"), evidence being `shipped` True or a
SHIPPED/FINISHED status; a line once shipped stays
shipped (None and False never undo it). `shipped` None on a CLOSED without other evidence counts
as not shipped (a cancellation).

* For a known line a status-only statement is applied like any other (same ordering rule), but
  the line keeps its stored platform SKU, merchant code, quantity and components. A line update
  with only some details (SKU without quantity...) overwrites only what it carries.
* For an unknown line (no detail seen yet) it cannot move stock: it is held in the order state as
  the line's *pending status* (the highest (rank, modified_ms) held, shipped evidence OR-ed with
  the earliest ship time) and
  `needs_detail` asks the caller to fetch the order detail. It is never `unmapped`, never
  deferred, produces no movement. When a detailed statement (a snapshot or a push with SKU and
  quantity) first makes the line known, the line starts from the highest of the detail's own
  status, its pending status and the order-level status (below), as if the detail had carried it.
* An order-level statement applies, at once, to every known line that is not closed (the order's
  lines move together) with the usual ordering rule per line, and is kept as the order's status
  (highest (rank, modified_ms), plus the earliest modified_ms with shipped evidence and the earliest
  ship time proved) for lines
  that become known later. `needs_detail` is set when the order has no known line yet.
  Line-level CLOSED: CLOSED is terminal, so a line closed on its own (partial refund /
  cancellation) stays closed whatever order-level statuses follow, and an order-level CLOSED
  closes every line not already closed. A line that becomes known with a line-level CLOSED at t
  takes shipped evidence only from order-level statements older than t (it had left the order
  before later ones). Known limit: an order-level status that arrives *before* an older
  line-level CLOSED (not shipped) of one of its lines applies to that line (it cannot know the
  line left the order); if it carried shipped evidence the line ships and the late close cannot
  undo it: on_hand is then low by the line's quantity (ATS understated, never overstated) until
  the next stock count.

Ship dating: a SHIP movement's event time is when the goods left, as well as the input tells,
because a stock count between two candidate times counts the shipment in or out (see
stockstream/core/stock.py). Every statement with shipped evidence proves a ship time: the
platform's own (`LineUpdate.shipped_ms`, else `OrderUpdate.shipped_ms`; never later than the
statement) when stated, else the statement's modified_ms. Held statements (pending, order status)
keep the earliest ship time proved (an order-level one concerns a line closed on its own only if
older than the close, as for evidence). SHIP is dated by the earliest ship time proved by what has
been seen when it is emitted: never by the time of an update that only made the line known (a
held ship notice applied when an older PAID snapshot arrives keeps the notice's time). The time
used is kept in the line (`LineState.ship_ms`).

Re-dating: the first shipped evidence seen may state no ship time and be late (a FINISHED or
refund notification without ship time reordered ahead of the shipment; a Douyin status-only push
or a PDD frame before the detail that states the ship time; a reordered JD poll). When a statement
(any rank, stale or not, also about a line closed after shipment) later proves an earlier ship
time t0 than the t1 its SHIP carries, the line takes t0 and emits SHIP_REDATE per component
(event time t0, `previous_event_time_ms` t1, the fulfilment location, the SHIP's quantity; id
``movement_id(platform, shop, order, line, sku, "SHIP_REDATE", t0)``): the stock core moves the
shipment's on_hand delta from t1 to t0, which matters when a stock count lies in between.
`LineState.ship_ms` makes it idempotent: evidence at or after it (a duplicate, a replay of the
same evidence) re-dates nothing; even earlier evidence re-dates again, from the last time used.
An order-level statement re-dates a closed line only if older than the close. Evidence earlier than
the SHIP emitted by the same update just dates that SHIP. What stays late: a shipment no statement
ever dates right (JD never states a ship time: a missed WAIT_GOODS_RECEIVE_CONFIRM poll dates it
by the next poll), lines shipped before ship times were kept (no t1 to move from), and anything
after the order settled. Known limit: SHIP_REDATE takes stock at the fulfilment location of the
update that proves it; if the shop's location changed since the SHIP, the wrong location is
re-dated. Other movements carry the update's modified_ms.

Bundles: a line resolves to components [(master SKU, units per unit)]; each component moves
line quantity x component quantity. Components are resolved once, when the line first needs a
movement, and kept: RELEASE and SHIP later consume exactly what was reserved even if the catalog
changed. An update with a line that needs resolving and cannot be resolved is not applied at all
(state unchanged, `deferred`, `unmapped` lists the codes): re-submit it later (through a retry
stream) and it applies as if it had just arrived.

Crash idempotency: the state keeps, per Kafka source stream (`Origin.stream`), the highest position
(offset, index) that changed this order, and the movements derived at the last `MEMO_PER_STREAM`
positions that produced any. Input at or below that mark is a replay: it gets back exactly the
movements first derived from it (same ids, same origins) and changes nothing, because the crash
may have lost those outputs after the state was saved. A replayed position that produced nothing
first time (duplicate, or deferred) produces nothing again; if it was deferred it is reported
deferred again (never emitted at a passed position: the SKU's origin mark would drop it).

The memo keeps SHIP and SHIP_REDATE event times (a line's ship time moves on when re-dated; its
replayed SHIP must not).

`origin.index` is the base index of this update within its Kafka record: movement i gets
``index = origin.index + i``. Several updates in one record need disjoint, increasing bases
(e.g. ``item_no * 1024``) that are the same when the record is processed again.

Pending statuses and the order status are state like the lines: changing them is a change
(`changed`, origin mark advanced), all-or-nothing with the rest of the update.

`apply_order_update` mutates the state it is given (when `changed`) and returns it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from typing import Callable, Mapping, Optional, Sequence

from stockstream.core.model import LineStatus, LineUpdate, OrderUpdate, SkuComponent
from stockstream.core.movements import Movement, MovementType, Origin, movement_id

# Bound of the replay memory: positions with movements remembered per stream, and streams per
# order (least recently used dropped). An order gets a handful of messages between two commits of
# its input partition; a crash replays at most those.
MEMO_PER_STREAM = 8
MAX_STREAMS = 4

# Which movements a line has emitted: a bit mask (its effect follows from it).
RESERVE_BIT = 1
RELEASE_BIT = 2
SHIP_BIT = 4
# Not an effect (never in `LineState.emitted`; a line may be re-dated several times): marks a
# SHIP_REDATE in the replay memo.
REDATE_BIT = 8
_BIT_TYPE = {
    RESERVE_BIT: MovementType.RESERVE,
    RELEASE_BIT: MovementType.RELEASE,
    SHIP_BIT: MovementType.SHIP,
    REDATE_BIT: MovementType.SHIP_REDATE,
}
_BIT_NAME = {bit: mtype.value for bit, mtype in _BIT_TYPE.items()}  # the type as it enters the id

_CLOSED = int(LineStatus.CLOSED)

# resolve(platform, line) -> components of one unit of the line, or None if unknown.
Resolver = Callable[[str, LineUpdate], Optional[Sequence[SkuComponent]]]


class Effect(IntEnum):
    NONE = 0
    RESERVED = 1
    SHIPPED = 2


def line_effect(status: LineStatus, shipped: Optional[bool], reserve_unpaid: bool) -> Effect:
    """`shipped` None (unknown) counts as not shipped: it only matters for CLOSED."""
    if status is LineStatus.PAID:
        return Effect.RESERVED
    if status is LineStatus.SHIPPED or status is LineStatus.FINISHED:
        return Effect.SHIPPED
    if status is LineStatus.CREATED:
        return Effect.RESERVED if reserve_unpaid else Effect.NONE
    return Effect.SHIPPED if shipped else Effect.NONE  # CLOSED


def _evidence(status: LineStatus, shipped: Optional[bool]) -> bool:
    """Whether a statement proves that the goods left: shipped stays known once known."""
    return shipped is True or status is LineStatus.SHIPPED or status is LineStatus.FINISHED


def _ship_time(status: LineStatus, shipped: Optional[bool], modified_ms: int, stated_ms: Optional[int]) -> Optional[int]:
    """The ship time a statement proves (None: no shipped evidence): the platform's own ship time
    when it states one, else the statement's modified time (the goods had left by then). Never
    later than the statement itself."""
    if not _evidence(status, shipped):
        return None
    return modified_ms if stated_ms is None or stated_ms > modified_ms else stated_ms


def _earliest(a: Optional[int], b: Optional[int]) -> Optional[int]:
    if a is None:
        return b
    return a if b is None or a <= b else b


# A statement about a line: (status rank, modified_ms, ship time it proves or None: no shipped
# evidence). Statements about one line merge to the highest (rank, modified_ms) and the earliest
# ship time (the best evidence of when the goods left).
Statement = tuple[int, int, Optional[int]]
# The order-level status: (rank, modified_ms, earliest modified_ms of an order-level statement with
# shipped evidence or None, earliest ship time those statements prove or None).
OrderStatus = tuple[int, int, Optional[int], Optional[int]]


def _merge_statements(held: Optional[Statement], new: Statement) -> Statement:
    """The highest (rank, modified_ms) of two statements about one line; evidence of either."""
    if held is None:
        return new
    top = held if held[:2] >= new[:2] else new
    return (top[0], top[1], _earliest(held[2], new[2]))


def _merge_order_status(held: Optional[OrderStatus], rank: int, modified_ms: int, ship_ms: Optional[int]) -> OrderStatus:
    evidence_ms = None if ship_ms is None else modified_ms
    if held is None:
        return (rank, modified_ms, evidence_ms, ship_ms)
    top = max(held[:2], (rank, modified_ms))
    return (top[0], top[1], _earliest(held[2], evidence_ms), _earliest(held[3], ship_ms))


def _with_order_status(line: Statement, order: Optional[OrderStatus]) -> Statement:
    """What a line starts from when it becomes known: its own statements (`line`) combined with
    the order-level status. A line closed on its own at t had left the order: later order-level
    statements do not concern it (CLOSED outranks them anyway) and give it no shipped evidence."""
    if order is None:
        return line
    rank, modified_ms, ship_ms = line
    if order[2] is not None and (rank < _CLOSED or order[2] < modified_ms):
        ship_ms = _earliest(ship_ms, order[3])
    if rank < _CLOSED and order[:2] > (rank, modified_ms):
        rank, modified_ms = order[0], order[1]
    return (rank, modified_ms, ship_ms)


def _effect_of(emitted: int) -> Effect:
    if emitted & SHIP_BIT:
        return Effect.SHIPPED
    if emitted & RESERVE_BIT and not emitted & RELEASE_BIT:
        return Effect.RESERVED
    return Effect.NONE


@dataclass(slots=True)
class LineState:
    rank: int  # LineStatus value last applied
    modified_ms: int  # with rank: the ordering key of the last applied update
    quantity: int
    merchant_code: Optional[str]
    platform_sku_id: Optional[str]  # None only if the line's details named a merchant code alone
    emitted: int = 0  # RESERVE_BIT | RELEASE_BIT | SHIP_BIT
    # (master SKU, units for the whole line), fixed when the line first moved stock.
    components: tuple[tuple[str, int], ...] = ()
    # The time its shipment carries: its SHIP's, then its last SHIP_REDATE's (see "Re-dating").
    ship_ms: Optional[int] = None

    @property
    def effect(self) -> Effect:
        return _effect_of(self.emitted)

    @property
    def final(self) -> bool:
        """Nothing this line can still do to stock: closed, or shipped (irreversible)."""
        return self.rank >= _CLOSED or bool(self.emitted & SHIP_BIT)

    def to_list(self) -> list:
        data = [
            self.rank,
            self.modified_ms,
            self.quantity,
            self.emitted,
            self.merchant_code,
            self.platform_sku_id,
            [x for component in self.components for x in component],
        ]
        if self.ship_ms is not None:
            data.append(self.ship_ms)
        return data

    @classmethod
    def from_list(cls, data: Sequence) -> "LineState":
        flat = data[6]
        components = tuple((flat[i], flat[i + 1]) for i in range(0, len(flat), 2))
        # States saved before ship times were kept have 7 items: replays then use the memo's time.
        return cls(data[0], data[1], data[2], data[4], data[5], data[3], components, data[7] if len(data) > 7 else None)


# One memorised position: the movements derived there, as (line_id, sku, type bit, quantity,
# event time, previous event time); everything else of a movement follows from the order and these.
# The event time is None for RESERVE / RELEASE (the entry's time) and set for SHIP and SHIP_REDATE
# (the line's ship time moves on when it is re-dated, a replay must not); the previous time is set
# for SHIP_REDATE only.
MemoItem = tuple[str, str, int, int, Optional[int], Optional[int]]


@dataclass(slots=True)
class MemoEntry:
    offset: int
    index: int
    event_time_ms: int
    location: Optional[str]
    items: tuple[MemoItem, ...]

    def to_list(self) -> list:
        data = [self.offset, self.index, self.event_time_ms, self.location, [x for item in self.items for x in item[:4]]]
        if any(item[4] is not None for item in self.items):
            data.append([x for item in self.items for x in item[4:]])
        return data

    @classmethod
    def from_list(cls, data: Sequence) -> "MemoEntry":
        flat = data[4]
        # Entries saved before SHIP times were memorised have no times: SHIP then takes the line's.
        times = data[5] if len(data) > 5 else [None] * (len(flat) // 2)
        items = tuple(
            (flat[i], flat[i + 1], flat[i + 2], flat[i + 3], times[i // 2], times[i // 2 + 1]) for i in range(0, len(flat), 4)
        )
        return cls(data[0], data[1], data[2], data[3], items)


@dataclass(slots=True)
class StreamMark:
    offset: int
    index: int
    memo: list[MemoEntry] = field(default_factory=list)  # oldest first, at most MEMO_PER_STREAM

    def find(self, offset: int, index: int) -> Optional[MemoEntry]:
        for entry in self.memo:
            if entry.offset == offset and entry.index == index:
                return entry
        return None


@dataclass(slots=True)
class OrderState:
    platform: str
    shop_id: str
    order_id: str
    lines: dict[str, LineState] = field(default_factory=dict)
    marks: dict[str, StreamMark] = field(default_factory=dict)  # least recently changed first
    updated_ms: int = 0  # newest modified_ms applied
    settled: bool = False  # tombstone: see `settle`
    # Statuses of lines not known yet (no detail seen), applied when a detail makes them known.
    pending: dict[str, Statement] = field(default_factory=dict)
    order_status: Optional[OrderStatus] = None  # highest order-level status (see module doc)

    @property
    def channel(self) -> str:
        return f"{self.platform}:{self.shop_id}"

    def to_dict(self) -> dict:
        data: dict = {"p": self.platform, "s": self.shop_id, "o": self.order_id, "t": self.updated_ms}
        if self.lines:
            data["l"] = {line_id: line.to_list() for line_id, line in self.lines.items()}
        if self.marks:
            data["m"] = {
                stream: [mark.offset, mark.index, [entry.to_list() for entry in mark.memo]]
                for stream, mark in self.marks.items()
            }
        if self.settled:
            data["x"] = 1
        if self.pending:
            data["q"] = {
                line_id: [rank, ms, 0] if ship_ms is None else [rank, ms, 1, ship_ms]
                for line_id, (rank, ms, ship_ms) in self.pending.items()
            }
        if self.order_status is not None:
            data["os"] = list(self.order_status)
        return data

    @classmethod
    def from_dict(cls, data: Mapping) -> "OrderState":
        return cls(
            data["p"],
            data["s"],
            data["o"],
            {line_id: LineState.from_list(line) for line_id, line in data.get("l", {}).items()},
            {
                stream: StreamMark(mark[0], mark[1], [MemoEntry.from_list(e) for e in mark[2]])
                for stream, mark in data.get("m", {}).items()
            },
            data["t"],
            bool(data.get("x")),
            {line_id: _pending_from_list(p) for line_id, p in data.get("q", {}).items()},
            _order_status_from_list(data["os"]) if "os" in data else None,
        )


def _pending_from_list(p: Sequence) -> Statement:
    # [rank, ms, evidence] (saved before ship times were kept: the evidence dated by ms) or
    # [rank, ms, 1, ship_ms].
    if len(p) > 3:
        return (p[0], p[1], p[3])
    return (p[0], p[1], p[1] if p[2] else None)


def _order_status_from_list(os: Sequence) -> OrderStatus:
    return (os[0], os[1], os[2], os[3] if len(os) > 3 else os[2])


@dataclass(slots=True)
class OrderResult:
    state: OrderState
    movements: list[Movement]
    changed: bool = False  # the state was modified: save it
    replay: bool = False  # the origin had already been processed by this order
    deferred: bool = False  # not applied: re-submit the update later (through a retry stream)
    unmapped: tuple[str, ...] = ()  # merchant codes (platform SKU id when none) that did not resolve
    # A status was held for lines the order state does not know (a line-level status of an unknown
    # line, or an order-level status while no line is known): fetch the order detail, feed it in.
    needs_detail: bool = False


# --- planning: decide everything before touching the state (all-or-nothing) ----------------------


@dataclass(slots=True)
class _Plan:
    lines: dict[str, LineState] = field(default_factory=dict)  # new line states
    # (line_id, type bits, components)
    emits: list[tuple[str, tuple[int, ...], tuple[tuple[str, int], ...]]] = field(default_factory=list)
    unmapped: list[str] = field(default_factory=list)
    pending: dict[str, Optional[Statement]] = field(default_factory=dict)  # new pending statuses; None: drop
    order_status: Optional[OrderStatus] = None  # the new order status, if it changes
    needs_detail: bool = False
    shipped: set[str] = field(default_factory=set)  # lines whose SHIP this plan emits
    # line_id -> (ship time the emitted SHIP had, earlier ship time now proved): SHIP_REDATE
    redates: dict[str, tuple[int, int]] = field(default_factory=dict)

    @property
    def changes(self) -> bool:
        return bool(self.lines or self.pending or self.order_status is not None)


def _has_details(lu: LineUpdate) -> bool:
    """Enough to make a line known: a quantity and something to resolve the listing by."""
    return lu.quantity is not None and (lu.platform_sku_id is not None or lu.merchant_code is not None)


def _resolve_components(
    resolve: Resolver, platform: str, line: LineUpdate, quantity: int
) -> Optional[tuple[tuple[str, int], ...]]:
    found = resolve(platform, line)
    if found is None:
        return None
    units: dict[str, int] = {}
    for component in found:  # one entry per SKU: movement ids are per line and SKU
        units[component.master_sku] = units.get(component.master_sku, 0) + component.quantity * quantity
    return tuple(units.items())


def _bits(emitted: int, target: Effect, rank: int) -> tuple[int, ...]:
    """The movements (type bits) taking a line that emitted `emitted` to `target`."""
    before = _effect_of(emitted)
    if before is Effect.NONE and not emitted & RELEASE_BIT:
        if target is Effect.RESERVED:
            return (RESERVE_BIT,)
        if target is Effect.SHIPPED:
            return (RESERVE_BIT, SHIP_BIT)
    elif before is Effect.RESERVED:
        if target is Effect.SHIPPED:
            return (SHIP_BIT,)
        if target is Effect.NONE and rank >= _CLOSED:
            return (RELEASE_BIT,)
    return ()


def _move(
    plan: _Plan,
    platform: str,
    line_id: str,
    new: LineState,
    ship_ms: Optional[int],
    source: LineUpdate,
    reserve_unpaid: bool,
    resolve: Resolver,
) -> None:
    """Plan `new` (the line after a statement, still with the bits it had emitted before) and the
    movements that take it there. `ship_ms` is the ship time the line's statements prove (None:
    no shipped evidence): it dates a SHIP emitted now. `source` is what the resolver gets for the
    line's listing."""
    bits = _bits(new.emitted, line_effect(LineStatus(new.rank), ship_ms is not None, reserve_unpaid), new.rank)
    if bits and not new.components:
        resolved = _resolve_components(resolve, platform, source, new.quantity)
        if resolved is None:
            plan.unmapped.append(new.merchant_code or new.platform_sku_id or line_id)
            return
        new.components = resolved
    for bit in bits:
        new.emitted |= bit
    if SHIP_BIT in bits:
        # SHIPPED / FINISHED always carry evidence, so ship_ms is set; the fallback is defensive.
        new.ship_ms = ship_ms if ship_ms is not None else new.modified_ms
        plan.shipped.add(line_id)
    plan.lines[line_id] = new
    if bits:
        plan.emits.append((line_id, bits, new.components))


def _redate(plan: _Plan, line_id: str, line: LineState, statement: Statement, order_level: bool) -> LineState:
    """A statement proving that a shipped line's goods left before the time its SHIP carries:
    the line takes the earlier time, and a SHIP_REDATE is planned unless the SHIP is emitted by
    this very plan (it then just carries the earlier time). Whatever the statement's rank and
    time: a stale statement is still evidence of when the goods left. An order-level statement
    concerns a closed line only if older than the close (as for evidence, see `_with_order_status`).
    Returns the line as it stands after."""
    ship_ms = statement[2]
    if ship_ms is None or not line.emitted & SHIP_BIT or line.ship_ms is None or ship_ms >= line.ship_ms:
        return line  # no evidence, not shipped yet, shipped before ship times were kept, or not earlier
    if order_level and line.rank >= _CLOSED and statement[1] >= line.modified_ms:
        return line
    redated = LineState(
        line.rank, line.modified_ms, line.quantity, line.merchant_code, line.platform_sku_id, line.emitted, line.components, ship_ms
    )
    plan.lines[line_id] = redated
    if line_id not in plan.shipped:
        first = plan.redates.get(line_id)
        plan.redates[line_id] = (line.ship_ms if first is None else first[0], ship_ms)
    return redated


def _step_known(
    plan: _Plan,
    platform: str,
    line_id: str,
    current: LineState,
    statement: Statement,
    lu: Optional[LineUpdate],
    reserve_unpaid: bool,
    resolve: Resolver,
) -> None:
    """A statement about a known line: a line update (`lu`, maybe status-only) or the order's."""
    current = _redate(plan, line_id, current, statement, lu is None)
    rank, modified_ms, ship_ms = statement
    if current.rank >= _CLOSED or (rank, modified_ms) <= (current.rank, current.modified_ms):
        return  # closed (terminal), duplicate or stale
    quantity, code, sku = current.quantity, current.merchant_code, current.platform_sku_id
    if lu is not None:
        if lu.platform_sku_id is not None or lu.merchant_code is not None:
            code, sku = lu.merchant_code, lu.platform_sku_id
        if lu.quantity is not None:
            quantity = lu.quantity
    if lu is None or (lu.platform_sku_id, lu.merchant_code, lu.quantity) != (sku, code, quantity):
        lu = LineUpdate(line_id, sku, code, quantity, LineStatus(rank), ship_ms is not None, lu.listing_id if lu else None)
    new = LineState(rank, modified_ms, quantity, code, sku, current.emitted, current.components, current.ship_ms)
    _move(plan, platform, line_id, new, ship_ms, lu, reserve_unpaid, resolve)


def _plan(state: OrderState, update: OrderUpdate, reserve_unpaid: bool, resolve: Resolver) -> _Plan:
    modified_ms = update.modified_ms
    platform = update.platform
    plan = _Plan()
    order_status = state.order_status
    order_statement: Optional[Statement] = None
    if update.status is not None:
        ship_ms = _ship_time(update.status, update.shipped, modified_ms, update.shipped_ms)
        order_statement = (int(update.status), modified_ms, ship_ms)
        merged_order = _merge_order_status(order_status, *order_statement)
        if merged_order != order_status:
            plan.order_status = order_status = merged_order

    for lu in update.lines:
        line_id = lu.line_id
        stated = lu.shipped_ms if lu.shipped_ms is not None else update.shipped_ms
        statement = (int(lu.status), modified_ms, _ship_time(lu.status, lu.shipped, modified_ms, stated))
        current = plan.lines.get(line_id) or state.lines.get(line_id)
        if current is not None:
            _step_known(plan, platform, line_id, current, statement, lu, reserve_unpaid, resolve)
            continue
        held = plan.pending.get(line_id) or state.pending.get(line_id)
        merged = _merge_statements(held, statement)
        if not _has_details(lu):
            if merged != held:
                plan.pending[line_id] = merged
            plan.needs_detail = True
            continue
        # First detail of the line: it starts from the highest status stated so far.
        rank, start_ms, ship_ms = _with_order_status(merged, order_status)
        if line_id in state.pending:
            plan.pending[line_id] = None
        new = LineState(rank, start_ms, lu.quantity, lu.merchant_code, lu.platform_sku_id)  # type: ignore[arg-type]
        _move(plan, platform, line_id, new, ship_ms, lu, reserve_unpaid, resolve)

    if order_statement is not None:
        # Every known line, in a fixed order (movement order must be the same on replay).
        known = [*state.lines, *(line_id for line_id in plan.lines if line_id not in state.lines)]
        for line_id in known:
            current = plan.lines.get(line_id) or state.lines[line_id]
            _step_known(plan, platform, line_id, current, order_statement, None, reserve_unpaid, resolve)
        if not known:
            plan.needs_detail = True
    return plan


# --- movements ----------------------------------------------------------------------------------


def _movements(
    state: OrderState,
    items: Sequence[MemoItem],
    event_time_ms: int,
    location: Optional[str],
    stream: Optional[str],
    offset: int,
    base_index: int,
) -> list[Movement]:
    platform, shop_id, order_id = state.platform, state.shop_id, state.order_id
    channel = state.channel
    out = []
    for i, (line_id, sku, bit, quantity, at_ms, previous_ms) in enumerate(items):
        if at_ms is None:
            at_ms = event_time_ms
            if bit == SHIP_BIT:  # a memo entry saved before SHIP times were memorised
                line = state.lines.get(line_id)
                if line is not None and line.ship_ms is not None:
                    at_ms = line.ship_ms
        if bit == REDATE_BIT:
            # One per earlier time proved: a line re-dated twice has two, each from the time before.
            mid = movement_id(platform, shop_id, order_id, line_id, sku, _BIT_NAME[bit], at_ms)
        else:
            mid = movement_id(platform, shop_id, order_id, line_id, sku, _BIT_NAME[bit])
        out.append(
            Movement(
                movement_id=mid,
                type=_BIT_TYPE[bit],
                sku=sku,
                quantity=quantity,
                event_time_ms=at_ms,
                location=location if bit == SHIP_BIT or bit == REDATE_BIT else None,
                channel=channel,
                platform=platform,
                reference=order_id,
                line=line_id,
                origin=None if stream is None else Origin(stream, offset, base_index + i),
                previous_event_time_ms=previous_ms,
            )
        )
    return out


def _items(state: OrderState, plan: _Plan) -> list[MemoItem]:
    """The movements of an applied plan (`state` updated with it), in a fixed order."""
    items: list[MemoItem] = []
    for line_id, bits, components in plan.emits:
        for bit in bits:
            # SHIP carries the line's ship time, as it stands once the whole update is applied.
            at_ms = state.lines[line_id].ship_ms if bit == SHIP_BIT else None
            items.extend((line_id, sku, bit, quantity, at_ms, None) for sku, quantity in components)
    for line_id, (previous_ms, ship_ms) in plan.redates.items():
        items.extend((line_id, sku, REDATE_BIT, quantity, ship_ms, previous_ms) for sku, quantity in state.lines[line_id].components)
    return items


def _remember(state: OrderState, origin: Origin, entry: Optional[MemoEntry]) -> None:
    mark = state.marks.pop(origin.stream, None)  # re-inserted last: the dict is in LRU order
    if mark is None:
        mark = StreamMark(origin.offset, origin.index)
        while len(state.marks) >= MAX_STREAMS:
            del state.marks[next(iter(state.marks))]
    elif (origin.offset, origin.index) > (mark.offset, mark.index):
        mark.offset, mark.index = origin.offset, origin.index
    if entry is not None:
        mark.memo.append(entry)
        if len(mark.memo) > MEMO_PER_STREAM:
            del mark.memo[0]
    state.marks[origin.stream] = mark


# --- the entry point ----------------------------------------------------------------------------


def apply_order_update(
    state: Optional[OrderState],
    update: OrderUpdate,
    *,
    resolve: Resolver,
    reserve_unpaid: bool,
    fulfilment_location: str,
    origin: Optional[Origin] = None,
) -> OrderResult:
    """Apply one platform statement about an order. `state` None: the order is new (the result's
    state is then a fresh one; save it only if `changed`). `reserve_unpaid` is the channel's
    policy, `fulfilment_location` where SHIP takes stock from, `origin` the Kafka position of the
    input (None: no replay protection)."""
    if state is None:
        state = OrderState(update.platform, update.shop_id, update.order_id)
    elif (state.platform, state.shop_id, state.order_id) != (update.platform, update.shop_id, update.order_id):
        raise ValueError(
            f"update for {update.platform}:{update.shop_id}:{update.order_id} applied to state of "
            f"{state.platform}:{state.shop_id}:{state.order_id}"
        )
    if state.settled:
        return OrderResult(state, [])

    if origin is not None:
        mark = state.marks.get(origin.stream)
        if mark is not None and (origin.offset, origin.index) <= (mark.offset, mark.index):
            entry = mark.find(origin.offset, origin.index)
            if entry is not None:
                movements = _movements(
                    state, entry.items, entry.event_time_ms, entry.location, origin.stream, entry.offset, entry.index
                )
                return OrderResult(state, movements, replay=True)
            # Nothing remembered: it produced no movements first time (or is older than the memo).
            # Whatever it would do now cannot be emitted at this passed position.
            plan = _plan(state, update, reserve_unpaid, resolve)
            would_change = bool(plan.unmapped) or plan.changes
            return OrderResult(
                state, [], replay=True, deferred=would_change, unmapped=tuple(plan.unmapped), needs_detail=plan.needs_detail
            )

    plan = _plan(state, update, reserve_unpaid, resolve)
    if plan.unmapped:
        return OrderResult(state, [], deferred=True, unmapped=tuple(plan.unmapped), needs_detail=plan.needs_detail)
    if not plan.changes:
        return OrderResult(state, [], needs_detail=plan.needs_detail)  # duplicate or stale: nothing to save

    state.lines.update(plan.lines)
    for line_id, held in plan.pending.items():
        if held is None:
            state.pending.pop(line_id, None)
        else:
            state.pending[line_id] = held
    if plan.order_status is not None:
        state.order_status = plan.order_status
    if update.modified_ms > state.updated_ms:
        state.updated_ms = update.modified_ms
    items = _items(state, plan)
    if origin is None:
        movements = _movements(state, items, update.modified_ms, fulfilment_location, None, 0, 0)
    else:
        entry = None
        if items:
            entry = MemoEntry(origin.offset, origin.index, update.modified_ms, fulfilment_location, tuple(items))
        _remember(state, origin, entry)
        movements = _movements(state, items, update.modified_ms, fulfilment_location, origin.stream, origin.offset, origin.index)
    return OrderResult(state, movements, changed=True, needs_detail=plan.needs_detail)


# --- expiry -------------------------------------------------------------------------------------


def is_settled(state: OrderState, now_ms: int, retention_ms: int) -> bool:
    """Every line is final (closed or shipped) and nothing changed for `retention_ms` (platform
    time). Then no message can move stock any more, except that a *deleted* order would take a
    late duplicate for a new order and reserve + ship it again: so `settle` it into a tombstone,
    and delete tombstones only after the longest time a platform may still re-deliver it.
    A pending status of a line not known yet keeps the order open (its detail would still move
    stock), unless it is a close without shipment (the line would never move stock)."""
    return (
        not state.settled
        and bool(state.lines)
        and all(line.final for line in state.lines.values())
        and all(_closed_unshipped(_with_order_status(held, state.order_status)) for held in state.pending.values())
        and now_ms - state.updated_ms >= retention_ms
    )


def _closed_unshipped(statement: Statement) -> bool:
    return statement[0] >= _CLOSED and statement[2] is None


def settle(state: OrderState) -> OrderState:
    """Shrink a settled order to a tombstone that ignores every further update (mutates)."""
    state.lines.clear()
    state.marks.clear()
    state.pending.clear()
    state.order_status = None
    state.settled = True
    return state
