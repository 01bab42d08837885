"""The event time of SHIP movements: the best evidence of when the goods left, whatever the
delivery order (a stock count between two candidate times depends on it, see stockstream/core/stock.py).

Rules (stockstream/core/orders.py): a statement with shipped evidence proves a ship time, the
platform's own (`LineUpdate.shipped_ms`, else `OrderUpdate.shipped_ms`) when stated, else its
modified time; statements held for a line (pending, order-level) keep the earliest; SHIP is dated
by the earliest ship time proved when it is emitted, never by the time of the unrelated update that
happens to make the line known; evidence of an earlier time arriving after SHIP re-dates it
(SHIP_REDATE from the time used until then); replays give back the same times.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Optional

from hypothesis import given, settings
from hypothesis import strategies as st
from test_core_orders import LOCATION, roundtrip
from test_core_orders_status_only import L0, L1, apply, detailed, ms, status_only, types, upd

from stockstream.core.model import LineStatus, OrderUpdate
from stockstream.core.movements import Movement, MovementType
from stockstream.core.orders import OrderState, apply_order_update
from stockstream.core.stock import StockState, apply_movement

R, S, RD = MovementType.RESERVE, MovementType.SHIP, MovementType.SHIP_REDATE
PAID, SHIPPED, FINISHED, CLOSED = LineStatus.PAID, LineStatus.SHIPPED, LineStatus.FINISHED, LineStatus.CLOSED


def ship_times(*results) -> dict[str, set[int]]:
    out: dict[str, set[int]] = {}
    for r in results:
        for m in r.movements:
            if m.type is S:
                out.setdefault(m.line, set()).add(m.event_time_ms)
    return out


def redates(*results) -> dict[str, set[tuple[int, int]]]:
    """line -> {(previous time, new time)} of the SHIP_REDATE movements."""
    out: dict[str, set[tuple[int, int]]] = {}
    for r in results:
        for m in r.movements:
            if m.type is RD:
                out.setdefault(m.line, set()).add((m.previous_event_time_ms, m.event_time_ms))
    return out


def snapshot(version, status, shipped, *, shipped_ms=None, lines=(L0, L1)):
    return replace(upd(version, *(detailed(line, status, shipped) for line in lines), snapshot=True), shipped_ms=shipped_ms)


# --- examples -----------------------------------------------------------------------------------


def test_in_order_ship_is_dated_by_the_shipping_update():
    a = apply(None, snapshot(1, PAID, False))
    b = apply(a.state, snapshot(3, SHIPPED, True))
    assert ship_times(b) == {"L0": {ms(3)}, "L1": {ms(3)}}
    assert {m.event_time_ms for m in a.movements} == {ms(1)}


def test_finished_first_without_ship_time_is_dated_by_its_own_time_then_redated():
    """JD with the shipped poll reordered after FINISHED: the best evidence first seen is late
    (ATS understated, never overstated); the stale SHIPPED poll then proves the earlier time."""
    a = apply(None, snapshot(1, PAID, False))
    b = apply(a.state, snapshot(6, FINISHED, True))
    assert ship_times(b) == {"L0": {ms(6)}, "L1": {ms(6)}}
    c = apply(b.state, snapshot(3, SHIPPED, True))  # stale: moves no reserve, re-dates the shipment
    assert ship_times(c) == {} and redates(c) == {"L0": {(ms(6), ms(3))}, "L1": {(ms(6), ms(3))}}
    assert types(c) == [(RD, "L0", "SKU-A", 2), (RD, "L0", "SKU-C", 4), (RD, "L1", "SKU-A", 3)]
    assert c.changed and c.state.lines["L0"].rank == int(FINISHED) and c.state.lines["L0"].ship_ms == ms(3)
    m = c.movements[0]
    assert (m.location, m.channel, m.reference, m.line, m.event_time_ms, m.previous_event_time_ms) == (
        "WH-SH", "tmall:shop1", "1234567890123456789", "L0", ms(3), ms(6))


def test_redating_is_idempotent_and_chains_from_the_last_time_used():
    """Douyin: a status-only FINISHED push dates the shipment; details then state ship times."""
    a = apply(None, snapshot(1, PAID, False), offset=0)
    b = apply(a.state, upd(8, status_only("L0", FINISHED, True)), offset=1)
    assert ship_times(b) == {"L0": {ms(8)}}
    c = apply(b.state, upd(9, replace(detailed(L0, FINISHED, True), shipped_ms=ms(5))), offset=2)
    assert redates(c) == {"L0": {(ms(8), ms(5))}}
    again = apply(c.state, upd(9, replace(detailed(L0, FINISHED, True), shipped_ms=ms(5))), offset=3)  # redelivered
    later = apply(again.state, upd(9, replace(detailed(L0, FINISHED, True), shipped_ms=ms(6))), offset=4)  # not earlier
    assert again.movements == later.movements == [] and not again.changed
    d = apply(later.state, upd(4, replace(status_only("L0", SHIPPED, True), shipped_ms=ms(2))), offset=5)
    assert redates(d) == {"L0": {(ms(5), ms(2))}}
    assert {m.movement_id for m in c.movements}.isdisjoint(m.movement_id for m in d.movements)
    # A crash replay of each position gives back its movements, the SHIP at its first time.
    for offset, (update, result) in enumerate([(snapshot(1, PAID, False), a), (upd(8, status_only("L0", FINISHED, True)), b),
                                               (upd(9, replace(detailed(L0, FINISHED, True), shipped_ms=ms(5))), c)]):
        replayed = apply(roundtrip(d.state), update, offset=offset)
        assert replayed.replay and replayed.movements == result.movements
    replayed = apply(roundtrip(d.state), upd(4, replace(status_only("L0", SHIPPED, True), shipped_ms=ms(2))), offset=5)
    assert replayed.movements == d.movements


def test_redating_a_line_closed_after_shipment():
    """Tmall refund after shipment dated by the refund; the consign time comes later. An
    order-level statement newer than a line's own close does not concern it."""
    a = apply(None, snapshot(1, PAID, False))
    b = apply(a.state, upd(7, status_only("L0", CLOSED, True)))
    c = apply(b.state, upd(5, replace(status_only("L0", SHIPPED, True), shipped_ms=ms(3))))
    assert ship_times(b) == {"L0": {ms(7)}} and redates(c) == {"L0": {(ms(7), ms(3))}}
    d = apply(c.state, upd(8, status=FINISHED, shipped=True))  # L1 ships at 8; L0 had left the order
    assert ship_times(d) == {"L1": {ms(8)}} and redates(d) == {}
    e = apply(d.state, upd(2, status=SHIPPED, shipped=True))  # older than the close: about L0 too
    assert redates(e) == {"L0": {(ms(3), ms(2))}, "L1": {(ms(8), ms(2))}}


def test_earlier_evidence_in_the_update_that_ships_dates_the_ship_itself():
    a = apply(None, snapshot(1, PAID, False, lines=(L0,)))
    update = replace(upd(6, status_only("L0", FINISHED, True), status=FINISHED, shipped=True), shipped_ms=ms(4))
    b = apply(a.state, replace(update, lines=(replace(update.lines[0], shipped_ms=ms(5)),)))
    assert ship_times(b) == {"L0": {ms(4)}} and redates(b) == {}


def test_finished_first_with_a_stated_ship_time_is_dated_by_it():
    a = apply(None, snapshot(1, PAID, False))
    b = apply(a.state, snapshot(6, FINISHED, True, shipped_ms=ms(3)))  # PDD shipping_time
    assert ship_times(b) == {"L0": {ms(3)}, "L1": {ms(3)}}
    assert b.state.lines["L0"].ship_ms == ms(3)


def test_a_line_ship_time_wins_over_the_order_one():
    a = apply(None, snapshot(1, PAID, False))
    update = upd(6, replace(detailed(L0, FINISHED, True), shipped_ms=ms(2)), detailed(L1, FINISHED, True))
    b = apply(a.state, replace(update, shipped_ms=ms(4)))
    assert ship_times(b) == {"L0": {ms(2)}, "L1": {ms(4)}}


def test_refund_after_shipment_first_is_dated_by_the_stated_consign_time():
    a = apply(None, snapshot(1, PAID, False))
    b = apply(a.state, upd(7, replace(status_only("L0", CLOSED, True), shipped_ms=ms(3))))  # Tmall refund + consign_time
    assert ship_times(b) == {"L0": {ms(3)}}


def test_a_stated_ship_time_after_the_statement_is_capped_by_it():
    a = apply(None, snapshot(1, PAID, False))
    b = apply(a.state, snapshot(3, SHIPPED, True, shipped_ms=ms(9)))  # clock skew: cannot have shipped later
    assert ship_times(b) == {"L0": {ms(3)}, "L1": {ms(3)}}


def test_a_ship_time_without_shipped_evidence_is_ignored():
    r = apply(None, snapshot(1, PAID, False, shipped_ms=ms(0)))
    assert [m.type for m in r.movements] == [R, R, R] and r.state.lines["L0"].ship_ms is None
    r = apply(r.state, snapshot(2, CLOSED, False, shipped_ms=ms(0)))  # cancelled: released, not shipped
    assert ship_times(r) == {}


def test_held_order_level_ship_frame_is_not_dated_by_the_older_snapshot():
    """PDD: the ship frame arrives before the order's first snapshot (a PAID one, older)."""
    a = apply(None, upd(3, status=SHIPPED, shipped=True), offset=0)
    assert a.movements == [] and a.needs_detail
    b = apply(a.state, snapshot(1, PAID, False), offset=1)
    assert ship_times(b) == {"L0": {ms(3)}, "L1": {ms(3)}}
    assert {m.event_time_ms for m in b.movements if m.type is R} == {ms(1)}


def test_held_line_level_ship_push_is_not_dated_by_the_older_detail():
    """Douyin: a status-only ship push before the order's first (older, PAID) detail."""
    a = apply(None, upd(3, status_only("L0", SHIPPED, True)), offset=0)
    b = apply(a.state, snapshot(1, PAID, False, lines=(L0,)), offset=1)
    assert ship_times(b) == {"L0": {ms(3)}}


def test_held_statements_keep_the_earliest_ship_time():
    a = apply(None, upd(6, status=FINISHED, shipped=True), offset=0)
    b = apply(a.state, upd(3, status=SHIPPED, shipped=True), offset=1)  # older, arrives second
    assert b.changed and b.state.order_status == (int(FINISHED), ms(6), ms(3), ms(3))
    c = apply(b.state, upd(5, status_only("L1", FINISHED, True)), offset=2)
    d = apply(c.state, snapshot(1, PAID, False), offset=3)
    assert ship_times(d) == {"L0": {ms(3)}, "L1": {ms(3)}}


def test_order_level_evidence_after_a_line_left_the_order_does_not_date_it():
    """L1 closed on its own (refund before shipment) at 2; the order shipped at 3 with a stated
    consign time of 3: L1 takes nothing from it, L0 ships at 3."""
    a = apply(None, upd(2, status_only("L1", CLOSED, False)))
    b = apply(a.state, replace(upd(4, status=FINISHED, shipped=True), shipped_ms=ms(3)))
    c = apply(b.state, snapshot(1, PAID, False))
    assert ship_times(c) == {"L0": {ms(3)}}
    assert c.state.lines["L1"].ship_ms is None


def test_replay_gives_back_the_first_ship_time():
    a = apply(None, upd(3, status=SHIPPED, shipped=True), offset=0)
    b = apply(a.state, snapshot(1, PAID, False), offset=1)
    again = apply(roundtrip(b.state), snapshot(1, PAID, False), offset=1)
    assert again.replay and again.movements == b.movements
    assert ship_times(again) == {"L0": {ms(3)}, "L1": {ms(3)}}


def test_state_saved_before_ship_times_still_loads_and_replays():
    a = apply(None, upd(3, status_only("L0", SHIPPED, True)), offset=0)
    old = a.state.to_dict()
    old["q"] = {"L0": [int(SHIPPED), ms(3), 1]}  # the former [rank, ms, evidence]
    held = OrderState.from_dict(old)
    assert held.pending == {"L0": (int(SHIPPED), ms(3), ms(3))}
    b = apply(None, snapshot(1, PAID, False, lines=(L0,)), offset=1)
    old = b.state.to_dict()
    old["l"] = {k: v[:7] for k, v in old["l"].items()}  # lines without ship times
    old["os"] = [int(PAID), ms(1), None]
    state = OrderState.from_dict(old)
    assert state.order_status == (int(PAID), ms(1), None, None)
    c = apply(state, snapshot(3, SHIPPED, True, lines=(L0,)), offset=2)
    assert ship_times(c) == {"L0": {ms(3)}}
    assert roundtrip(c.state).to_dict() == c.state.to_dict()


def test_memo_saved_before_ship_times_were_memorised_still_replays():
    a = apply(None, snapshot(1, PAID, False), offset=0)
    b = apply(a.state, snapshot(3, SHIPPED, True), offset=1)
    old = b.state.to_dict()
    assert [len(entry) for entry in old["m"]["ingest/0"][2]] == [5, 6]  # times kept for SHIP only
    for mark in old["m"].values():
        mark[2] = [entry[:5] for entry in mark[2]]
    again = apply(OrderState.from_dict(old), snapshot(3, SHIPPED, True), offset=1)
    assert again.replay and again.movements == b.movements


# --- any delivery order -------------------------------------------------------------------------


@dataclass(frozen=True)
class Message:
    update: OrderUpdate
    detail: bool  # makes the lines known
    candidate: Optional[int]  # the ship time it proves for both lines (None: no shipped evidence)


def _statement(draw, version: int, status: LineStatus, true_ship_ms: int) -> Message:
    """A statement of `status` at `version` in one of the shapes platforms send, maybe stating the
    (true) ship time."""
    shipped = status is not PAID
    stated = true_ship_ms if shipped and draw(st.booleans()) else None
    shape = draw(st.sampled_from(["snapshot", "order", "lines"]))
    if shape == "snapshot":
        update = snapshot(version, status, shipped, shipped_ms=stated)
    elif shape == "order":
        update = replace(upd(version, status=status, shipped=shipped), shipped_ms=stated)
    else:
        update = upd(version, *(replace(status_only(line.line_id, status, shipped), shipped_ms=stated) for line in (L0, L1)))
    candidate = (stated if stated is not None else ms(version)) if shipped else None
    return Message(update, shape == "snapshot", candidate)


@st.composite
def scenarios(draw) -> tuple[int, list[Message]]:
    """An order paid at 1 and shipped at v_s; what follows: more statements after shipment
    (SHIPPED again, FINISHED, CLOSED after shipment), any of them missing except the first detail."""
    ship_v = draw(st.integers(2, 4))
    true_ship_ms = ms(ship_v)
    messages = [Message(snapshot(1, PAID, False), True, None)]
    if draw(st.booleans()):  # the SHIPPED statement itself (else missed, JD style)
        messages.append(_statement(draw, ship_v, SHIPPED, true_ship_ms))
    version = ship_v
    for status in (SHIPPED, FINISHED, CLOSED):
        if draw(st.booleans()):
            version += draw(st.integers(1, 3))
            messages.append(_statement(draw, version, status, true_ship_ms))
    if len(messages) == 1:
        messages.append(_statement(draw, version + 1, FINISHED, true_ship_ms))
    return true_ship_ms, messages


@settings(max_examples=300, deadline=None)
@given(scenarios(), st.data())
def test_ship_time_is_the_earliest_evidence_seen_and_redated_to_the_earliest_of_all(scenario, data):
    true_ship_ms, messages = scenario
    order = data.draw(st.permutations(range(len(messages))))
    order = order + data.draw(st.lists(st.sampled_from(order), max_size=3))  # redeliveries
    state = None
    results = []
    known = False
    candidates: list[int] = []
    used: Optional[int] = None  # the time the shipment carries: its SHIP's, then its last re-date's
    for offset, i in enumerate(order):
        message = messages[i]
        known = known or message.detail
        if message.candidate is not None:
            candidates.append(message.candidate)
        r = apply(state if state is None else roundtrip(state), message.update, offset=offset)
        state = r.state
        results.append(r)
        shipped_now, redated_now = ship_times(r), redates(r)
        if used is None and known and candidates:
            # The first point where the lines are known and shipment proved: SHIP is emitted here,
            # dated by the earliest ship time proved so far.
            used = min(candidates)
            assert (shipped_now, redated_now) == ({"L0": {used}, "L1": {used}}, {}), offset
        elif used is not None and min(candidates) < used:
            # Later evidence of an earlier time: re-dated from the time used until now.
            assert (shipped_now, redated_now) == ({}, {"L0": {(used, min(candidates))}, "L1": {(used, min(candidates))}}), offset
            used = min(candidates)
        else:
            assert (shipped_now, redated_now) == ({}, {}), offset
    assert used == min(candidates) >= true_ship_ms  # the earliest evidence, never early (oversell)
    if messages[1].candidate is not None and messages[1].update.modified_ms == true_ship_ms and order[:2] == [0, 1]:
        assert redates(*results) == {}  # in order: dated right the first time
    assert state.lines["L0"].ship_ms == state.lines["L1"].ship_ms == used
    # A crash replay of every position gives back the same movements, times included.
    for offset, i in enumerate(order):
        again = apply(roundtrip(state), messages[i].update, offset=offset)
        assert again.movements == results[offset].movements
        assert again.replay or not (again.changed or results[offset].changed)  # past the mark: a no-op


@settings(max_examples=300, deadline=None)
@given(scenarios(), st.data())
def test_stock_counted_between_the_ship_times_matches_the_earliest_evidence(scenario, data):
    """Order core then stock core, with a stock count (true as of its time) somewhere in the
    ledger: on_hand is what the count semantics give with the shipment at the earliest evidenced
    time, whatever the delivery order. That is exact when the evidence includes the true time,
    and never above the truth otherwise (a missed statement: ATS understated, never overstated)."""
    true_ship_ms, messages = scenario
    state = None
    movements: list[Movement] = []
    for offset, i in enumerate(data.draw(st.permutations(range(len(messages))))):
        r = apply(state, messages[i].update, offset=offset)
        state = r.state
        movements += r.movements
    earliest = min(m.candidate for m in messages if m.candidate is not None)
    count_ms = data.draw(st.integers(ms(0), ms(14)))
    shipped = {"SKU-A": 2 + 3, "SKU-C": 4}  # L0 (SET x2) and L1 (A x3)
    receipts = [Movement(f"in-{sku}", MovementType.RECEIPT, sku, 100, ms(0), LOCATION) for sku in shipped]
    counts = [
        Movement(f"count-{sku}", MovementType.STOCK_COUNT, sku, 100 - (units if true_ship_ms <= count_ms else 0), count_ms, LOCATION)
        for sku, units in shipped.items()
    ]
    at = data.draw(st.integers(0, len(movements)))
    stock = {sku: StockState(sku) for sku in shipped}
    for m in receipts + movements[:at] + counts + movements[at:]:
        apply_movement(stock[m.sku], m)
    for sku, units in shipped.items():
        oracle = 100 - (units if true_ship_ms <= count_ms else 0) - (units if earliest > count_ms else 0)
        assert (stock[sku].locations[LOCATION].on_hand, stock[sku].reserved) == (oracle, {})
        assert oracle <= 100 - units and (earliest > true_ship_ms or oracle == 100 - units)


def test_ship_event_time_per_component_of_a_bundle():
    a = apply(None, upd(3, status=FINISHED, shipped=True))
    b = apply(a.state, snapshot(1, PAID, False, lines=(L0,)))
    assert types(b) == [(R, "L0", "SKU-A", 2), (R, "L0", "SKU-C", 4), (S, "L0", "SKU-A", 2), (S, "L0", "SKU-C", 4)]
    assert [m.event_time_ms for m in b.movements] == [ms(1), ms(1), ms(3), ms(3)]


def test_apply_without_origin_dates_ship_the_same_way():
    r = apply_order_update(
        None, snapshot(6, FINISHED, True, shipped_ms=ms(3)), resolve=lambda p, lu: None, reserve_unpaid=False,
        fulfilment_location="X",
    )
    assert r.deferred  # nothing resolvable: nothing emitted, nothing dated
    a = apply(None, snapshot(6, FINISHED, True, shipped_ms=ms(3)))
    assert {m.type: m.event_time_ms for m in a.movements} == {R: ms(6), S: ms(3)}
