"""Movements -> per-SKU stock state and ATS snapshots.

Plain Python over a key-value store: the Faust agent hands in one MovementBatch record and the
table of its partition. Each SKU of the batch is read once, all its movements applied in order,
and written once (one changelog message per SKU per batch, not per movement).

Allocation runs here too, on the new ATS of each SKU the batch changed: the per-channel quantities
(stockstream/core/allocation.py) under the SKU's rules, with the units its RESERVE movements sold
per channel as sell-through. The allocation state lives in the same table value as the stock
(streams/sku_allocation.py), so one write carries both.

Redelivery: a SKU whose movements in a batch are all replays (the batch was applied before a
crash or rebalance) gets its current ATS snapshot and every channel's current allocation emitted
again, under the versions already published: the crash may have come after the table write and
before the sends. Consumers skip versions they have.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable, Optional, Protocol

import orjson

from schemas import codec
from schemas.batches import decode_movements
from schemas.errors import CodecError
from schemas.mappers import movement_to_record
from schemas.names import ALLOCATION_CHANGE, ATS_SNAPSHOT, MOVEMENT
from stockstream.core.allocation import AllocationRules, allocate
from stockstream.core.movements import Movement, MovementType
from stockstream.core.stock import Outcome, StockState, apply_movement, ats
from stockstream.rules_topic import settings_default_rules
from stockstream.settings import Settings
from streams.normalize import KeyValueStore, quarantine_record
from streams.sku_allocation import SkuValue, change_record, current_records, encode_signal, newest_event_time, signal_changes

# Orders that take units from a listing or give them back: the marketplace moves the listing's
# stock itself, so the channel is published again (stockstream/core/allocation.py, Re-publishing).
_LISTING_MOVES = frozenset({MovementType.RESERVE, MovementType.RELEASE})

MALFORMED_MOVEMENTS = "malformed_movements"
INVALID_MOVEMENT = "invalid_movement"


class RulesSource(Protocol):
    def rules_for(self, sku: str) -> AllocationRules: ...


class FixedRules:
    """The same rules for every SKU (no rules feed: tests, tools)."""

    def __init__(self, rules: AllocationRules) -> None:
        self.rules = rules

    def rules_for(self, sku: str) -> AllocationRules:
        return self.rules


@dataclass
class StockOutput:
    ats_records: list[tuple[bytes, bytes]] = field(default_factory=list)  # (sku, AtsSnapshot)
    allocation_records: list[tuple[bytes, bytes]] = field(default_factory=list)  # (sku, AllocationChange)
    signal_records: list[tuple[bytes, bytes]] = field(default_factory=list)  # (sku, JSON)
    quarantined: list[tuple[Optional[bytes], bytes]] = field(default_factory=list)  # (key, QuarantineRecord)
    quarantine_reasons: Counter = field(default_factory=Counter)
    allocation_changes: Counter = field(default_factory=Counter)  # channel -> changes (not re-emissions)
    signals: Counter = field(default_factory=Counter)  # kind -> records
    applied: int = 0
    replayed: int = 0
    reemitted_skus: int = 0  # SKUs whose batch was all replays: current ATS / allocation sent again

    def quarantine(self, key: Optional[bytes], where: dict, reason_code: str, reason: str) -> None:
        self.quarantined.append((key, quarantine_record(where, reason_code, reason)))
        self.quarantine_reasons[reason_code] += 1


def load_state(value: Optional[bytes]) -> Optional[StockState]:
    """The stock of a table value (the allocation parts are ignored)."""
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
    def __init__(self, settings: Settings, rules: Optional[RulesSource] = None) -> None:
        self.settings = settings
        self.rules = rules if rules is not None else FixedRules(settings_default_rules(settings))

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
            stored = store.get(key)
            value = SkuValue.decode(stored) if stored is not None else SkuValue.new(sku)
            state = value.stock
            applied_ids = []
            applied_event_times: list[int] = []
            sales: dict[str, int] = {}
            moved_listings: set[str] = set()
            replays = 0
            for movement in movements:
                try:
                    outcome = apply_movement(state, movement)
                except ValueError as exc:  # raised before the state changes: skip it, keep the rest
                    outcome, reason = Outcome.INVALID, str(exc)
                else:
                    reason = f"movement {movement.movement_id} of type {movement.type.value} cannot be applied"
                if outcome is Outcome.APPLIED:
                    applied_ids.append(movement.movement_id)
                    applied_event_times.append(movement.event_time_ms)
                    if movement.channel is not None and movement.type in _LISTING_MOVES:
                        moved_listings.add(movement.channel)
                        if movement.type is MovementType.RESERVE:
                            sales[movement.channel] = sales.get(movement.channel, 0) + movement.quantity
                elif outcome is Outcome.INVALID:
                    where = {"topic": topic, "partition": partition, "offset": offset, "key": key,
                             "value": codec.encode(MOVEMENT, movement_to_record(movement))}
                    output.quarantine(key, where, INVALID_MOVEMENT, reason)
                else:
                    if outcome is Outcome.REPLAY:
                        replays += 1
                    output.replayed += 1
            if applied_ids:
                output.applied += len(applied_ids)
                output.ats_records.append((key, codec.encode(ATS_SNAPSHOT, snapshot_record(state, applied_ids, now_ms))))
                self._allocate(key, value, now_ms, output, applied_ids, sales, moved_listings,
                               event_time_ms=newest_event_time(applied_event_times))
                store.put(key, value.encode())
            elif replays == len(movements):
                self._reemit(key, value, now_ms, output)
                # Written again unchanged: the first write may have reached this worker's local
                # state but not the changelog (killed in between). Without it, whoever recovers
                # the partition from the changelog would miss movements the input commit covers.
                store.put(key, value.encode())
        return output

    def reallocate(self, keys: Iterable[bytes], store: KeyValueStore) -> StockOutput:
        """Allocate the stored SKUs `keys` again under their current rules (a rule change). A SKU
        already allocated under these rules and this ATS (the command is a redelivery, or a batch
        got there first) has its current allocation re-emitted, like a replayed batch."""
        output = StockOutput()
        now_ms = int(time.time() * 1000)
        for key in keys:
            stored = store.get(key)
            if stored is None:
                continue  # no movement seen: nothing to allocate
            value = SkuValue.decode(stored)
            allocation, rules = value.allocation, self.rules.rules_for(value.stock.sku)
            done = (allocation.ats_version, allocation.rule_version) == (value.stock.version, rules.version)
            if done:
                self._reemit(key, value, now_ms, output, ats_snapshot=False)
                continue
            self._allocate(key, value, now_ms, output, [], None)
            store.put(key, value.encode())
        return output

    def _allocate(
        self, key: bytes, value: SkuValue, now_ms: int, output: StockOutput, movement_ids: list[str],
        sales: Optional[dict[str, int]], moved_listings: Iterable[str] = (), event_time_ms: Optional[int] = None,
    ) -> None:
        state = value.stock
        rules = self.rules.rules_for(state.sku)
        current_ats = ats(state)
        _, changes = allocate(
            value.allocation, current_ats, state.version, rules, now_ms,
            sales_by_channel=sales, presale_allowance=state.presale_allowance, republish=moved_listings,
        )
        for change in changes:
            output.allocation_records.append((key, codec.encode(ALLOCATION_CHANGE, change_record(change, movement_ids, event_time_ms))))
            output.allocation_changes[change.channel] += 1
        for signal in signal_changes(value, rules, current_ats, now_ms, self.settings):
            output.signal_records.append((key, encode_signal(signal)))
            output.signals[signal["kind"]] += 1

    def _reemit(self, key: bytes, value: SkuValue, now_ms: int, output: StockOutput, ats_snapshot: bool = True) -> None:
        output.reemitted_skus += 1
        if ats_snapshot:
            output.ats_records.append((key, codec.encode(ATS_SNAPSHOT, snapshot_record(value.stock, [], now_ms))))
        mode = self.rules.rules_for(value.stock.sku).mode
        for record in current_records(value.allocation, mode, now_ms):
            output.allocation_records.append((key, codec.encode(ALLOCATION_CHANGE, record)))
