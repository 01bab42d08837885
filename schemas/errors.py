"""Why a record could not be encoded or decoded. `reason_code` is what quarantine records carry."""

from __future__ import annotations

from typing import ClassVar


class CodecError(ValueError):
    reason_code: ClassVar[str] = "CODEC_ERROR"


class MalformedRecordError(CodecError):
    """The bytes are not a single-object-encoded Avro datum: bad marker, truncated, trailing bytes,
    or a body that does not parse."""

    reason_code = "MALFORMED_AVRO"


class UnknownSchemaError(CodecError):
    """The writer schema's fingerprint is not among the versions this process knows."""

    reason_code = "UNKNOWN_SCHEMA"

    def __init__(self, message: str, fingerprint: bytes) -> None:
        super().__init__(message)
        self.fingerprint = fingerprint


class UnexpectedSchemaError(CodecError):
    """The record is well-formed but of another type than the reader asked for."""

    reason_code = "UNEXPECTED_SCHEMA"


class IncompatibleSchemaError(CodecError):
    """The writer version cannot be resolved to the current reader version (a broken evolution)."""

    reason_code = "INCOMPATIBLE_SCHEMA"


class RecordEncodingError(CodecError):
    """The record does not fit the schema it is written with: a bug in the producing code."""

    reason_code = "ENCODING_ERROR"
