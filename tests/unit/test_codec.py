"""The codec: framing, round trips, errors that become quarantine reasons, schema evolution."""

import dataclasses
import json
import shutil

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas import (
    Codec,
    CodecError,
    IncompatibleSchemaError,
    MalformedRecordError,
    RecordEncodingError,
    SchemaRegistry,
    UnexpectedSchemaError,
    UnknownSchemaError,
    decode,
    decode_ingest,
    decode_movements,
    default_codec,
    encode,
    encode_ingest,
    encode_movements,
    movement_from_record,
    movement_to_record,
    names,
)
from schemas.framing import HEADER_SIZE, MARKER
from schemas.registry import SCHEMA_DIR, load_current, load_history
from schemas.snapshot import snapshot
from stockstream.core.movements import Movement, MovementType, Origin, movement_id

LONG = st.integers(-(2**63), 2**63 - 1)
INT = st.integers(-(2**31), 2**31 - 1)
OPTIONAL_TEXT = st.none() | st.text(max_size=20)

MOVEMENTS = st.builds(
    Movement,
    movement_id=st.text(max_size=32),
    type=st.sampled_from(MovementType),
    sku=st.text(max_size=20),
    quantity=LONG,
    event_time_ms=LONG,
    location=OPTIONAL_TEXT,
    counterpart_location=OPTIONAL_TEXT,
    channel=OPTIONAL_TEXT,
    platform=OPTIONAL_TEXT,
    reference=OPTIONAL_TEXT,
    line=OPTIONAL_TEXT,
    reason=OPTIONAL_TEXT,
    origin=st.none() | st.builds(Origin, stream=st.text(max_size=30), offset=LONG, index=INT),
)

SHIP = Movement(
    movement_id("tmall", "shop1", "3000000000000000001", "1", "SHIP"),
    MovementType.SHIP,
    "SKU-RED-M",
    2,
    1_717_000_000_000,
    location="SH-BONDED-01",
    channel="tmall:shop1",
    platform="tmall",
    reference="3000000000000000001",
    line="1",
    origin=Origin("ingest/3|raw.tmall/3", 41, 0),
)
RAW_RECORD = {
    "topic": "raw.tmall",
    "partition": 3,
    "offset": 41,
    "timestamp_ms": 1_717_000_000_000,
    "key": b"3000000000000000001",
    "value": '{"tid": 3000000000000000001, "status": "WAIT_SELLER_SEND_GOODS"}'.encode(),
    "headers": {"content-type": "application/json", "签名": "值"},
}
SAMPLES = {
    names.MOVEMENT: movement_to_record(SHIP),
    names.MOVEMENT_BATCH: {
        "movements": [movement_to_record(SHIP), movement_to_record(dataclasses.replace(SHIP, origin=None))]
    },
    names.RAW_RECORD: RAW_RECORD,
    names.INGEST_BATCH: {"records": [RAW_RECORD, {**RAW_RECORD, "key": None, "headers": {}}]},
    names.ATS_SNAPSHOT: {
        "sku": "SKU-RED-M",
        "version": 7,
        "ats": -3,
        "sellable_on_hand": 10,
        "reserved": 8,
        "safety_stock": 5,
        "presale_allowance": 20,
        "locations": {"SH-BONDED-01": {"on_hand": 10, "customs_hold": 4, "inspection": 1, "in_transit": 0}},
        "reserved_by_channel": {"tmall:shop1": 6, "jd:77": 2},
        "movement_ids": [SHIP.movement_id],
        "updated_at_ms": 1_717_000_000_123,
    },
    names.ALLOCATION_CHANGE: {
        "sku": "SKU-RED-M",
        "channel": "jd:77",
        "quantity": 3,
        "previous_quantity": 4,
        "version": 12,
        "ats": 7,
        "ats_version": 7,
        "rule_version": 2,
        "mode": "split",
        "movement_ids": [SHIP.movement_id],
        "computed_at_ms": 1_717_000_000_200,
        "event_time_ms": 1_717_000_000_050,
    },
    names.ERP_JOURNAL_ENTRY: {
        "external_id": "SKU-RED-M|SH-BONDED-01|SALE_SHIPMENT|1717000000000",
        "sku": "SKU-RED-M",
        "location": "SH-BONDED-01",
        "reason": "SALE_SHIPMENT",
        "quantity_delta": -2,
        "window_start_ms": 1_717_000_000_000,
        "window_end_ms": 1_717_000_060_000,
        "movement_count": 1,
        "movement_ids": [SHIP.movement_id],
        "created_at_ms": 1_717_000_060_500,
    },
    names.QUARANTINE_RECORD: {
        "source_topic": "raw.jd",
        "source_partition": 1,
        "source_offset": 99,
        "key": None,
        "value": b"\x00garbage",
        "headers": {},
        "reason_code": "UNMAPPED_SKU",
        "reason": "merchant code ABC-1 is not in the catalog",
        "quarantined_at_ms": 1_717_000_000_000,
        "retryable": True,
    },
}


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_every_schema_round_trips(name):
    data = encode(name, SAMPLES[name])
    assert decode(data) == SAMPLES[name]
    assert decode(data, reader=name) == SAMPLES[name]


def test_wire_format_is_single_object_encoding():
    codec = Codec(SchemaRegistry.load())
    data = codec.encode(names.ALLOCATION_CHANGE, SAMPLES[names.ALLOCATION_CHANGE])
    version = codec.registry.current[names.ALLOCATION_CHANGE]
    assert data[:2] == b"\xc3\x01" == MARKER
    assert data[2:HEADER_SIZE] == version.fingerprint
    assert codec.writer_version(data) is version


@settings(max_examples=300)
@given(MOVEMENTS)
def test_movement_round_trips_through_mapper_and_codec(movement):
    assert movement_from_record(decode(encode(names.MOVEMENT, movement_to_record(movement)))) == movement


@settings(max_examples=100)
@given(st.lists(MOVEMENTS, max_size=30))
def test_movement_batches_round_trip(movements):
    decoded = decode_movements(encode_movements(movements))
    assert decoded == movements
    assert all(type(m.type) is MovementType for m in decoded)


def test_mapper_shortcut_preconditions():
    # movement_from_record fills __dict__ instead of calling __init__ (see mappers.py).
    for cls in (Movement, Origin):
        assert not hasattr(cls, "__slots__") and not hasattr(cls, "__post_init__")
    schema_fields = [f["name"] for f in SchemaRegistry.load().current[names.MOVEMENT].schema["fields"]]
    assert schema_fields == [f.name for f in dataclasses.fields(Movement)]
    decoded = movement_from_record(movement_to_record(SHIP))
    assert decoded == SHIP and hash(decoded) == hash(SHIP) and vars(decoded) == vars(SHIP)
    with pytest.raises(dataclasses.FrozenInstanceError):
        decoded.quantity = 5


def test_ingest_batches_round_trip():
    records = SAMPLES[names.INGEST_BATCH]["records"]
    assert decode_ingest(encode_ingest(records)) == records


# --- decode errors: each becomes a quarantine reason --------------------------------------------

GOOD = encode(names.ALLOCATION_CHANGE, SAMPLES[names.ALLOCATION_CHANGE])


def test_unknown_fingerprint_names_it():
    data = MARKER + bytes.fromhex("0123456789abcdef") + GOOD[HEADER_SIZE:]
    with pytest.raises(UnknownSchemaError, match="0123456789abcdef") as caught:
        decode(data)
    assert caught.value.fingerprint == bytes.fromhex("0123456789abcdef")
    assert caught.value.reason_code == "UNKNOWN_SCHEMA"
    assert "0xefcdab8967452301" in str(caught.value)  # the 64-bit value other tools print


@pytest.mark.parametrize(
    "data, message",
    [
        (None, "no value"),
        (b"", "0 bytes is shorter than the 10-byte single-object header"),
        (GOOD[:7], "7 bytes is shorter than the 10-byte single-object header"),
        (b"{" + GOOD[1:], "not Avro single-object encoding: first bytes are 7b01, expected c301"),
        (b"\x00" * 20, "first bytes are 0000"),
        (GOOD[:-1], "truncated: the stockstream.AllocationChange body ends after 75 bytes"),
        (GOOD[: HEADER_SIZE + 3], "truncated: .* ends after 3 bytes"),
        (GOOD + b"\x00\x00", "2 trailing bytes after the stockstream.AllocationChange body"),
        (GOOD[:HEADER_SIZE] + b"\x04\xff\xfe" + GOOD[HEADER_SIZE + 3 :], "body .* does not parse: UnicodeDecodeError"),
    ],
    ids=["none", "empty", "short-header", "json", "zeros", "truncated", "truncated-early", "trailing", "bad-utf8"],
)
def test_malformed_input_says_what_is_wrong(data, message):
    with pytest.raises(MalformedRecordError, match=message) as caught:
        decode(data)
    assert caught.value.reason_code == "MALFORMED_AVRO"


def test_record_of_another_type_than_expected():
    message = "expected stockstream.MovementBatch, got a record written as stockstream.AllocationChange"
    with pytest.raises(UnexpectedSchemaError, match=message):
        decode_movements(GOOD)


def test_a_misspelt_reader_is_a_programming_error_not_bad_input():
    with pytest.raises(KeyError, match="no current schema named 'MovementBatch'"):
        decode(GOOD, reader="MovementBatch")


@settings(max_examples=500)
@given(st.sampled_from(sorted(SAMPLES)), st.binary(max_size=200))
def test_any_body_decodes_or_raises_a_codec_error(name, body):
    header = default_codec().registry.current[name].header
    try:
        decode(header + body)
    except CodecError:
        pass


@given(st.binary(max_size=40))
def test_any_bytes_decode_or_raise_a_codec_error(data):
    try:
        decode(data)
    except CodecError:
        pass


# --- encode errors ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "change, message",
    [
        ({"qty": 3}, "more fields than the schema specifies: qty"),
        ({"quantity": "3"}, "quantity"),
        ({"quantity": 2**64}, "OverflowError"),
        ({"mode": None}, "mode"),
    ],
)
def test_records_that_do_not_fit_are_refused(change, message):
    with pytest.raises(RecordEncodingError, match=message):
        encode(names.ALLOCATION_CHANGE, {**SAMPLES[names.ALLOCATION_CHANGE], **change})


def test_every_field_must_be_given_even_those_with_defaults():
    record = dict(SAMPLES[names.QUARANTINE_RECORD])
    del record["retryable"]
    with pytest.raises(RecordEncodingError, match="retryable"):
        encode(names.QUARANTINE_RECORD, record)


def test_unknown_schema_name_when_encoding():
    with pytest.raises(KeyError, match="stockstream.Movement"):
        encode("Movement", {})


# --- evolution ----------------------------------------------------------------------------------


def movement_v1() -> dict:
    """Movement as an older release had it: no counterpart_location, no origin."""
    schema = json.loads((SCHEMA_DIR / "Movement.avsc").read_text())
    schema["fields"] = [f for f in schema["fields"] if f["name"] not in ("counterpart_location", "origin")]
    return schema


@pytest.fixture
def releases(tmp_path):
    """Schema directories of an old release (Movement v1) and of today's, each with history/."""
    old, new = tmp_path / "old", tmp_path / "new"
    shutil.copytree(SCHEMA_DIR, new, ignore=shutil.ignore_patterns("*.py", "__pycache__", "history"))
    shutil.copytree(new, old)
    (old / "Movement.avsc").write_text(json.dumps(movement_v1()))
    # What a real release keeps: the versions it wrote before (new/history) ...
    snapshot(old, new / "history")
    # ... and, shipped ahead by the old release, the version the next one is going to write.
    snapshot(new, old / "history")
    return Codec(SchemaRegistry.load(old)), Codec(SchemaRegistry.load(new))


def test_new_readers_read_old_records_filling_defaults(releases):
    old, new = releases
    v1_record = {k: v for k, v in movement_to_record(SHIP).items() if k not in ("counterpart_location", "origin")}
    data = old.encode(names.MOVEMENT_BATCH, {"movements": [v1_record]})
    assert decode_movements(data, new) == [dataclasses.replace(SHIP, origin=None)]


def test_old_readers_read_new_records(releases):
    old, new = releases
    data = new.encode(names.MOVEMENT_BATCH, {"movements": [movement_to_record(SHIP)]})
    (movement,) = old.decode(data)["movements"]
    expected = {k: v for k, v in movement_to_record(SHIP).items() if k not in ("counterpart_location", "origin")}
    assert movement == expected


def test_a_reader_that_was_not_shipped_the_new_version_cannot_read_it(releases):
    old, new = releases
    old_without_shipped_ahead = Codec(SchemaRegistry(old.registry.current.values()))
    data = new.encode(names.MOVEMENT, movement_to_record(SHIP))
    with pytest.raises(UnknownSchemaError):
        old_without_shipped_ahead.decode(data)


def test_an_enum_symbol_unknown_to_the_reader_reads_as_the_default(tmp_path):
    movement = json.loads((SCHEMA_DIR / "Movement.avsc").read_text())
    enum = next(f for f in movement["fields"] if f["name"] == "type")["type"]
    enum["symbols"].append("DAMAGED")
    (tmp_path / "Movement.avsc").write_text(json.dumps(movement))
    newer = Codec(SchemaRegistry(load_current(tmp_path)))
    current = Codec(SchemaRegistry(load_current(SCHEMA_DIR), load_current(tmp_path)))
    data = newer.encode(names.MOVEMENT, {**movement_to_record(SHIP), "type": "DAMAGED"})
    assert current.decode(data)["type"] == enum["default"] == "UNKNOWN"
    assert movement_from_record(current.decode(data)).type is MovementType.UNKNOWN


def test_a_writer_version_the_reader_cannot_resolve_is_incompatible(tmp_path):
    def version_dir(name, field_type):
        directory = tmp_path / name
        directory.mkdir()
        schema = {"type": "record", "name": "A", "namespace": "t", "fields": [{"name": "x", "type": field_type}]}
        (directory / "A.avsc").write_text(json.dumps(schema))
        return load_current(directory)

    writer = Codec(SchemaRegistry(version_dir("writer", "string")))
    reader = Codec(SchemaRegistry(version_dir("reader", "long"), version_dir("history", "string")))
    message = "t.A written with fingerprint .* cannot be read as the current version"
    with pytest.raises(IncompatibleSchemaError, match=message):
        reader.decode(writer.encode("t.A", {"x": "seven"}))


def test_history_adds_only_the_versions_that_differ_from_current(releases):
    _, new = releases
    from_history = [v for v in new.registry.by_fingerprint.values() if v.source.parent.name == "history"]
    assert {v.name for v in from_history} == {names.MOVEMENT, names.MOVEMENT_BATCH}


def test_a_missing_history_directory_holds_no_versions(tmp_path):
    assert load_history(tmp_path / "history") == []
