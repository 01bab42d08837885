"""The hot path: whole batches of movements or raw records in one Kafka record value."""

from __future__ import annotations

from typing import Iterable, Optional

from schemas.codec import Codec, default_codec
from schemas.mappers import movement_from_record, movement_to_record
from schemas.names import INGEST_BATCH, MOVEMENT_BATCH
from stockstream.core.movements import Movement


def encode_movements(movements: Iterable[Movement], codec: Optional[Codec] = None) -> bytes:
    records = [movement_to_record(movement) for movement in movements]
    return (codec or default_codec()).encode(MOVEMENT_BATCH, {"movements": records})


def decode_movements(data: bytes, codec: Optional[Codec] = None) -> list[Movement]:
    batch = (codec or default_codec()).decode(data, MOVEMENT_BATCH)
    return [movement_from_record(record) for record in batch["movements"]]


def encode_ingest(records: Iterable[dict], codec: Optional[Codec] = None) -> bytes:
    """`records` are stockstream.RawRecord dicts."""
    return (codec or default_codec()).encode(INGEST_BATCH, {"records": list(records)})


def decode_ingest(data: bytes, codec: Optional[Codec] = None) -> list[dict]:
    return (codec or default_codec()).decode(data, INGEST_BATCH)["records"]
