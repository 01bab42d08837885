"""The ERP journal core: reasons, deltas (counts included), windows, restarts."""

from __future__ import annotations

from collections import defaultdict

import pytest
from hypothesis import given, settings, strategies as st

from schemas import codec
from schemas.names import ERP_JOURNAL_ENTRY
from stockstream.core.journal import (
    JournalEntry,
    JournalReason,
    PartitionJournal,
    ResumePoint,
    journal_external_id,
    journal_reason,
)
from stockstream.core.movements import Movement, MovementType, Origin
from stockstream.core.stock import StockState, apply_movements

W = 1000  # window ms


def mv(type_, qty, *, sku="A", loc="wh1", t=0, mid=None, origin=None, channel="tmall:s1", counterpart=None, reason=None):
    return Movement(
        movement_id=mid or f"{type_.value}-{sku}-{loc}-{qty}-{t}",
        type=type_,
        sku=sku,
        quantity=qty,
        event_time_ms=t,
        location=loc,
        counterpart_location=counterpart,
        channel=channel,
        reason=reason,
        origin=origin,
    )


def by_key(entries):
    return {(e.sku, e.location, e.reason): e.quantity_delta for e in entries}


# ------------------------------------------------------------------ reasons and deltas


def test_reasons_of_on_hand_movements_and_none_for_the_rest():
    assert journal_reason(mv(MovementType.SHIP, 1)) is JournalReason.SALE_SHIPMENT
    assert journal_reason(mv(MovementType.RECEIPT, 1)) is JournalReason.RECEIPT
    assert journal_reason(mv(MovementType.RETURN_RESTOCKED, 1)) is JournalReason.RETURN_RESTOCK
    assert journal_reason(mv(MovementType.STOCK_COUNT, 1)) is JournalReason.COUNT_CORRECTION
    assert journal_reason(mv(MovementType.TRANSFER_IN, 1)) is JournalReason.TRANSFER
    assert journal_reason(mv(MovementType.TRANSFER_OUT, 1)) is JournalReason.TRANSFER
    assert journal_reason(mv(MovementType.CUSTOMS_HOLD, 1)) is JournalReason.CUSTOMS
    assert journal_reason(mv(MovementType.CUSTOMS_RELEASE, 1)) is JournalReason.CUSTOMS
    assert journal_reason(mv(MovementType.ADJUSTMENT, -1)) is JournalReason.ADJUSTMENT
    assert journal_reason(mv(MovementType.ADJUSTMENT, -1, reason="Scrap: water damage")) is JournalReason.SCRAP
    for t in (MovementType.RESERVE, MovementType.RELEASE, MovementType.RETURN_RECEIVED, MovementType.SAFETY_STOCK,
              MovementType.PRESALE_ALLOWANCE, MovementType.UNKNOWN):
        assert journal_reason(mv(t, 1)) is None


def test_one_window_sums_per_sku_location_reason_and_skips_reserve_release():
    j = PartitionJournal(0, W)
    assert j.add(0, 100, [mv(MovementType.RECEIPT, 50, t=1), mv(MovementType.RECEIPT, 10, t=2, loc="wh2")]) == []
    j.add(1, 200, [mv(MovementType.RESERVE, 3, t=3), mv(MovementType.SHIP, 3, t=4), mv(MovementType.RELEASE, 1, t=5)])
    j.add(2, 900, [mv(MovementType.SHIP, 2, t=6), mv(MovementType.ADJUSTMENT, -1, t=7, sku="B")])
    entries = j.flush_all()
    assert by_key(entries) == {
        ("A", "wh1", "RECEIPT"): 50,
        ("A", "wh2", "RECEIPT"): 10,
        ("A", "wh1", "SALE_SHIPMENT"): -5,
        ("B", "wh1", "ADJUSTMENT"): -1,
    }
    ship = next(e for e in entries if e.reason == "SALE_SHIPMENT")
    assert ship.movement_count == 2 and ship.window_start_ms == 0 and ship.window_end_ms == W
    assert ship.created_at_ms == 900
    assert ship.external_id == journal_external_id("A", "wh1", "SALE_SHIPMENT", 0, 0)


def test_count_journals_the_correction_the_stock_state_makes():
    j = PartitionJournal(0, W)
    j.add(0, 10, [mv(MovementType.RECEIPT, 100, t=1000)])
    # Counted 90 as of t=2000; a ship dated before the count is already in it: delta 0.
    j.add(1, 20, [mv(MovementType.STOCK_COUNT, 90, t=2000), mv(MovementType.SHIP, 5, t=1500)])
    # An older count than the one in force is superseded: nothing.
    j.add(2, 30, [mv(MovementType.STOCK_COUNT, 10, t=1800)])
    assert by_key(j.flush_all()) == {("A", "wh1", "RECEIPT"): 100, ("A", "wh1", "COUNT_CORRECTION"): -10}


@pytest.mark.skipif(not hasattr(MovementType, "SHIP_REDATE"), reason="needs the SHIP_REDATE movement type")
def test_a_ship_redated_across_a_count_journals_its_correction_as_a_shipment():
    j = PartitionJournal(0, W)
    j.add(0, 10, [mv(MovementType.RECEIPT, 100, t=1000), mv(MovementType.SHIP, 5, t=3000)])
    j.add(1, 20, [mv(MovementType.STOCK_COUNT, 95, t=2000)])  # counted after the goods left at 1500
    first = by_key(j.add(2, 1500, []))
    redate = Movement("rd", MovementType.SHIP_REDATE, "A", 5, 1500, location="wh1", channel="tmall:s1",
                      previous_event_time_ms=3000)
    j.add(3, 1600, [redate])
    assert first == {("A", "wh1", "RECEIPT"): 100, ("A", "wh1", "SALE_SHIPMENT"): -5, ("A", "wh1", "COUNT_CORRECTION"): -5}
    assert by_key(j.flush_all()) == {("A", "wh1", "SALE_SHIPMENT"): 5}  # on_hand back to the count: 95


def test_replayed_movements_are_journaled_once():
    o = Origin("ingest/0", 7, 0)
    j = PartitionJournal(0, W)
    j.add(0, 10, [mv(MovementType.RECEIPT, 5, mid="r1", origin=o)])
    j.add(1, 20, [mv(MovementType.RECEIPT, 5, mid="r1", origin=o)])
    assert by_key(j.flush_all()) == {("A", "wh1", "RECEIPT"): 5}


def test_malformed_and_zero_sum_entries_are_not_emitted():
    j = PartitionJournal(0, W)
    j.add(0, 10, [mv(MovementType.RECEIPT, 5, loc=None), mv(MovementType.UNKNOWN, 5)])
    j.add(1, 20, [mv(MovementType.ADJUSTMENT, 4, t=1), mv(MovementType.ADJUSTMENT, -4, t=2)])
    assert j.flush_all() == []


def test_transfer_moves_on_hand_out_of_the_source_and_into_the_destination():
    j = PartitionJournal(0, W)
    j.add(0, 10, [mv(MovementType.RECEIPT, 20, t=1)])
    j.add(1, 20, [mv(MovementType.TRANSFER_OUT, 8, t=2, counterpart="wh2"), mv(MovementType.TRANSFER_IN, 8, t=3, loc="wh2")])
    assert by_key(j.flush_all()) == {
        ("A", "wh1", "RECEIPT"): 20,
        ("A", "wh1", "TRANSFER"): -8,
        ("A", "wh2", "TRANSFER"): 8,
    }


# ------------------------------------------------------------------ windows


def test_a_record_past_end_plus_grace_closes_the_window():
    j = PartitionJournal(3, W, grace_ms=200)
    j.add(0, 100, [mv(MovementType.RECEIPT, 1, t=1)])
    assert j.add(1, 1100, [mv(MovementType.RECEIPT, 2, t=2)]) == []  # within grace: window 0 stays open
    assert j.resume_point(2) == ResumePoint(0, None)
    closed = j.add(2, 1250, [mv(MovementType.RECEIPT, 4, t=3)])
    assert [(e.window_start_ms, e.quantity_delta) for e in closed] == [(0, 1)]
    assert j.resume_point(3) == ResumePoint(1, 100)
    assert [(e.window_start_ms, e.quantity_delta) for e in j.flush_all()] == [(1000, 6)]


def test_idle_flush_closes_by_wall_clock_and_a_record_stamped_into_a_closed_window_goes_to_the_next():
    j = PartitionJournal(0, W, grace_ms=100)
    j.add(0, 500, [mv(MovementType.RECEIPT, 1, t=1)])
    assert j.flush_idle(1099) == []
    assert [e.window_start_ms for e in j.flush_idle(1100)] == [0]
    assert j.resume_point(1) == ResumePoint(1, 1000)
    j.add(1, 900, [mv(MovementType.RECEIPT, 2, t=2)])  # the broker clock stepped back
    (late,) = j.flush_all()
    assert (late.window_start_ms, late.quantity_delta) == (1000, 2)


def test_resume_metadata_round_trip():
    assert ResumePoint.high_water_from_metadata(ResumePoint(5, 1234).metadata()) == 1234
    assert ResumePoint.high_water_from_metadata(ResumePoint(5, None).metadata()) is None
    assert ResumePoint.high_water_from_metadata(None) is None


def test_entries_encode_as_the_avro_contract():
    j = PartitionJournal(0, W)
    j.add(0, 10, [mv(MovementType.RECEIPT, 5)])
    (entry,) = j.flush_all()
    decoded = codec.decode(codec.encode(ERP_JOURNAL_ENTRY, entry.to_record()), ERP_JOURNAL_ENTRY)
    assert JournalEntry.from_record(decoded) == entry


# ------------------------------------------------------------------ properties

SKUS = ("A", "B", "C")
LOCS = ("wh1", "wh2")
ON_HAND_TYPES = (MovementType.SHIP, MovementType.RECEIPT, MovementType.ADJUSTMENT, MovementType.RETURN_RESTOCKED,
                 MovementType.CUSTOMS_HOLD, MovementType.CUSTOMS_RELEASE, MovementType.TRANSFER_OUT,
                 MovementType.TRANSFER_IN)
OTHER_TYPES = (MovementType.RESERVE, MovementType.RELEASE, MovementType.RETURN_RECEIVED, MovementType.RETURN_SCRAPPED)
# The on_hand sign of each delta type (ADJUSTMENT: the quantity's own sign).
SIGN = {MovementType.SHIP: -1, MovementType.RECEIPT: 1, MovementType.ADJUSTMENT: 1, MovementType.RETURN_RESTOCKED: 1,
        MovementType.CUSTOMS_HOLD: -1, MovementType.CUSTOMS_RELEASE: 1, MovementType.TRANSFER_OUT: -1,
        MovementType.TRANSFER_IN: 1}


@st.composite
def movement_streams(draw, counts: bool):
    """A partition's records: (timestamp, movements), with origins and replayed copies."""
    types = ON_HAND_TYPES + OTHER_TYPES + ((MovementType.STOCK_COUNT,) if counts else ())
    n = draw(st.integers(1, 40))
    records, ts, seq, made = [], draw(st.integers(0, 5000)), 0, []
    for offset in range(n):
        ts += draw(st.integers(0, 900))
        batch = []
        for index in range(draw(st.integers(0, 4))):
            if made and draw(st.integers(0, 9)) == 0:
                batch.append(draw(st.sampled_from(made)))  # a replay: same movement, same origin
                continue
            t = draw(st.sampled_from(types))
            qty = draw(st.integers(-20, 20) if t is MovementType.ADJUSTMENT else st.integers(0, 30))
            seq += 1
            m = mv(t, qty, sku=draw(st.sampled_from(SKUS)), loc=draw(st.sampled_from(LOCS)),
                   t=draw(st.integers(0, 20_000)), mid=f"m{seq}", origin=Origin("s", offset, index),
                   counterpart=draw(st.sampled_from(LOCS)))
            made.append(m)
            batch.append(m)
        records.append((ts, batch))
    return records


def run_reference(records, grace=0):
    j = PartitionJournal(0, W, grace)
    out = []
    for offset, (ts, batch) in enumerate(records):
        out += j.add(offset, ts, batch)
    return out + j.flush_all()


@given(movement_streams(counts=True), st.data())
@settings(max_examples=150, deadline=None)
def test_crashes_idle_flushes_and_commit_points_never_change_an_entry(records, data):
    """Any schedule of commits, crashes (restart from the last commit, stock warmed from the
    records before it) and idle flushes (wall clock not past the next record's timestamp) emits
    exactly the reference entries: every external id always with the same content."""
    grace = data.draw(st.sampled_from((0, 150)))
    reference = {e.external_id: e for e in run_reference(records, grace)}
    emitted: dict[str, JournalEntry] = {}

    def publish(entries):
        for e in entries:
            assert emitted.setdefault(e.external_id, e) == e, "same id, other content"

    committed = ResumePoint(0, None)
    j, offset, crashes = PartitionJournal(0, W, grace), 0, 0
    while offset < len(records):
        step = data.draw(st.sampled_from(("read", "read", "read", "commit", "idle", "crash")))
        if step == "read":
            ts, batch = records[offset]
            publish(j.add(offset, ts, batch))
            offset += 1
        elif step == "commit":
            committed = j.resume_point(offset)
        elif step == "idle":
            now = data.draw(st.integers(records[offset - 1][0] if offset else 0, records[offset][0]))
            publish(j.flush_idle(now))
        elif crashes < 4:
            crashes += 1
            j = PartitionJournal(0, W, grace, high_water_ms=committed.high_water_ms)
            for _ts, batch in records[: committed.offset]:
                j.warm(batch)
            offset = committed.offset
    publish(j.flush_all())
    assert emitted == reference


@given(movement_streams(counts=True), st.lists(st.integers(-3000, 3000), max_size=40))
@settings(max_examples=100, deadline=None)
def test_restart_from_any_commit_is_exact_even_when_timestamps_step_back(records, jitter):
    records = [(max(0, ts + (jitter[i] if i < len(jitter) else 0)), batch) for i, (ts, batch) in enumerate(records)]
    reference = {e.external_id: e for e in run_reference(records)}
    j = PartitionJournal(0, W)
    emitted = {}
    commits = []
    for offset, (ts, batch) in enumerate(records):
        emitted.update((e.external_id, e) for e in j.add(offset, ts, batch))
        commits.append((dict(emitted), j.resume_point(offset + 1)))
    for before, point in commits:
        r = PartitionJournal(0, W, high_water_ms=point.high_water_ms)
        for _ts, batch in records[: point.offset]:
            r.warm(batch)
        again = dict(before)
        for offset in range(point.offset, len(records)):
            for e in r.add(offset, *records[offset]):
                assert again.setdefault(e.external_id, e) == e
        for e in r.flush_all():
            assert again.setdefault(e.external_id, e) == e
        assert again == reference


@given(movement_streams(counts=True))
@settings(max_examples=100, deadline=None)
def test_journal_sums_to_the_stock_on_hand_per_sku_and_location(records):
    totals: dict = defaultdict(int)
    for e in run_reference(records):
        totals[(e.sku, e.location)] += e.quantity_delta
    states: dict[str, StockState] = {}
    for _ts, batch in records:
        for m in batch:
            states[m.sku] = apply_movements(states.get(m.sku), [m])[0]
    expected = {(sku, loc): s.on_hand for sku, st_ in states.items() for loc, s in st_.locations.items() if s.on_hand}
    assert {k: v for k, v in totals.items() if v} == expected


@given(movement_streams(counts=False))
@settings(max_examples=100, deadline=None)
def test_sums_per_sku_location_reason_equal_an_arithmetic_oracle(records):
    """Without counts every on_hand movement is a plain signed quantity: no stock core needed."""
    oracle: dict = defaultdict(int)
    seen = set()
    for _ts, batch in records:
        for m in batch:
            if m.movement_id in seen:  # replayed copy
                continue
            seen.add(m.movement_id)
            if m.type in SIGN:
                oracle[(m.sku, m.location, journal_reason(m).value)] += SIGN[m.type] * m.quantity
    got: dict = defaultdict(int)
    for e in run_reference(records):
        got[(e.sku, e.location, e.reason)] += e.quantity_delta
    assert {k: v for k, v in got.items() if v} == {k: v for k, v in oracle.items() if v}
