"""Order line state machine against a brute-force oracle computed from each line's history.

Histories: every line walks a sub-sequence of CREATED -> PAID -> SHIPPED -> FINISHED, maybe ending
CLOSED (shipped or not); each step is one order version (increasing modified_ms). Messages: a
per-line push for every step, plus full snapshots at some versions. Deliveries: any permutation,
with duplicates.

Ship dates: no message states a ship time, so each proves shipment at its own modified time; in
any delivery a shipped line ends up dated (SHIP, moved by SHIP_REDATEs) by the first version that
showed it shipped, as in-order delivery dates it.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stockstream.core.catalog import Catalog
from stockstream.core.model import LineStatus, LineUpdate, OrderUpdate
from stockstream.core.movements import MovementType, Origin
from stockstream.core.orders import (
    MAX_STREAMS,
    MEMO_PER_STREAM,
    Effect,
    OrderState,
    apply_order_update,
    is_settled,
    line_effect,
    settle,
)

# Deterministic in CI; STOCKSTREAM_HYPOTHESIS_RANDOM=1 explores new examples locally.
DERANDOMIZE = not os.environ.get("STOCKSTREAM_HYPOTHESIS_RANDOM")
HEAVY = settings(max_examples=300, derandomize=DERANDOMIZE, deadline=None, suppress_health_check=[HealthCheck.too_slow])

PLATFORM, SHOP, ORDER = "tmall", "shop1", "1234567890123456789"
CHANNEL = f"{PLATFORM}:{SHOP}"
LOCATION = "WH-SH"
STREAM = "ingest/0"

CATALOG_ROWS = [
    (PLATFORM, "100", "A", "SKU-A", 1),
    (PLATFORM, "200", "B2", "SKU-B", 2),  # one unit of the listing is two SKU-B
    (PLATFORM, "300", "SET", "SKU-A", 1),  # bundle: SKU-A + 2 x SKU-C
    (PLATFORM, "300", "SET", "SKU-C", 2),
    (PLATFORM, "400", None, "SKU-D", 1),  # no merchant code: resolved by platform SKU id
]
CATALOG = Catalog.from_rows(CATALOG_ROWS)
LISTINGS = {"A": "100", "B2": "200", "SET": "300", None: "400"}  # merchant code -> platform sku id
COMPONENTS = {"A": [("SKU-A", 1)], "B2": [("SKU-B", 2)], "SET": [("SKU-A", 1), ("SKU-C", 2)], None: [("SKU-D", 1)]}

FORWARD = (LineStatus.CREATED, LineStatus.PAID, LineStatus.SHIPPED, LineStatus.FINISHED)


# --- histories ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class LineHistory:
    line_id: str
    code: str | None
    quantity: int
    path: tuple[tuple[LineStatus, bool], ...]  # (status, shipped flag) in lifecycle order


@dataclass(frozen=True)
class History:
    lines: tuple[LineHistory, ...]
    steps: tuple[int, ...]  # step k: the line (index) that moves to its next status
    snapshot_at: frozenset[int]  # versions that also get a full snapshot

    def ms(self, version: int) -> int:
        return 1_000_000 + 1000 * version


@st.composite
def line_histories(draw, line_id: str) -> LineHistory:
    # Half the lines never ship (so cancellations before shipment, i.e. RELEASE, are common).
    statuses = FORWARD if draw(st.booleans()) else FORWARD[:2]
    forward = draw(st.lists(st.sampled_from(statuses), unique=True, max_size=4).map(sorted))
    closes = draw(st.booleans()) or not forward
    reached_shipment = any(s >= LineStatus.SHIPPED for s in forward)
    path = [(s, s >= LineStatus.SHIPPED) for s in forward]
    if closes:
        # Closed after shipment is a refund of shipped goods; a line seen only as closed may be either.
        path.append((LineStatus.CLOSED, reached_shipment or (not forward and draw(st.booleans()))))
    return LineHistory(line_id, draw(st.sampled_from(list(COMPONENTS))), draw(st.integers(1, 3)), tuple(path))


@st.composite
def histories(draw) -> History:
    n = draw(st.integers(1, 3))
    lines = tuple(draw(line_histories(f"L{i}")) for i in range(n))
    steps = draw(st.permutations([i for i, line in enumerate(lines) for _ in line.path]))
    snapshot_at = frozenset(draw(st.sets(st.integers(0, len(steps) - 1))))
    return History(lines, tuple(steps), snapshot_at)


def line_update(line: LineHistory, status: LineStatus, shipped: bool) -> LineUpdate:
    return LineUpdate(line.line_id, LISTINGS[line.code], line.code, line.quantity, status, shipped)


def messages(history: History) -> list[OrderUpdate]:
    """In order: for each version its push, then its snapshot if it has one."""
    out = []
    position = [-1] * len(history.lines)
    for version, moved in enumerate(history.steps):
        position[moved] += 1
        ms = history.ms(version)
        line = history.lines[moved]
        out.append(OrderUpdate(PLATFORM, SHOP, ORDER, ms, (line_update(line, *line.path[position[moved]]),)))
        if version in history.snapshot_at:
            current = tuple(
                line_update(ln, *ln.path[p]) for ln, p in zip(history.lines, position) if p >= 0
            )
            out.append(OrderUpdate(PLATFORM, SHOP, ORDER, ms, current, snapshot=True))
    return out


@st.composite
def deliveries(draw, msgs: list[OrderUpdate]) -> list[OrderUpdate]:
    order = list(draw(st.permutations(range(len(msgs)))))
    for _ in range(draw(st.integers(0, len(msgs)))):  # duplicates anywhere
        order.insert(draw(st.integers(0, len(order))), draw(st.integers(0, len(msgs) - 1)))
    return [msgs[i] for i in order]


# --- oracle -------------------------------------------------------------------------------------


def final_effect(line: LineHistory, reserve_unpaid: bool) -> Effect:
    return line_effect(*line.path[-1], reserve_unpaid)


def in_order_movements(history: History, reserve_unpaid: bool) -> Counter:
    """(line, sku, type, quantity) of the in-order delivery, straight from the definitions."""
    out: Counter = Counter()
    for line in history.lines:
        reserved_once = any(line_effect(s, sh, reserve_unpaid) is not Effect.NONE for s, sh in line.path)
        final = final_effect(line, reserve_unpaid)
        for sku, per_unit in COMPONENTS[line.code]:
            q = per_unit * line.quantity
            if reserved_once:
                out[(line.line_id, sku, MovementType.RESERVE, q)] += 1
            if final is Effect.SHIPPED:
                out[(line.line_id, sku, MovementType.SHIP, q)] += 1
            elif final is Effect.NONE and reserved_once:
                out[(line.line_id, sku, MovementType.RELEASE, q)] += 1
    return out


def oracle_net(history: History, reserve_unpaid: bool) -> tuple[Counter, Counter]:
    reserved: Counter = Counter()
    shipped: Counter = Counter()
    for line in history.lines:
        final = final_effect(line, reserve_unpaid)
        for sku, per_unit in COMPONENTS[line.code]:
            if final is Effect.RESERVED:
                reserved[sku] += per_unit * line.quantity
            elif final is Effect.SHIPPED:
                shipped[sku] += per_unit * line.quantity
    return +reserved, +shipped


def oracle_ship_dates(history: History) -> dict[tuple[str, str], int]:
    """(line, SKU) -> when the line first showed shipped: the earliest evidence of the shipment."""
    dates = {}
    position = [-1] * len(history.lines)
    for version, moved in enumerate(history.steps):
        position[moved] += 1
        line = history.lines[moved]
        if line_effect(*line.path[position[moved]], False) is Effect.SHIPPED:
            for sku, _ in COMPONENTS[line.code]:
                dates.setdefault((line.line_id, sku), history.ms(version))
    return dates


def ship_dates(movements) -> dict[tuple[str, str], int]:
    """(line, SKU) -> the time its shipment ends up dated: its SHIP's, moved by each SHIP_REDATE,
    which must start from the time used until then, go earlier and carry the SHIP's quantity."""
    dated: dict[tuple[str, str], int] = {}
    quantity: dict[tuple[str, str], int] = {}
    for m in movements:
        k = (m.line, m.sku)
        if m.type is MovementType.SHIP:
            assert k not in dated
            dated[k], quantity[k] = m.event_time_ms, m.quantity
        elif m.type is MovementType.SHIP_REDATE:
            assert m.previous_event_time_ms == dated[k] > m.event_time_ms, (m, dated.get(k))
            assert m.quantity == quantity[k] and m.location == LOCATION
            dated[k] = m.event_time_ms
    return dated


def net(movements) -> tuple[Counter, Counter]:
    reserved: Counter = Counter()
    shipped: Counter = Counter()
    for m in movements:
        assert m.channel == CHANNEL
        if m.type is MovementType.RESERVE:
            reserved[m.sku] += m.quantity
        elif m.type is MovementType.RELEASE:
            reserved[m.sku] -= m.quantity
        elif m.type is MovementType.SHIP_REDATE:
            continue  # only the date of a shipment (see ship_dates)
        else:
            assert m.type is MovementType.SHIP and m.location == LOCATION
            reserved[m.sku] -= m.quantity
            shipped[m.sku] += m.quantity
    assert all(v >= 0 for v in reserved.values()), reserved
    return +reserved, +shipped


def key(m) -> tuple:
    return (m.line, m.sku, m.type, m.quantity)


def run(delivery, *, reserve_unpaid: bool, catalog: Catalog = CATALOG, stream: str = STREAM, state=None, first_offset=0):
    """Apply a delivery with origins; returns (state, movements, results)."""
    results = []
    movements = []
    for offset, update in enumerate(delivery, first_offset):
        result = apply_order_update(
            state,
            update,
            resolve=catalog.resolve,
            reserve_unpaid=reserve_unpaid,
            fulfilment_location=LOCATION,
            origin=Origin(stream, offset, 0),
        )
        state = result.state
        results.append(result)
        movements.extend(result.movements)
    return state, movements, results


def roundtrip(state: OrderState) -> OrderState:
    return OrderState.from_dict(orjson.loads(orjson.dumps(state.to_dict())))


# --- properties ---------------------------------------------------------------------------------


@HEAVY
@given(st.data(), histories(), st.booleans())
def test_any_delivery_converges_to_the_oracle(data, history, reserve_unpaid):
    msgs = messages(history)
    _, in_order, _ = run(msgs, reserve_unpaid=reserve_unpaid)
    expected = in_order_movements(history, reserve_unpaid)
    assert Counter(map(key, in_order)) == expected

    assert ship_dates(in_order) == oracle_ship_dates(history)  # in order: the first evidence, no re-date

    delivery = data.draw(deliveries(msgs))
    state, got, results = run(delivery, reserve_unpaid=reserve_unpaid)

    # Any delivery ends with every shipment dated as in order (re-dated where the first shipped
    # evidence to arrive was not the earliest).
    assert ship_dates(got) == oracle_ship_dates(history)
    ids = [m.movement_id for m in got]
    assert len(ids) == len(set(ids))
    got = [m for m in got if m.type is not MovementType.SHIP_REDATE]

    # Each other movement at most once, ids stable whatever message caused them.
    assert {m.movement_id: key(m) for m in got}.items() <= {m.movement_id: key(m) for m in in_order}.items()

    # The same as in order, except possibly a RESERVE + RELEASE pair for a line that ends NONE.
    got_keys = Counter(map(key, got))
    skipped = expected - got_keys
    assert not got_keys - expected
    for line_id, sku, mtype, q in skipped:
        assert mtype in (MovementType.RESERVE, MovementType.RELEASE)
        other = MovementType.RELEASE if mtype is MovementType.RESERVE else MovementType.RESERVE
        assert skipped[(line_id, sku, other, q)] == 1

    # Net stock effect equals the oracle computed from each line's final state.
    assert net(got) == oracle_net(history, reserve_unpaid)
    assert net(in_order) == oracle_net(history, reserve_unpaid)
    for line in history.lines:
        assert state.lines[line.line_id].effect is final_effect(line, reserve_unpaid)

    # Within the output stream, SHIP and RELEASE always follow the RESERVE they consume.
    reserved_seen = set()
    for m in got:
        if m.type is MovementType.RESERVE:
            reserved_seen.add((m.line, m.sku))
        else:
            assert (m.line, m.sku) in reserved_seen

    # Duplicates and stale messages change nothing; only real changes ask to be saved.
    for result in results:
        assert not result.deferred and not result.unmapped and not result.replay
        if result.movements:
            assert result.changed
    assert roundtrip(state).to_dict() == state.to_dict()


@HEAVY
@given(st.data(), histories(), st.booleans())
def test_crash_replay_returns_the_original_movements(data, history, reserve_unpaid):
    delivery = data.draw(deliveries(messages(history)))
    _, _, reference = run(delivery, reserve_unpaid=reserve_unpaid)

    # Crash: the state was saved after message `saved`, input resumes at `resume` <= saved + 1.
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
        assert result.movements == reference[offset].movements  # same ids, same origins, same everything
        if reference[offset].changed:
            assert result.replay  # positions that changed nothing are simply evaluated again: no-ops
        assert state.to_dict() == before

    # Then processing goes on exactly as if nothing had happened.
    state, _, rest = run(delivery[saved + 1 :], reserve_unpaid=reserve_unpaid, state=state, first_offset=saved + 1)
    assert [r.movements for r in rest] == [r.movements for r in reference[saved + 1 :]]
    final, _, _ = run(delivery, reserve_unpaid=reserve_unpaid)
    assert state.to_dict() == final.to_dict()


@HEAVY
@given(st.data(), histories(), st.booleans(), st.sets(st.sampled_from(["A", "B2", "SET", None])))
def test_unmapped_updates_are_deferred_and_converge_when_retried(data, history, reserve_unpaid, missing):
    partial = Catalog.from_rows([row for row in CATALOG_ROWS if row[2] not in missing])
    delivery = data.draw(deliveries(messages(history)))

    state = None
    movements = []
    deferred = []
    for offset, update in enumerate(delivery):
        before = None if state is None else state.to_dict()
        result = apply_order_update(
            state,
            update,
            resolve=partial.resolve,
            reserve_unpaid=reserve_unpaid,
            fulfilment_location=LOCATION,
            origin=Origin(STREAM, offset, 0),
        )
        if result.deferred:
            assert result.unmapped and not result.movements and not result.changed
            assert set(result.unmapped) <= {c if c is not None else LISTINGS[None] for c in missing}
            assert (result.state.to_dict() if before is not None else None) == before
            deferred.append(update)
        state = result.state
        movements.extend(result.movements)

    # The catalog learns the codes; the retry stream re-submits what was deferred, in order.
    state, retried, results = run(deferred, reserve_unpaid=reserve_unpaid, state=state, stream="retry/0")
    assert not any(r.deferred for r in results)
    movements += retried
    ids = [m.movement_id for m in movements]
    assert len(ids) == len(set(ids))
    assert net(movements) == oracle_net(history, reserve_unpaid)
    assert ship_dates(movements) == oracle_ship_dates(history)
    for line in history.lines:
        assert state.lines[line.line_id].effect is final_effect(line, reserve_unpaid)


# --- examples -----------------------------------------------------------------------------------


def update(ms, *lines, snapshot=False):
    return OrderUpdate(PLATFORM, SHOP, ORDER, ms, tuple(lines), snapshot=snapshot)


def line(status, code="A", quantity=1, shipped=False, line_id="L0"):
    return LineUpdate(line_id, LISTINGS[code], code, quantity, status, shipped)


def apply(state, upd, offset=None, reserve_unpaid=False, catalog=CATALOG, stream=STREAM):
    return apply_order_update(
        state,
        upd,
        resolve=catalog.resolve,
        reserve_unpaid=reserve_unpaid,
        fulfilment_location=LOCATION,
        origin=None if offset is None else Origin(stream, offset, 0),
    )


def types(result):
    return [(m.type, m.sku, m.quantity) for m in result.movements]


def test_movement_fields():
    r = apply(None, update(5000, line(LineStatus.SHIPPED, "SET", 2, shipped=True, line_id="oid-1")), offset=42)
    assert types(r) == [
        (MovementType.RESERVE, "SKU-A", 2),
        (MovementType.RESERVE, "SKU-C", 4),
        (MovementType.SHIP, "SKU-A", 2),
        (MovementType.SHIP, "SKU-C", 4),
    ]
    for i, m in enumerate(r.movements):
        assert m.origin == Origin(STREAM, 42, i)
        assert (m.channel, m.platform, m.reference, m.line, m.event_time_ms) == (CHANNEL, PLATFORM, ORDER, "oid-1", 5000)
        assert m.location == (LOCATION if m.type is MovementType.SHIP else None)


def test_base_index_offsets_the_movement_indexes():
    r = apply_order_update(
        None,
        update(1, line(LineStatus.PAID, "SET")),
        resolve=CATALOG.resolve,
        reserve_unpaid=False,
        fulfilment_location=LOCATION,
        origin=Origin(STREAM, 7, 2048),
    )
    assert [m.origin.index for m in r.movements] == [2048, 2049]
    replay = apply_order_update(
        r.state,
        update(1, line(LineStatus.PAID, "SET")),
        resolve=CATALOG.resolve,
        reserve_unpaid=False,
        fulfilment_location=LOCATION,
        origin=Origin(STREAM, 7, 2048),
    )
    assert replay.replay and replay.movements == r.movements


@pytest.mark.parametrize("reserve_unpaid", [False, True])
def test_unpaid_reservation_policy(reserve_unpaid):
    r = apply(None, update(1, line(LineStatus.CREATED)), reserve_unpaid=reserve_unpaid)
    assert types(r) == ([(MovementType.RESERVE, "SKU-A", 1)] if reserve_unpaid else [])
    assert r.changed  # the line is recorded either way
    r = apply(r.state, update(2, line(LineStatus.PAID)), reserve_unpaid=reserve_unpaid)
    assert types(r) == ([] if reserve_unpaid else [(MovementType.RESERVE, "SKU-A", 1)])


def test_reserve_is_sticky_when_the_policy_changes():
    r = apply(None, update(1, line(LineStatus.CREATED)), reserve_unpaid=True)
    r = apply(r.state, update(2, line(LineStatus.CREATED)), reserve_unpaid=False)
    assert types(r) == [] and r.state.lines["L0"].effect is Effect.RESERVED
    r = apply(r.state, update(3, line(LineStatus.PAID)), reserve_unpaid=False)
    assert types(r) == []


def test_cancel_before_shipment_releases_refund_after_shipment_does_nothing():
    paid = apply(None, update(1, line(LineStatus.PAID, quantity=3)))
    cancelled = apply(paid.state, update(2, line(LineStatus.CLOSED, quantity=3)))
    assert types(cancelled) == [(MovementType.RELEASE, "SKU-A", 3)]
    # Terminal: a later "paid" (a stale poll with a newer timestamp) cannot resurrect it.
    assert apply(cancelled.state, update(9, line(LineStatus.PAID, quantity=3))).movements == []

    shipped = apply(None, update(1, line(LineStatus.SHIPPED, shipped=True)))
    refunded = apply(shipped.state, update(2, line(LineStatus.CLOSED, shipped=True)))
    assert types(refunded) == []
    assert refunded.state.lines["L0"].effect is Effect.SHIPPED


def test_push_and_snapshot_of_the_same_change_move_once():
    push = apply(None, update(10, line(LineStatus.PAID)), offset=1)
    snap = apply(push.state, update(10, line(LineStatus.PAID), snapshot=True), offset=2)
    assert len(push.movements) == 1 and snap.movements == [] and not snap.changed
    stale = apply(snap.state, update(5, line(LineStatus.CREATED)), offset=3)
    assert stale.movements == [] and not stale.changed


def test_unmapped_update_is_not_applied_and_replay_says_so_again():
    empty = Catalog()
    mapped = apply(None, update(1, line(LineStatus.CREATED, line_id="L1")), offset=0, catalog=empty)
    assert mapped.changed and mapped.movements == []  # CREATED needs no mapping: applied
    state = mapped.state
    before = state.to_dict()
    r = apply(state, update(2, line(LineStatus.PAID, "SET"), line(LineStatus.PAID, line_id="L1")), offset=1, catalog=empty)
    assert r.deferred and r.unmapped == ("SET", "A") and r.movements == [] and not r.changed
    assert state.to_dict() == before
    later = apply(state, update(3, line(LineStatus.PAID, "SET", line_id="L2")), offset=2)
    assert later.changed
    # Crash replay of offset 1 (below the mark now): still deferred, nothing emitted at a passed
    # position, even though the catalog knows the codes by now.
    again = apply(later.state, update(2, line(LineStatus.PAID, "SET"), line(LineStatus.PAID, line_id="L1")), offset=1)
    assert again.replay and again.deferred and again.movements == [] and not again.changed
    retried = apply(later.state, update(2, line(LineStatus.PAID, "SET"), line(LineStatus.PAID, line_id="L1")), offset=0, stream="retry/0")
    assert sorted(types(retried)) == sorted(
        [(MovementType.RESERVE, "SKU-A", 1), (MovementType.RESERVE, "SKU-C", 2), (MovementType.RESERVE, "SKU-A", 1)]
    )


def test_components_are_fixed_at_reservation():
    r = apply(None, update(1, line(LineStatus.PAID, "SET")))
    changed = Catalog.from_rows([(PLATFORM, "300", "SET", "SKU-Z", 1)])
    r = apply(r.state, update(2, line(LineStatus.SHIPPED, "SET", shipped=True)), catalog=changed)
    assert types(r) == [(MovementType.SHIP, "SKU-A", 1), (MovementType.SHIP, "SKU-C", 2)]


def test_listing_without_merchant_code_resolves_by_platform_sku():
    r = apply(None, update(1, line(LineStatus.PAID, None, 2)))
    assert types(r) == [(MovementType.RESERVE, "SKU-D", 2)]


def test_memo_is_bounded():
    state = None
    for i in range(3 * MEMO_PER_STREAM):
        state = apply(state, update(i + 1, line(LineStatus.PAID, line_id=f"L{i}")), offset=i).state
    assert len(state.marks[STREAM].memo) == MEMO_PER_STREAM
    assert (state.marks[STREAM].offset, state.marks[STREAM].index) == (3 * MEMO_PER_STREAM - 1, 0)
    for stream in range(10):
        state = apply(state, update(100 + stream, line(LineStatus.PAID, line_id=f"S{stream}")), offset=0, stream=f"s{stream}").state
    assert list(state.marks) == [f"s{i}" for i in range(10 - MAX_STREAMS, 10)]


def test_settled_orders_become_tombstones():
    r = apply(None, update(1_000, line(LineStatus.PAID, line_id="L1"), line(LineStatus.PAID, line_id="L2")))
    state = r.state
    assert not is_settled(state, 10**12, 0)
    state = apply(state, update(2_000, line(LineStatus.SHIPPED, shipped=True, line_id="L1"))).state
    assert not is_settled(state, 10**12, 0)
    state = apply(state, update(3_000, line(LineStatus.CLOSED, line_id="L2"))).state
    assert is_settled(state, 3_000 + 86_400_000, 86_400_000)
    assert not is_settled(state, 3_000 + 86_399_999, 86_400_000)
    settle(state)
    state = roundtrip(state)
    assert state.settled and state.lines == {} and not is_settled(state, 10**12, 0)
    late = apply(state, update(2_000, line(LineStatus.SHIPPED, shipped=True, line_id="L1")), offset=99)
    assert late.movements == [] and not late.changed


def test_state_of_another_order_is_refused():
    state = apply(None, update(1, line(LineStatus.PAID))).state
    with pytest.raises(ValueError):
        apply(state, OrderUpdate(PLATFORM, SHOP, "other", 2, (line(LineStatus.PAID),)))
