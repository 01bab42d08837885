"""SHIP_REDATE on the wire: the Movement version before it (schemas/history) stays readable, and a
reader of that version reads a SHIP_REDATE as UNKNOWN (which the stock core does not apply)."""

from __future__ import annotations

import dataclasses

from schemas import Codec, SchemaRegistry, decode_movements, movement_from_record, movement_to_record, names
from schemas.registry import HISTORY_DIR, SCHEMA_DIR, load_current, load_history
from stockstream.core.movements import Movement, MovementType, Origin
from stockstream.core.stock import Outcome, StockState, apply_movement

REDATE = Movement(
    "r1", MovementType.SHIP_REDATE, "SKU-1", 2, 1_000, "WH-SH", channel="jd:1", platform="jd", reference="9", line="L",
    origin=Origin("ingest/0|raw.jd/0", 7, 0), previous_event_time_ms=5_000,
)


def before_ship_redate() -> list:
    """The Movement / MovementBatch versions saved before SHIP_REDATE was added."""
    versions = [v for v in load_history(HISTORY_DIR) if v.name in (names.MOVEMENT, names.MOVEMENT_BATCH)]
    assert {v.name for v in versions} == {names.MOVEMENT, names.MOVEMENT_BATCH}
    assert all("SHIP_REDATE" not in str(v.schema) for v in versions)
    return versions


def test_current_readers_read_movements_written_before_ship_redate():
    old_writer = Codec(SchemaRegistry(before_ship_redate()))
    ship = dataclasses.replace(REDATE, type=MovementType.SHIP, previous_event_time_ms=None)
    record = {k: v for k, v in movement_to_record(ship).items() if k != "previous_event_time_ms"}
    data = old_writer.encode(names.MOVEMENT_BATCH, {"movements": [record]})
    assert decode_movements(data) == [ship]


def test_readers_before_ship_redate_read_it_as_unknown_and_do_not_apply_it():
    # An old release that was shipped the new version ahead (as `schemas.snapshot` arranges).
    old_reader = Codec(SchemaRegistry(before_ship_redate(), load_current(SCHEMA_DIR)))
    data = Codec(SchemaRegistry.load()).encode(names.MOVEMENT, movement_to_record(REDATE))
    record = old_reader.decode(data)
    assert record["type"] == "UNKNOWN" and "previous_event_time_ms" not in record
    old_view = movement_from_record({**record, "previous_event_time_ms": None})
    state = StockState("SKU-1")
    assert apply_movement(state, old_view) is Outcome.INVALID and state.marks == {}


def test_ship_redate_round_trips():
    data = Codec(SchemaRegistry.load()).encode(names.MOVEMENT_BATCH, {"movements": [movement_to_record(REDATE)]})
    assert decode_movements(data) == [REDATE]
