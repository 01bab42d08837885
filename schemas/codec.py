"""Encodes and decodes records as Avro single-object encoding with pre-parsed schemas.

Reading resolves the writer version (found by fingerprint, current or historical) to the current
version of the same name, so callers always see today's shape: fields added since are filled
from their defaults.

Avro binary carries no checksum: a corrupted body can still decode to plausible values. What
this module guarantees is that bad input raises a `CodecError` naming the problem (its
`reason_code` is meant for quarantine records); programming errors such as an unknown schema
name raise KeyError.
"""

from __future__ import annotations

import functools
from io import BytesIO
from typing import Optional

from fastavro import schemaless_reader, schemaless_writer
from fastavro.read import SchemaResolutionError

from schemas.errors import (
    IncompatibleSchemaError,
    MalformedRecordError,
    RecordEncodingError,
    UnexpectedSchemaError,
    UnknownSchemaError,
)
from schemas.framing import HEADER_SIZE, MARKER
from schemas.registry import SchemaRegistry, SchemaVersion

# What fastavro raises on bodies that do not parse (short reads, bad UTF-8, union or enum
# indexes out of range, varints too long...).
_BODY_ERRORS = (EOFError, ValueError, IndexError, KeyError, TypeError, OverflowError)


class Codec:
    def __init__(self, registry: SchemaRegistry) -> None:
        self.registry = registry

    def encode(self, name: str, record: dict) -> bytes:
        """`record` in the current version of schema `name` (full name, e.g. stockstream.Movement)."""
        version = self.registry.current_version(name)
        out = BytesIO()
        out.write(version.header)
        try:
            # strict: a missing or misspelt field is an error rather than a silent null
            schemaless_writer(out, version.parsed, record, strict=True)
        except (TypeError, ValueError, KeyError, AttributeError, OverflowError) as exc:
            raise RecordEncodingError(f"record does not fit {name}: {type(exc).__name__}: {exc}") from exc
        return out.getvalue()

    def decode(self, data: bytes, reader: Optional[str] = None) -> dict:
        """The record in `data`, in the current version of `reader` (default: of the writer's name).

        With `reader` given, a record of any other type raises `UnexpectedSchemaError`.
        """
        writer = self.writer_version(data)
        if reader is not None and reader != writer.name:
            self.registry.current_version(reader)  # a typo in `reader` is a KeyError, not bad input
            raise UnexpectedSchemaError(
                f"expected {reader}, got a record written as {writer.name} (fingerprint {writer.fingerprint.hex()})"
            )
        current = self.registry.current.get(writer.name)
        # Same fingerprint: fastavro skips schema resolution entirely.
        reader_schema = None if current is None or current is writer else current.parsed
        body = BytesIO(data)
        body.seek(HEADER_SIZE)
        try:
            record = schemaless_reader(body, writer.parsed, reader_schema)
        except SchemaResolutionError as exc:
            raise IncompatibleSchemaError(
                f"{writer.name} written with fingerprint {writer.fingerprint.hex()} cannot be read as the "
                f"current version ({current.fingerprint.hex() if current else '-'}): {exc}"
            ) from exc
        except _BODY_ERRORS as exc:
            # fastavro reports a short read as EOFError or, inside a varint, as IndexError.
            if isinstance(exc, (EOFError, IndexError)) and body.tell() >= len(data):
                raise MalformedRecordError(
                    f"truncated: the {writer.name} body ends after {len(data) - HEADER_SIZE} bytes, "
                    "before the record is complete"
                ) from exc
            raise MalformedRecordError(
                f"{writer.name} body (fingerprint {writer.fingerprint.hex()}) does not parse: "
                f"{type(exc).__name__}: {exc or 'unexpected end of data'}"
            ) from exc
        if body.tell() != len(data):
            raise MalformedRecordError(
                f"{len(data) - body.tell()} trailing bytes after the {writer.name} body (record is {len(data)} bytes)"
            )
        return record

    def writer_version(self, data: bytes) -> SchemaVersion:
        """The schema version `data` was written with, from its single-object header."""
        if data is None:
            raise MalformedRecordError("no value (a tombstone?) where an Avro record was expected")
        if len(data) < HEADER_SIZE:
            raise MalformedRecordError(
                f"{len(data)} bytes is shorter than the {HEADER_SIZE}-byte single-object header "
                f"(got {bytes(data[:HEADER_SIZE]).hex() or 'nothing'})"
            )
        if data[: len(MARKER)] != MARKER:
            raise MalformedRecordError(
                f"not Avro single-object encoding: first bytes are {bytes(data[:2]).hex()}, expected {MARKER.hex()}"
            )
        fingerprint = bytes(data[len(MARKER) : HEADER_SIZE])
        version = self.registry.by_fingerprint.get(fingerprint)
        if version is None:
            raise UnknownSchemaError(
                f"unknown writer schema: CRC-64-AVRO fingerprint 0x{int.from_bytes(fingerprint, 'little'):016x} "
                f"(wire bytes {fingerprint.hex()}) is not among the {len(self.registry.by_fingerprint)} "
                "known schema versions",
                fingerprint,
            )
        return version


@functools.cache
def default_codec() -> Codec:
    """The codec over the schemas shipped in this package, built on first use."""
    return Codec(SchemaRegistry.load())


def encode(name: str, record: dict) -> bytes:
    return default_codec().encode(name, record)


def decode(data: bytes, reader: Optional[str] = None) -> dict:
    return default_codec().decode(data, reader)
