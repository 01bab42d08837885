"""The schema versions stockstream knows, loaded and parsed once, each with its fingerprint.

`schemas/*.avsc` are the current versions: what we write, and what we resolve every read to.
A named type is defined once (e.g. `Movement` in Movement.avsc) and other files refer to it by
name. `schemas/history/*.avsc` are other writer versions we may still meet on the wire; each is
self-contained (see `schemas.snapshot`), so a later edit of a shared type cannot alter them.

Every version is stored self-contained (each named type defined at its first use), because the
fingerprint must cover the whole writer schema: a `MovementBatch` whose `Movement` changed is a
different writer schema, and any other Avro implementation fingerprints the inlined form too.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional

import fastavro
from fastavro.schema import fingerprint as _fastavro_fingerprint
from fastavro.schema import to_parsing_canonical_form

from schemas.framing import MARKER

SCHEMA_DIR = Path(__file__).resolve().parent
HISTORY_DIR = SCHEMA_DIR / "history"

_PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})
_NAMED = frozenset({"record", "error", "enum", "fixed"})


class SchemaDefinitionError(ValueError):
    """An .avsc file is not usable: bad JSON, unknown type, or a named type defined twice."""


def fingerprint(schema: Any) -> bytes:
    """CRC-64-AVRO of the schema's Parsing Canonical Form, as the 8 bytes single-object encoding
    puts on the wire (little-endian). `schema` must be self-contained."""
    # fastavro's hex string already spells the little-endian byte order (checked against the
    # Avro project's published vectors in tests/unit/test_schemas.py).
    return bytes.fromhex(_fastavro_fingerprint(to_parsing_canonical_form(schema), "CRC-64-AVRO"))


@dataclass(frozen=True, eq=False)
class SchemaVersion:
    name: str  # full name, e.g. stockstream.Movement
    schema: dict  # self-contained JSON, full names throughout
    source: Optional[Path] = None
    parsed: Any = field(init=False, repr=False)
    fingerprint: bytes = field(init=False)
    header: bytes = field(init=False, repr=False)  # single-object encoding prefix

    def __post_init__(self) -> None:
        object.__setattr__(self, "parsed", fastavro.parse_schema(self.schema))
        object.__setattr__(self, "fingerprint", fingerprint(self.schema))
        object.__setattr__(self, "header", MARKER + self.fingerprint)


class SchemaRegistry:
    """Current versions by name, and every known writer version by fingerprint."""

    def __init__(self, current: Iterable[SchemaVersion], history: Iterable[SchemaVersion] = ()) -> None:
        self.current: dict[str, SchemaVersion] = {}
        self.by_fingerprint: dict[bytes, SchemaVersion] = {}
        for version in current:
            if version.name in self.current:
                raise SchemaDefinitionError(f"two current versions of {version.name}")
            self.current[version.name] = version
            self._add_writer(version)
        for version in history:
            self._add_writer(version)

    @classmethod
    def load(cls, directory: Path = SCHEMA_DIR, history_directory: Optional[Path] = None) -> "SchemaRegistry":
        history_directory = directory / "history" if history_directory is None else history_directory
        return cls(load_current(directory), load_history(history_directory))

    def current_version(self, name: str) -> SchemaVersion:
        try:
            return self.current[name]
        except KeyError:
            raise KeyError(f"no current schema named {name!r}; known: {', '.join(sorted(self.current))}") from None

    def _add_writer(self, version: SchemaVersion) -> None:
        known = self.by_fingerprint.get(version.fingerprint)
        if known is None:
            self.by_fingerprint[version.fingerprint] = version
        elif known.name != version.name:
            raise SchemaDefinitionError(
                f"{version.name} ({version.source}) and {known.name} ({known.source}) share fingerprint "
                f"{version.fingerprint.hex()}"
            )


def load_current(directory: Path) -> list[SchemaVersion]:
    """One version per file; files may refer to named types defined in any other file."""
    sources = {path: _read_json(path) for path in sorted(directory.glob("*.avsc"))}
    definitions: dict[str, tuple[dict, str]] = {}
    for path, schema in sources.items():
        _collect_definitions(schema, "", definitions, path)
    return [_version(_self_contained(schema, "", definitions, set(), path), path) for path, schema in sources.items()]


def load_history(directory: Path) -> list[SchemaVersion]:
    """One version per file; each file must define every named type it uses."""
    versions = []
    for path in sorted(directory.glob("*.avsc")):
        schema = _read_json(path)
        definitions: dict[str, tuple[dict, str]] = {}
        _collect_definitions(schema, "", definitions, path)
        versions.append(_version(_self_contained(schema, "", definitions, set(), path), path))
    return versions


def _version(schema: Any, path: Path) -> SchemaVersion:
    if not isinstance(schema, dict) or schema.get("type") != "record":
        raise SchemaDefinitionError(f"{path}: the top level must be a record")
    try:
        return SchemaVersion(schema["name"], schema, path)
    except Exception as exc:  # fastavro reports bad schemas with assorted exception types
        raise SchemaDefinitionError(f"{path}: {exc}") from exc


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SchemaDefinitionError(f"{path}: {exc}") from exc


def _full_name(name: str, namespace: str) -> str:
    return name if "." in name or not namespace else f"{namespace}.{name}"


def _collect_definitions(schema: Any, namespace: str, into: dict[str, tuple[dict, str]], path: Path) -> None:
    """Records every named type defined in `schema` as full name -> (definition, its namespace)."""
    if isinstance(schema, list):
        for branch in schema:
            _collect_definitions(branch, namespace, into, path)
    elif isinstance(schema, dict):
        kind = schema.get("type")
        if kind in _NAMED:
            full = _full_name(schema["name"], schema.get("namespace", namespace))
            if full in into:
                raise SchemaDefinitionError(f"{path}: {full} is defined more than once; refer to it by name")
            into[full] = (schema, namespace)
            namespace = full.rpartition(".")[0]
            for record_field in schema.get("fields", ()):
                _collect_definitions(record_field["type"], namespace, into, path)
        elif kind == "array":
            _collect_definitions(schema["items"], namespace, into, path)
        elif kind == "map":
            _collect_definitions(schema["values"], namespace, into, path)
        elif isinstance(kind, (dict, list)):
            _collect_definitions(kind, namespace, into, path)


def _self_contained(
    schema: Any, namespace: str, definitions: dict[str, tuple[dict, str]], defined: set[str], path: Path
) -> Any:
    """A copy of `schema` with full names throughout and each named type defined at its first use."""
    if isinstance(schema, str):
        if schema in _PRIMITIVES:
            return schema
        full = _full_name(schema, namespace)
        if full in defined:
            return full
        if full not in definitions:
            raise SchemaDefinitionError(f"{path}: unknown type {full}")
        definition, definition_namespace = definitions[full]
        return _self_contained(definition, definition_namespace, definitions, defined, path)
    if isinstance(schema, list):
        return [_self_contained(branch, namespace, definitions, defined, path) for branch in schema]
    kind = schema["type"]
    if kind in _NAMED:
        full = _full_name(schema["name"], schema.get("namespace", namespace))
        defined.add(full)
        inner_namespace = full.rpartition(".")[0]
        out = {key: value for key, value in schema.items() if key != "namespace"}
        out["name"] = full
        if "aliases" in schema:
            out["aliases"] = [_full_name(alias, inner_namespace) for alias in schema["aliases"]]
        if "fields" in schema:
            out["fields"] = [
                {**f, "type": _self_contained(f["type"], inner_namespace, definitions, defined, path)}
                for f in schema["fields"]
            ]
        return out
    if kind == "array":
        return {**schema, "items": _self_contained(schema["items"], namespace, definitions, defined, path)}
    if kind == "map":
        return {**schema, "values": _self_contained(schema["values"], namespace, definitions, defined, path)}
    if kind in _PRIMITIVES:
        return dict(schema)
    # {"type": <another schema>}: the wrapper adds nothing
    return _self_contained(kind, namespace, definitions, defined, path)
