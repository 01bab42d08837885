"""Avro schemas of stockstream's topics and the codec that writes and reads them.

Wire format: Avro single-object encoding (marker, CRC-64-AVRO fingerprint of the writer schema,
binary body). Readers find the writer version by fingerprint among the current schemas and
`history/`, and resolve it to the current version.

Changing a schema without breaking running consumers:
- run `python -m schemas.snapshot` first, so the version on the wire stays readable;
- only add fields with a default, or remove fields that have one; never rename or retype;
- a process can only read a writer version it knows: readers must ship a new version (e.g. in
  `history/`) before any writer produces it. Enum symbols unknown to a reader read as the enum's
  default.
"""

from schemas.batches import decode_ingest, decode_movements, encode_ingest, encode_movements
from schemas.codec import Codec, decode, default_codec, encode
from schemas.errors import (
    CodecError,
    IncompatibleSchemaError,
    MalformedRecordError,
    RecordEncodingError,
    UnexpectedSchemaError,
    UnknownSchemaError,
)
from schemas.mappers import movement_from_record, movement_to_record
from schemas.names import (
    ALLOCATION_CHANGE,
    ATS_SNAPSHOT,
    ERP_JOURNAL_ENTRY,
    INGEST_BATCH,
    MOVEMENT,
    MOVEMENT_BATCH,
    QUARANTINE_RECORD,
    RAW_RECORD,
)
from schemas.registry import SchemaDefinitionError, SchemaRegistry, SchemaVersion, fingerprint

__all__ = [
    "ALLOCATION_CHANGE",
    "ATS_SNAPSHOT",
    "Codec",
    "CodecError",
    "ERP_JOURNAL_ENTRY",
    "INGEST_BATCH",
    "IncompatibleSchemaError",
    "MOVEMENT",
    "MOVEMENT_BATCH",
    "MalformedRecordError",
    "QUARANTINE_RECORD",
    "RAW_RECORD",
    "RecordEncodingError",
    "SchemaDefinitionError",
    "SchemaRegistry",
    "SchemaVersion",
    "UnexpectedSchemaError",
    "UnknownSchemaError",
    "decode",
    "decode_ingest",
    "decode_movements",
    "default_codec",
    "encode",
    "encode_ingest",
    "encode_movements",
    "fingerprint",
    "movement_from_record",
    "movement_to_record",
]
