"""The .avsc files: conventions, agreement with the Python model and topics, fingerprints."""

import dataclasses
import json
import shutil
from pathlib import Path

import pytest
from fastavro.schema import to_parsing_canonical_form

from schemas import SchemaDefinitionError, SchemaRegistry, fingerprint, names
from schemas.framing import MARKER
from schemas.registry import HISTORY_DIR, SCHEMA_DIR, load_current, load_history
from schemas.snapshot import snapshot
from stockstream.core.movements import Movement, MovementType
from stockstream.topics import ALL_TOPICS

SCHEMA_FILES = sorted(SCHEMA_DIR.glob("*.avsc"))
OPTIONAL_STRINGS = ("location", "counterpart_location", "channel", "platform", "reference", "line", "reason")


def raw(name: str) -> dict:
    return json.loads((SCHEMA_DIR / f"{name}.avsc").read_text())


def fields_of(schema: dict) -> dict:
    return {f["name"]: f for f in schema["fields"]}


def named_types(schema):
    """Every record/enum definition inside a raw schema, outermost first."""
    if isinstance(schema, list):
        for branch in schema:
            yield from named_types(branch)
    elif isinstance(schema, dict):
        if schema["type"] in ("record", "enum"):
            yield schema
        for f in schema.get("fields", ()):
            yield from named_types(f["type"])
        for key in ("items", "values"):
            if key in schema:
                yield from named_types(schema[key])


def test_all_expected_schemas_exist():
    registry = SchemaRegistry.load()
    expected = {value for key, value in vars(names).items() if key.isupper()}
    assert set(registry.current) == expected
    assert len(SCHEMA_FILES) == len(expected)


@pytest.mark.parametrize("path", SCHEMA_FILES, ids=lambda p: p.stem)
def test_namespace_and_docs_everywhere(path):
    schema = json.loads(path.read_text())
    assert schema["namespace"] == "stockstream"
    assert schema["name"] == path.stem
    for named in named_types(schema):
        assert named.get("doc"), f"{named['name']} has no doc"
        for f in named.get("fields", ()):
            assert f.get("doc"), f"{named['name']}.{f['name']} has no doc"


def test_topics_name_existing_schemas():
    registry = SchemaRegistry.load()
    for spec in ALL_TOPICS:
        if spec.schema is not None:
            assert spec.schema in registry.current, spec.name


def test_movement_mirrors_the_dataclass():
    movement = raw("Movement")
    assert [f["name"] for f in movement["fields"]] == [f.name for f in dataclasses.fields(Movement)]
    fields = fields_of(movement)
    for name in OPTIONAL_STRINGS:
        assert fields[name]["type"] == ["null", "string"] and fields[name]["default"] is None
    assert fields["quantity"]["type"] == fields["event_time_ms"]["type"] == "long"
    assert fields["event_time_ms"]["doc"] == "epoch ms UTC"
    null, origin = fields["origin"]["type"]
    assert null == "null" and fields["origin"]["default"] is None
    origin_fields = [(f["name"], f["type"]) for f in origin["fields"]]
    assert origin_fields == [("stream", "string"), ("offset", "long"), ("index", "int")]


def test_movement_type_symbols_are_the_python_enum_in_order_with_a_default():
    enum = fields_of(raw("Movement"))["type"]["type"]
    assert enum["name"] == "MovementType"
    assert enum["symbols"] == [member.value for member in MovementType]
    # Readers map symbols they do not know to the default instead of failing (see test_codec):
    # UNKNOWN, kept last, which the stock core does not apply.
    assert enum["default"] == "UNKNOWN" == enum["symbols"][-1]


def test_shared_types_are_defined_once_and_referenced_by_name():
    assert fields_of(raw("MovementBatch"))["movements"]["type"] == {"type": "array", "items": "Movement"}
    assert fields_of(raw("IngestBatch"))["records"]["type"] == {"type": "array", "items": "RawRecord"}
    definitions = [named["name"] for path in SCHEMA_FILES for named in named_types(json.loads(path.read_text()))]
    assert len(definitions) == len(set(definitions))


def test_optional_fields_default_to_null():
    for path in SCHEMA_FILES:
        for named in named_types(json.loads(path.read_text())):
            for f in named.get("fields", ()):
                if isinstance(f["type"], list) and "null" in f["type"]:
                    # a union's default must match its first branch
                    assert f["type"][0] == "null" and f["default"] is None, f"{path.stem}.{f['name']}"
    retryable = fields_of(raw("QuarantineRecord"))["retryable"]
    assert (retryable["type"], retryable["default"]) == ("boolean", False)


# --- fingerprints -------------------------------------------------------------------------------


def crc64_avro_per_spec(data: bytes) -> int:
    """The algorithm exactly as the Avro specification prints it ("Schema Fingerprints")."""
    empty = 0xC15D213AA4D7A795
    table = []
    for i in range(256):
        fp = i
        for _ in range(8):
            fp = (fp >> 1) ^ (empty & -(fp & 1))
        table.append(fp)
    fp = empty
    for byte in data:
        fp = (fp >> 8) ^ table[(fp ^ byte) & 0xFF]
    return fp


def test_fingerprint_matches_the_published_vectors_in_wire_byte_order():
    # Published by the Avro project: CRC-64-AVRO("int") = 0x7275d51a3f395c8f (Ruby and Go test
    # suites) and its single-object header C3 01 8F 5C 39 3F 1A D5 75 72 (Ruby
    # test_single_object_encoding_header), i.e. the 64-bit value written little-endian.
    assert fingerprint("int") == bytes.fromhex("8f5c393f1ad57572")
    assert int.from_bytes(fingerprint("int"), "little") == 0x7275D51A3F395C8F
    assert MARKER + fingerprint("int") == bytes([0xC3, 0x01, 0x8F, 0x5C, 0x39, 0x3F, 0x1A, 0xD5, 0x75, 0x72])
    assert int.from_bytes(fingerprint("string"), "little") == 0x8F014872634503C7


def test_fingerprints_of_our_schemas_agree_with_the_spec_algorithm():
    for version in SchemaRegistry.load().current.values():
        canonical = to_parsing_canonical_form(version.schema).encode()
        assert version.fingerprint == crc64_avro_per_spec(canonical).to_bytes(8, "little")


def test_fingerprint_covers_embedded_types():
    # The canonical form is self-contained: MovementBatch's includes Movement's definition...
    batch = SchemaRegistry.load().current[names.MOVEMENT_BATCH]
    canonical = to_parsing_canonical_form(batch.schema)
    assert '"items":{"name":"stockstream.Movement","type":"record","fields":[' in canonical
    assert canonical.count('"name":"stockstream.Origin"') == 1


def test_changing_an_embedded_type_changes_the_embedding_schemas_fingerprint(tmp_path):
    # ...so a MovementBatch written with another Movement is recognised as another writer schema.
    for path in SCHEMA_FILES:
        shutil.copy(path, tmp_path)
    before = {v.name: v.fingerprint for v in load_current(tmp_path)}
    movement = raw("Movement")
    movement["fields"].append({"name": "note", "type": ["null", "string"], "default": None, "doc": "x"})
    (tmp_path / "Movement.avsc").write_text(json.dumps(movement))
    after = {v.name: v.fingerprint for v in load_current(tmp_path)}
    changed = {name for name in before if before[name] != after[name]}
    assert changed == {names.MOVEMENT, names.MOVEMENT_BATCH}


def test_docs_do_not_change_fingerprints(tmp_path):
    shutil.copy(SCHEMA_DIR / "AtsSnapshot.avsc", tmp_path)
    schema = raw("AtsSnapshot")
    schema["doc"] = "reworded"
    (tmp_path / "Reworded.avsc").write_text(json.dumps({**schema, "name": "AtsSnapshot"}))
    (tmp_path / "AtsSnapshot.avsc").unlink()
    (reworded,) = load_current(tmp_path)
    assert reworded.fingerprint == SchemaRegistry.load().current[names.ATS_SNAPSHOT].fingerprint


# --- loading ------------------------------------------------------------------------------------


def write(directory: Path, name: str, schema) -> None:
    directory.mkdir(exist_ok=True)
    (directory / f"{name}.avsc").write_text(json.dumps(schema))


def record(name, *fields):
    return {"type": "record", "name": name, "namespace": "t", "doc": "d", "fields": list(fields)}


def test_unknown_type_is_a_definition_error(tmp_path):
    write(tmp_path, "A", record("A", {"name": "b", "type": "B"}))
    with pytest.raises(SchemaDefinitionError, match="unknown type t.B"):
        load_current(tmp_path)


def test_a_type_defined_twice_is_a_definition_error(tmp_path):
    write(tmp_path, "A", record("A", {"name": "c", "type": record("C")}))
    write(tmp_path, "B", record("B", {"name": "c", "type": record("C")}))
    with pytest.raises(SchemaDefinitionError, match="t.C is defined more than once"):
        load_current(tmp_path)


def test_invalid_json_names_the_file(tmp_path):
    (tmp_path / "Bad.avsc").write_text("{not json")
    with pytest.raises(SchemaDefinitionError, match="Bad.avsc"):
        load_current(tmp_path)


def test_history_files_must_be_self_contained(tmp_path):
    write(tmp_path, "A.v1", record("A", {"name": "b", "type": "B"}))
    with pytest.raises(SchemaDefinitionError, match="unknown type t.B"):
        load_history(tmp_path)


def test_shipped_history_loads():
    for version in load_history(HISTORY_DIR):
        assert version.name in SchemaRegistry.load().current


def test_snapshot_saves_each_version_once_numbered_per_name(tmp_path):
    current, history = tmp_path / "current", tmp_path / "history"
    write(current, "A", record("A", {"name": "x", "type": "long", "doc": "x"}))
    assert [p.name for p in snapshot(current, history)] == ["A.v1.avsc"]
    assert snapshot(current, history) == []
    write(current, "A", record("A", {"name": "x", "type": "string", "doc": "x"}))
    assert [p.name for p in snapshot(current, history)] == ["A.v2.avsc"]
    saved = {v.fingerprint for v in load_history(history)}
    assert len(saved) == 2 and load_current(current)[0].fingerprint in saved


def test_table_changelogs_are_compacted_with_segments_the_cleaner_can_reach():
    from stockstream.topics import changelog_topic

    spec = changelog_topic("stockstream", "stock")
    assert spec.name == "stockstream-stock-changelog"  # the name Faust derives from app id and table
    config = spec.config()
    assert config["cleanup.policy"] == "compact" and int(config["segment.ms"]) <= 3600 * 1000
