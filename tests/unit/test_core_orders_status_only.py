"""Status-only statements (notifications without line details) against a brute-force oracle.

Two kinds of history, both delivered in any order with duplicates:

* independent lines (the histories of test_core_orders): every push is either detailed (SKU,
  quantity) or status-only; full snapshots at some versions, and one at the end when some line
  would otherwise never be seen in detail (the detail fetch `needs_detail` asks for);
* an order flow: the order walks CREATED -> PAID -> SHIPPED -> FINISHED (a sub-sequence), maybe
  ending CLOSED; each order step is an order-level status (`OrderUpdate.status`, no lines) plus
  optional per-line pushes; a line may close on its own (partial refund) and leave the flow.
  Order-level statuses carrying shipment evidence are not generated once a line closed on its own
  before shipment (the known limit in stockstream/core/orders.py: they are then per-line pushes).

Oracle: each line's true final (status, shipped) gives its final effect; the net reserved and
shipped per line and SKU must equal it, each shipment ends up dated (SHIP, moved by SHIP_REDATEs)
by the first version that showed the line shipped (messages state no ship time: each proves
shipment at its own time), movement ids are unique, a status-only message about
lines the state does not know never moves stock and is never deferred, and a crash replay gives
back exactly the original movements.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st
from test_core_orders import (
    CATALOG,
    CATALOG_ROWS,
    COMPONENTS,
    FORWARD,
    HEAVY,
    LISTINGS,
    LOCATION,
    MEMO_PER_STREAM,
    ORDER,
    PLATFORM,
    SHOP,
    STREAM,
    deliveries,
    histories,
    key,
    ship_dates,
    roundtrip,
    run,
)

from stockstream.core.catalog import Catalog
from stockstream.core.model import LineStatus, LineUpdate, OrderUpdate
from stockstream.core.movements import MovementType, Origin
from stockstream.core.orders import Effect, OrderState, apply_order_update, is_settled, line_effect


def ms(version: int) -> int:
    return 1_000_000 + 1000 * version


@dataclass(frozen=True)
class Line:
    line_id: str
    code: str | None
    quantity: int


@dataclass(frozen=True)
class Scenario:
    lines: tuple[Line, ...]
    final: tuple[tuple[LineStatus, bool], ...]  # each line's true final (status, shipped)
    messages: tuple[OrderUpdate, ...]  # in platform order
    ship_ms: tuple[int | None, ...]  # each line's true ship time: the first version showing it shipped


def first_shipped(ship_ms: list, i: int, state: tuple[LineStatus, bool], version: int) -> None:
    if ship_ms[i] is None and line_effect(*state, False) is Effect.SHIPPED:
        ship_ms[i] = ms(version)


def detailed(line: Line, status: LineStatus, shipped: bool) -> LineUpdate:
    return LineUpdate(line.line_id, LISTINGS[line.code], line.code, line.quantity, status, shipped)


def status_only(line_id: str, status: LineStatus, shipped: bool | None) -> LineUpdate:
    return LineUpdate(line_id, None, None, None, status, shipped)


def vague(draw, status: LineStatus, shipped: bool) -> bool | None:
    """What a notification may say about shipment: the truth, or nothing when nothing is lost by
    it (None counts as not shipped, and SHIPPED / FINISHED imply shipped)."""
    if shipped and status is LineStatus.CLOSED:
        return True
    return draw(st.sampled_from([shipped, None]))


def order_level(version: int, status: LineStatus, shipped: bool | None) -> OrderUpdate:
    return OrderUpdate(PLATFORM, SHOP, ORDER, ms(version), (), status=status, shipped=shipped)


def with_final_snapshot(lines, messages, current, last_version) -> list[OrderUpdate]:
    """Adds the detail fetch at the end when some line was never seen in detail."""
    seen = {lu.line_id for m in messages for lu in m.lines if lu.quantity is not None}
    if seen >= {line.line_id for line in lines}:
        return messages
    snap = tuple(detailed(line, *state) for line, state in zip(lines, current))
    return [*messages, OrderUpdate(PLATFORM, SHOP, ORDER, ms(last_version), snap, snapshot=True)]


@st.composite
def independent_lines(draw) -> Scenario:
    history = draw(histories())
    lines = tuple(Line(h.line_id, h.code, h.quantity) for h in history.lines)
    messages: list[OrderUpdate] = []
    position = [-1] * len(lines)
    current: list = [None] * len(lines)
    ship_ms: list = [None] * len(lines)
    for version, moved in enumerate(history.steps):
        position[moved] += 1
        status, shipped = current[moved] = history.lines[moved].path[position[moved]]
        first_shipped(ship_ms, moved, current[moved], version)
        line = lines[moved]
        if draw(st.booleans()):
            lu = detailed(line, status, shipped)
        else:
            lu = status_only(line.line_id, status, vague(draw, status, shipped))
        messages.append(OrderUpdate(PLATFORM, SHOP, ORDER, ms(version), (lu,)))
        if version in history.snapshot_at:
            snap = tuple(detailed(ln, *state) for ln, state in zip(lines, current) if state is not None)
            messages.append(OrderUpdate(PLATFORM, SHOP, ORDER, ms(version), snap, snapshot=True))
    messages = with_final_snapshot(lines, messages, current, len(history.steps) - 1)
    return Scenario(lines, tuple(h.path[-1] for h in history.lines), tuple(messages), tuple(ship_ms))


@st.composite
def order_flows(draw) -> Scenario:
    path = draw(st.lists(st.sampled_from(FORWARD), unique=True, min_size=1, max_size=4).map(sorted))
    order_closes = draw(st.booleans())
    n = draw(st.integers(1, 3))
    lines = tuple(Line(f"L{i}", draw(st.sampled_from(list(COMPONENTS))), draw(st.integers(1, 3))) for i in range(n))
    # A line may close on its own after order step k (shipped if the order had shipped by then).
    leave_at = [draw(st.none() | st.integers(0, len(path) - 1)) for _ in lines]
    events: list[tuple] = []
    for k, status in enumerate(path):
        events.append(("order", status, status >= LineStatus.SHIPPED))
        leaving = [i for i in range(n) if leave_at[i] == k]
        for i in draw(st.permutations(leaving)):
            events.append(("leave", i, status >= LineStatus.SHIPPED))
    if order_closes:
        events.append(("order", LineStatus.CLOSED, path[-1] >= LineStatus.SHIPPED))
    # The known limit: no order-level shipment evidence once a line closed on its own unshipped.
    left_unshipped = False

    messages: list[OrderUpdate] = []
    current: list = [None] * n
    ship_ms: list = [None] * n
    in_flow = [True] * n
    snapshot_at = draw(st.sets(st.integers(0, len(events) - 1)))
    for version, event in enumerate(events):
        if event[0] == "order":
            _, status, shipped = event
            movers = [i for i in range(n) if in_flow[i]]
            for i in movers:
                current[i] = (status, shipped)
                first_shipped(ship_ms, i, current[i], version)
            evidence = shipped or status in (LineStatus.SHIPPED, LineStatus.FINISHED)
            whole = not (left_unshipped and evidence) and draw(st.integers(0, 3)) > 0
            if whole:
                messages.append(order_level(version, status, vague(draw, status, shipped)))
            for i in movers:
                kinds = ["none", "status", "detail"] if whole else ["status", "detail"]
                kind = draw(st.sampled_from(kinds))
                if kind == "status":
                    lu = status_only(lines[i].line_id, status, vague(draw, status, shipped))
                elif kind == "detail":
                    lu = detailed(lines[i], status, shipped)
                else:
                    continue
                messages.append(OrderUpdate(PLATFORM, SHOP, ORDER, ms(version), (lu,)))
        else:
            _, i, shipped = event
            in_flow[i] = False
            left_unshipped = left_unshipped or not shipped
            current[i] = (LineStatus.CLOSED, shipped)
            first_shipped(ship_ms, i, current[i], version)
            if draw(st.booleans()):
                lu = detailed(lines[i], LineStatus.CLOSED, shipped)
            else:
                lu = status_only(lines[i].line_id, LineStatus.CLOSED, vague(draw, LineStatus.CLOSED, shipped))
            messages.append(OrderUpdate(PLATFORM, SHOP, ORDER, ms(version), (lu,)))
        if version in snapshot_at:
            snap = tuple(detailed(ln, *state) for ln, state in zip(lines, current))
            messages.append(OrderUpdate(PLATFORM, SHOP, ORDER, ms(version), snap, snapshot=True))
    messages = with_final_snapshot(lines, messages, current, len(events) - 1)
    return Scenario(lines, tuple(current), tuple(messages), tuple(ship_ms))


scenarios = st.one_of(independent_lines(), order_flows())


# --- oracle and checks --------------------------------------------------------------------------


def oracle(scenario: Scenario, reserve_unpaid: bool) -> tuple[Counter, Counter]:
    """Net reserved and shipped per (line, SKU) from each line's true final state."""
    reserved: Counter = Counter()
    shipped: Counter = Counter()
    for line, final in zip(scenario.lines, scenario.final):
        effect = line_effect(*final, reserve_unpaid)
        for sku, per_unit in COMPONENTS[line.code]:
            if effect is Effect.RESERVED:
                reserved[(line.line_id, sku)] += per_unit * line.quantity
            elif effect is Effect.SHIPPED:
                shipped[(line.line_id, sku)] += per_unit * line.quantity
    return +reserved, +shipped


def per_line_net(movements, scenario: Scenario) -> tuple[Counter, Counter]:
    units = {
        (line.line_id, sku): per_unit * line.quantity for line in scenario.lines for sku, per_unit in COMPONENTS[line.code]
    }
    reserved: Counter = Counter()
    shipped: Counter = Counter()
    seen = set()
    for m in movements:
        k = (m.line, m.sku)
        assert m.quantity == units[k]
        if m.type is MovementType.SHIP_REDATE:
            continue  # only the date of a shipment (see ship_dates)
        if m.type is MovementType.RESERVE:
            reserved[k] += m.quantity
            seen.add(k)
        else:
            assert k in seen, "SHIP / RELEASE before the RESERVE it consumes"
            reserved[k] -= m.quantity
            if m.type is MovementType.SHIP:
                assert m.location == LOCATION
                shipped[k] += m.quantity
    assert all(v >= 0 for v in reserved.values()), reserved
    return +reserved, +shipped


def unknown_to(state: OrderState | None, update: OrderUpdate) -> bool:
    """A status-only message about nothing the state knows in detail."""
    known = state.lines if state is not None else {}
    if any(lu.quantity is not None for lu in update.lines):
        return False
    return not any(lu.line_id in known for lu in update.lines) and (update.status is None or not known)


def check_convergence(scenario: Scenario, state: OrderState, movements, reserve_unpaid: bool) -> None:
    ids = [m.movement_id for m in movements]
    assert len(ids) == len(set(ids))
    assert per_line_net(movements, scenario) == oracle(scenario, reserve_unpaid)
    assert ship_dates(movements) == {
        (line.line_id, sku): ship_ms
        for line, ship_ms in zip(scenario.lines, scenario.ship_ms)
        if ship_ms is not None
        for sku, _ in COMPONENTS[line.code]
    }
    for line, final in zip(scenario.lines, scenario.final):
        assert state.lines[line.line_id].effect is line_effect(*final, reserve_unpaid)
        assert (state.lines[line.line_id].quantity, state.lines[line.line_id].merchant_code) == (line.quantity, line.code)
    assert state.pending == {}  # every line got its detail
    assert roundtrip(state).to_dict() == state.to_dict()


# --- properties ---------------------------------------------------------------------------------


@HEAVY
@given(st.data(), scenarios, st.booleans())
def test_any_delivery_converges_to_the_oracle(data, scenario, reserve_unpaid):
    msgs = list(scenario.messages)
    state, in_order, _ = run(msgs, reserve_unpaid=reserve_unpaid)
    check_convergence(scenario, state, in_order, reserve_unpaid)

    delivery = data.draw(deliveries(msgs))
    state = None
    got = []
    for offset, update in enumerate(delivery):
        before = None if state is None else state.to_dict()
        blind = unknown_to(state, update)
        result = apply_order_update(
            state,
            update,
            resolve=CATALOG.resolve,
            reserve_unpaid=reserve_unpaid,
            fulfilment_location=LOCATION,
            origin=Origin(STREAM, offset, 0),
        )
        assert not result.deferred and not result.unmapped and not result.replay
        if blind:  # held, not lost, not quarantined, no stock moved
            assert result.movements == [] and result.needs_detail
        if result.movements:
            assert result.changed
        if not result.changed:
            assert (None if state is None else result.state.to_dict()) == before
        state = result.state
        got.extend(result.movements)
    check_convergence(scenario, state, got, reserve_unpaid)

    # Any delivery differs from another at most by a RESERVE + RELEASE pair (a line whose detail
    # arrives after its close is never reserved): the SHIP movements are the same, ids included.
    assert {m.movement_id: key(m) for m in got if m.type is MovementType.SHIP} == {
        m.movement_id: key(m) for m in in_order if m.type is MovementType.SHIP
    }
    same_ids = {m.movement_id for m in got} & {m.movement_id for m in in_order}
    assert {m.movement_id: key(m) for m in got if m.movement_id in same_ids} == {
        m.movement_id: key(m) for m in in_order if m.movement_id in same_ids
    }


@HEAVY
@given(st.data(), scenarios, st.booleans())
def test_crash_replay_returns_the_original_movements(data, scenario, reserve_unpaid):
    delivery = data.draw(deliveries(list(scenario.messages)))
    _, _, reference = run(delivery, reserve_unpaid=reserve_unpaid)

    saved = data.draw(st.integers(0, len(delivery) - 1))
    resume = data.draw(st.integers(max(0, saved + 1 - MEMO_PER_STREAM), saved + 1))
    state, _, _ = run(delivery[: saved + 1], reserve_unpaid=reserve_unpaid)
    state = roundtrip(state)
    before = state.to_dict()
    for offset in range(resume, saved + 1):
        result = apply_order_update(
            state,
            delivery[offset],
            resolve=CATALOG.resolve,
            reserve_unpaid=reserve_unpaid,
            fulfilment_location=LOCATION,
            origin=Origin(STREAM, offset, 0),
        )
        assert not result.changed and not result.deferred
        assert result.movements == reference[offset].movements
        if reference[offset].changed:
            assert result.replay
        assert state.to_dict() == before

    state, _, rest = run(delivery[saved + 1 :], reserve_unpaid=reserve_unpaid, state=state, first_offset=saved + 1)
    assert [r.movements for r in rest] == [r.movements for r in reference[saved + 1 :]]
    final, _, _ = run(delivery, reserve_unpaid=reserve_unpaid)
    assert state.to_dict() == final.to_dict()


@HEAVY
@given(st.data(), scenarios, st.booleans(), st.sets(st.sampled_from(["A", "B2", "SET", None])))
def test_unmapped_codes_defer_but_status_only_news_never_does(data, scenario, reserve_unpaid, missing):
    partial = Catalog.from_rows([row for row in CATALOG_ROWS if row[2] not in missing])
    delivery = data.draw(deliveries(list(scenario.messages)))
    state = None
    movements = []
    deferred = []
    for offset, update in enumerate(delivery):
        blind = unknown_to(state, update)
        result = apply_order_update(
            state,
            update,
            resolve=partial.resolve,
            reserve_unpaid=reserve_unpaid,
            fulfilment_location=LOCATION,
            origin=Origin(STREAM, offset, 0),
        )
        assert None not in result.unmapped
        if blind:
            assert not result.deferred and result.movements == []
        if result.deferred:
            assert set(result.unmapped) <= {c if c is not None else LISTINGS[None] for c in missing}
            deferred.append(update)
        state = result.state
        movements.extend(result.movements)
    state, retried, results = run(deferred, reserve_unpaid=reserve_unpaid, state=state, stream="retry/0")
    assert not any(r.deferred for r in results)
    check_convergence(scenario, state, movements + retried, reserve_unpaid)


# --- examples -----------------------------------------------------------------------------------


def upd(version, *lines, status=None, shipped=None, snapshot=False):
    return OrderUpdate(PLATFORM, SHOP, ORDER, ms(version), tuple(lines), snapshot=snapshot, status=status, shipped=shipped)


def apply(state, update, catalog=CATALOG, reserve_unpaid=False, offset=None):
    return apply_order_update(
        state,
        update,
        resolve=catalog.resolve,
        reserve_unpaid=reserve_unpaid,
        fulfilment_location=LOCATION,
        origin=None if offset is None else Origin(STREAM, offset, 0),
    )


def types(result):
    return [(m.type, m.line, m.sku, m.quantity) for m in result.movements]


L0 = Line("L0", "SET", 2)
L1 = Line("L1", "A", 3)
R, S, X = MovementType.RESERVE, MovementType.SHIP, MovementType.RELEASE


def test_status_only_on_a_known_line_keeps_its_details():
    r = apply(None, upd(1, detailed(L0, LineStatus.PAID, False)))
    assert types(r) == [(R, "L0", "SKU-A", 2), (R, "L0", "SKU-C", 4)]
    r = apply(r.state, upd(2, status_only("L0", LineStatus.SHIPPED, None)))
    assert types(r) == [(S, "L0", "SKU-A", 2), (S, "L0", "SKU-C", 4)]
    line = r.state.lines["L0"]
    assert (line.platform_sku_id, line.merchant_code, line.quantity) == ("300", "SET", 2)
    assert line.components == (("SKU-A", 2), ("SKU-C", 4))
    assert (line.rank, line.modified_ms) == (LineStatus.SHIPPED, ms(2))


def test_status_only_resolves_a_known_line_that_had_not_moved_yet():
    r = apply(None, upd(1, detailed(L1, LineStatus.CREATED, False)))
    assert r.movements == [] and r.changed
    r = apply(r.state, upd(2, status_only("L1", LineStatus.PAID, None)))
    assert types(r) == [(R, "L1", "SKU-A", 3)] and not r.needs_detail
    # Unmapped then: the stored merchant code is reported, never None.
    r = apply(None, upd(1, detailed(L1, LineStatus.CREATED, False)), catalog=Catalog())
    r = apply(r.state, upd(2, status_only("L1", LineStatus.PAID, None)), catalog=Catalog())
    assert r.deferred and r.unmapped == ("A",)


@pytest.mark.parametrize("detail_first", [False, True])
def test_pending_line_status_applies_when_the_detail_arrives(detail_first):
    notice = upd(3, status_only("L0", LineStatus.SHIPPED, None))
    detail = upd(1, detailed(L0, LineStatus.PAID, False), snapshot=True)
    first, second = (detail, notice) if detail_first else (notice, detail)
    a = apply(None, first, offset=0)
    if not detail_first:
        assert a.movements == [] and a.changed and a.needs_detail and not a.deferred and a.unmapped == ()
        assert a.state.lines == {} and a.state.pending == {"L0": (int(LineStatus.SHIPPED), ms(3), ms(3))}
        assert roundtrip(a.state).to_dict() == a.state.to_dict()
    b = apply(a.state, second, offset=1)
    moved = sorted(types(a) + types(b))
    assert moved == sorted([(R, "L0", "SKU-A", 2), (R, "L0", "SKU-C", 4), (S, "L0", "SKU-A", 2), (S, "L0", "SKU-C", 4)])
    assert b.state.pending == {} and b.state.lines["L0"].rank == LineStatus.SHIPPED
    # Shipped as the notice said, never at the older snapshot's time.
    assert {m.event_time_ms for m in a.movements + b.movements if m.type is S} == {ms(3)}


def test_pending_keeps_the_highest_status_and_shipment_evidence():
    r = apply(None, upd(2, status_only("L0", LineStatus.SHIPPED, None)))
    r = apply(r.state, upd(1, status_only("L0", LineStatus.PAID, False)))
    assert not r.changed and r.needs_detail  # lower: nothing to keep, detail still wanted
    r = apply(r.state, upd(5, status_only("L0", LineStatus.CLOSED, None)))
    # Refunded after shipment; the shipment is dated by the earliest statement that proved it.
    assert r.state.pending == {"L0": (int(LineStatus.CLOSED), ms(5), ms(2))}
    r = apply(r.state, upd(6, detailed(L0, LineStatus.CLOSED, True), snapshot=True))
    assert sorted(types(r)) == sorted([(R, "L0", "SKU-A", 2), (R, "L0", "SKU-C", 4), (S, "L0", "SKU-A", 2), (S, "L0", "SKU-C", 4)])
    assert {m.type: m.event_time_ms for m in r.movements} == {R: ms(6), S: ms(2)}


def test_order_level_status_before_any_detail_is_held_then_applied():
    r = apply(None, upd(2, status=LineStatus.PAID, shipped=False), offset=0)
    assert r.movements == [] and r.changed and r.needs_detail and r.unmapped == () and not r.deferred
    assert r.state.order_status == (int(LineStatus.PAID), ms(2), None, None)
    assert roundtrip(r.state).to_dict() == r.state.to_dict()
    r = apply(r.state, upd(1, detailed(L0, LineStatus.CREATED, False), detailed(L1, LineStatus.CREATED, False), snapshot=True), offset=1)
    assert types(r) == [(R, "L0", "SKU-A", 2), (R, "L0", "SKU-C", 4), (R, "L1", "SKU-A", 3)]
    assert not r.needs_detail
    r = apply(r.state, upd(3, status=LineStatus.SHIPPED, shipped=True), offset=2)
    assert types(r) == [(S, "L0", "SKU-A", 2), (S, "L0", "SKU-C", 4), (S, "L1", "SKU-A", 3)]
    assert not r.needs_detail


def test_a_line_closed_on_its_own_stays_closed():
    r = apply(None, upd(1, detailed(L0, LineStatus.PAID, False), detailed(L1, LineStatus.PAID, False), snapshot=True))
    r = apply(r.state, upd(2, status_only("L1", LineStatus.CLOSED, False)))  # partial refund before shipment
    assert types(r) == [(X, "L1", "SKU-A", 3)]
    r = apply(r.state, upd(3, status=LineStatus.SHIPPED, shipped=True))
    assert types(r) == [(S, "L0", "SKU-A", 2), (S, "L0", "SKU-C", 4)]
    r = apply(r.state, upd(4, status=LineStatus.CLOSED, shipped=True))  # the rest refunded after shipment
    assert r.movements == [] and r.state.lines["L1"].modified_ms == ms(2)
    assert r.state.lines["L0"].rank == LineStatus.CLOSED and r.state.lines["L0"].effect is Effect.SHIPPED


def test_a_line_closed_on_its_own_takes_no_later_order_evidence_when_it_becomes_known():
    r = apply(None, upd(2, status_only("L1", LineStatus.CLOSED, False)))
    r = apply(r.state, upd(3, status=LineStatus.SHIPPED, shipped=True))
    r = apply(r.state, upd(4, status=LineStatus.CLOSED, shipped=True))
    r = apply(r.state, upd(1, detailed(L0, LineStatus.PAID, False), detailed(L1, LineStatus.PAID, False), snapshot=True))
    assert sorted(types(r)) == sorted([(R, "L0", "SKU-A", 2), (R, "L0", "SKU-C", 4), (S, "L0", "SKU-A", 2), (S, "L0", "SKU-C", 4)])
    assert r.state.lines["L1"].effect is Effect.NONE and r.state.lines["L1"].rank == LineStatus.CLOSED


def test_known_limit_late_older_line_close_after_order_shipment_is_conservative():
    r = apply(None, upd(1, detailed(L0, LineStatus.PAID, False), detailed(L1, LineStatus.PAID, False), snapshot=True))
    r = apply(r.state, upd(3, status=LineStatus.SHIPPED, shipped=True))  # arrives first
    r = apply(r.state, upd(2, status_only("L1", LineStatus.CLOSED, False)))  # L1 had left before
    # L1 was shipped by the order-level status and stays shipped: on_hand understated, never ATS overstated.
    assert r.movements == [] and r.state.lines["L1"].effect is Effect.SHIPPED


def test_settling_waits_for_pending_lines_that_would_still_move_stock():
    r = apply(None, upd(1, detailed(L0, LineStatus.PAID, False)))
    r = apply(r.state, upd(2, detailed(L0, LineStatus.CLOSED, False)))
    state = r.state
    assert is_settled(state, 10**12, 0)
    state = apply(state, upd(3, status_only("L1", LineStatus.PAID, None))).state
    assert not is_settled(state, 10**12, 0)
    state = apply(state, upd(4, status_only("L1", LineStatus.CLOSED, None))).state
    assert is_settled(state, 10**12, 0)


def test_replay_of_a_held_status_changes_nothing_and_still_asks_for_detail():
    r = apply(None, upd(2, status_only("L0", LineStatus.PAID, None)), offset=5)
    again = apply(roundtrip(r.state), upd(2, status_only("L0", LineStatus.PAID, None)), offset=5)
    assert again.replay and not again.changed and not again.deferred and again.needs_detail and again.movements == []


# --- through the stream -------------------------------------------------------------------------


def test_normalizer_holds_a_pdd_frame_asks_for_detail_then_reserves_from_the_snapshot():
    import json

    from connectors import pdd
    from connectors.simulated import example_order
    from schemas.batches import decode_movements, encode_ingest
    from stockstream.settings import Settings
    from streams.normalize import IdentityCatalog, Normalizer

    class Store(dict):
        def put(self, key, value):
            self[key] = value

    order = example_order("pdd", LineStatus.PAID)
    frame = json.dumps(pdd.ws_frame(order, "pdd_trade_TradeConfirmed", 1001)).encode()
    detail = json.dumps(pdd.order_information_response(order)).encode()
    records = [
        {
            "topic": "raw.pdd",
            "partition": 0,
            "offset": offset,
            "timestamp_ms": 0,
            "key": order.order_id.encode(),
            "value": value,
            "headers": {"kind": kind, "shop": order.shop_id},
        }
        for offset, (kind, value) in enumerate([("frame", frame), ("order", detail)])
    ]
    normalizer = Normalizer(Settings(partitions=2), IdentityCatalog())
    store = Store()
    first = normalizer.process(encode_ingest(records[:1]), 0, store)
    assert first.quarantined == [] and first.movements == 0
    assert first.detail_requests == [("pdd", order.shop_id, order.order_id)]
    second = normalizer.process(encode_ingest(records[1:]), 0, store)
    assert second.quarantined == [] and second.detail_requests == []
    moved = [m for _, batch in second.movement_batches for m in decode_movements(batch)]
    assert sorted((m.type, m.sku, m.quantity) for m in moved) == [(R, "MC-001", 1), (R, "MC-002", 2)]
