"""Movements -> per-SKU stock state and ATS snapshots.

Plain Python over a key-value store: the Faust agent hands in one MovementBatch record and the
table of its partition. Each SKU of the batch is read once, all its movements applied in order,
and written once (one changelog message per SKU per batch, not per movement).
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Optional

import orjson

from schemas import codec
from schemas.batches import decode_movements
from schemas.errors import CodecError
from schemas.mappers import movement_to_record
from schemas.names import ATS_SNAPSHOT, MOVEMENT
from stockstream.core.movements import Movement
from stockstream.core.stock import Outcome, StockState, apply_movement, ats
from stockstream.settings import Settings
from streams.normalize import KeyValueStore, quarantine_record

MALFORMED_MOVEMENTS = "malformed_movements"
INVALID_MOVEMENT = "invalid_movement"


@dataclass
class StockOutput:
    ats_records: list[tuple[bytes, bytes]] = field(default_factory=list)  # (sku, AtsSnapshot)
    quarantined: list[tuple[Optional[bytes], bytes]] = field(default_factory=list)  # (key, QuarantineRecord)
    quarantine_reasons: Counter = field(default_factory=Counter)

    def quarantine(self, key: Optional[bytes], where: dict, reason_code: str, reason: str) -> None:
        self.quarantined.append((key, quarantine_record(where, reason_code, reason)))
        self.quarantine_reasons[reason_code] += 1
    applied: int = 0
    replayed: int = 0


def load_state(value: Optional[bytes]) -> Optional[StockState]:
    return None if value is None else StockState.from_dict(orjson.loads(value))


def snapshot_record(state: StockState, movement_ids: list[str], now_ms: int) -> dict:
    return {
        "sku": state.sku,
        "version": state.version,
        "ats": ats(state),
        "sellable_on_hand": state.on_hand,
        "reserved": state.total_reserved,
        "safety_stock": state.safety_stock,
        "presale_allowance": state.presale_allowance,
        "locations": {
            name: {
                "on_hand": loc.on_hand,
                "customs_hold": loc.customs_hold,
                "inspection": loc.inspection,
                "in_transit": loc.in_transit,
            }
            for name, loc in state.locations.items()
        },
        "reserved_by_channel": dict(state.reserved),
        "movement_ids": movement_ids,
        "updated_at_ms": now_ms,
    }


class StockProcessor:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def process(self, batch_value: bytes, source: tuple[str, int, int], store: KeyValueStore) -> StockOutput:
        """`source` is the (topic, partition, offset) of the batch record, for quarantine records."""
        output = StockOutput()
        topic, partition, offset = source
        try:
            batch = decode_movements(batch_value)
        except CodecError as exc:
            where = {"topic": topic, "partition": partition, "offset": offset, "value": batch_value}
            output.quarantine(None, where, MALFORMED_MOVEMENTS, str(exc))
            return output
        by_sku: dict[str, list[Movement]] = {}
        for movement in batch:
            by_sku.setdefault(movement.sku, []).append(movement)
        now_ms = int(time.time() * 1000)
        for sku, movements in by_sku.items():
            key = sku.encode()
            state = load_state(store.get(key)) or StockState(sku)
            applied_ids = []
            for movement in movements:
                try:
                    outcome = apply_movement(state, movement)
                except ValueError as exc:  # raised before the state changes: skip it, keep the rest
                    outcome, reason = Outcome.INVALID, str(exc)
                else:
                    reason = f"movement {movement.movement_id} of type {movement.type.value} cannot be applied"
                if outcome is Outcome.APPLIED:
                    applied_ids.append(movement.movement_id)
                elif outcome is Outcome.INVALID:
                    where = {"topic": topic, "partition": partition, "offset": offset, "key": key,
                             "value": codec.encode(MOVEMENT, movement_to_record(movement))}
                    output.quarantine(key, where, INVALID_MOVEMENT, reason)
                else:
                    output.replayed += 1
            if not applied_ids:
                continue
            output.applied += len(applied_ids)
            store.put(key, orjson.dumps(state.to_dict()))
            output.ats_records.append((key, codec.encode(ATS_SNAPSHOT, snapshot_record(state, applied_ids, now_ms))))
        return output
