"""Movements -> per-SKU stock state and ATS snapshots.

Plain Python over a key-value store: the Faust agent hands in one MovementBatch record and the
table of its partition. Each SKU of the batch is read once, all its movements applied in order,
and written once (one changelog message per SKU per batch, not per movement).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Optional

import orjson

from schemas import codec
from schemas.batches import decode_movements
from schemas.names import ATS_SNAPSHOT
from stockstream.core.movements import Movement
from stockstream.core.stock import StockState, apply_movements, ats
from stockstream.settings import Settings
from streams.normalize import KeyValueStore


@dataclass
class StockOutput:
    ats_records: list[tuple[bytes, bytes]] = field(default_factory=list)  # (sku, AtsSnapshot)
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

    def process(self, batch_value: bytes, partition: int, store: KeyValueStore) -> StockOutput:
        output = StockOutput()
        by_sku: dict[str, list[Movement]] = {}
        for movement in decode_movements(batch_value):
            by_sku.setdefault(movement.sku, []).append(movement)
        now_ms = int(time.time() * 1000)
        for sku, movements in by_sku.items():
            key = sku.encode()
            state, applied_ids = apply_movements(load_state(store.get(key)), movements)
            output.replayed += len(movements) - len(applied_ids)
            if not applied_ids:
                continue
            output.applied += len(applied_ids)
            store.put(key, orjson.dumps(state.to_dict()))
            output.ats_records.append((key, codec.encode(ATS_SNAPSHOT, snapshot_record(state, applied_ids, now_ms))))
        return output
