"""What the stock processor keeps and emits per SKU besides its stock: the allocation state, the
AllocationChange records, and the reallocation / replenishment signals.

The stock table value is the `StockState` dict with the allocation state under ``alloc`` and the
active signals under ``signals`` (`SkuValue`): one changelog write carries stock and allocation,
so a crash can never leave one ahead of the other. A value written before allocation existed (a
plain StockState dict) reads as a SKU nothing has been allocated for yet, and readers that only
want stock (`StockState.from_dict`) still read new values.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Optional

import orjson

from stockstream.core.allocation import (
    AllocationChangeIntent,
    AllocationMode,
    AllocationRules,
    AllocationState,
    reallocation_signal,
    replenishment_signal,
)
from stockstream.core.stock import StockState
from stockstream.settings import Settings

ALLOC_KEY = "alloc"
SIGNALS_KEY = "signals"
REALLOCATION = "reallocation"
REPLENISHMENT = "replenishment"


@dataclass(slots=True)
class SkuValue:
    stock: StockState
    allocation: AllocationState
    # Active signals: {"reallocation": [short channel, donor channel], "replenishment": True}.
    signals: dict = field(default_factory=dict)

    @classmethod
    def new(cls, sku: str) -> "SkuValue":
        return cls(StockState(sku), AllocationState(sku))

    @classmethod
    def decode(cls, value: bytes) -> "SkuValue":
        data = orjson.loads(value)
        stock = StockState.from_dict(data)
        alloc = data.get(ALLOC_KEY)
        allocation = AllocationState.from_dict(alloc) if alloc is not None else AllocationState(stock.sku)
        return cls(stock, allocation, data.get(SIGNALS_KEY) or {})

    def encode(self) -> bytes:
        data = self.stock.to_dict()
        data[ALLOC_KEY] = self.allocation.to_dict()
        if self.signals:
            data[SIGNALS_KEY] = self.signals
        return orjson.dumps(data)


def change_record(change: AllocationChangeIntent, movement_ids: list[str], event_time_ms: Optional[int] = None) -> dict:
    """An AllocationChangeIntent as a stockstream.AllocationChange record. `event_time_ms`: the
    platform event time of the newest movement behind it (None: no movement, e.g. a rule
    change); the channel sink measures end-to-end latency from it."""
    return {
        "sku": change.sku,
        "channel": change.channel,
        "quantity": change.quantity,
        "previous_quantity": change.previous_quantity,
        "version": change.version,
        "ats": change.ats,
        "ats_version": change.ats_version,
        "rule_version": change.rule_version,
        "mode": change.mode,
        "movement_ids": movement_ids,
        "computed_at_ms": change.computed_at_ms,
        "event_time_ms": event_time_ms,
    }


def current_records(allocation: AllocationState, mode: AllocationMode, now_ms: int) -> list[dict]:
    """The published quantity of every channel again, under the versions it was published with
    (a replay: the first publication may have been lost in a crash after the table write). Sinks
    skip versions they already have. `previous_quantity` is the quantity itself: the state does not
    keep the one before, and nothing changes with this record."""
    if allocation.ats_version is None:
        return []
    return [
        {
            "sku": allocation.sku,
            "channel": channel,
            "quantity": quantity,
            "previous_quantity": quantity,
            "version": allocation.versions[channel],
            "ats": allocation.ats,
            "ats_version": allocation.ats_version,
            "rule_version": allocation.rule_version if allocation.rule_version is not None else 0,
            "mode": mode.value,
            "movement_ids": [],
            "computed_at_ms": now_ms,
            # No new event behind a re-emission: the latency of the first publication was measured.
            "event_time_ms": None,
        }
        for channel, quantity in allocation.quantities.items()
    ]


def signal_changes(value: SkuValue, rules: AllocationRules, ats: int, now_ms: int, settings: Settings) -> list[dict]:
    """Signals whose state changed (raised, or cleared: ``"active": false``) since the value's last
    evaluation; updates `value.signals`. Nothing while a signal merely persists."""
    sku, allocation, active = value.stock.sku, value.allocation, value.signals
    rates = allocation.daily_rates(now_ms)
    out: list[dict] = []

    realloc = None
    if rules.mode is not AllocationMode.SHARED:  # in shared mode every channel sees the same units
        realloc = reallocation_signal(
            sku, allocation.quantities, rates,
            sellout_within_hours=settings.signal_sellout_hours, donor_cover_days=settings.signal_donor_cover_days,
        )
    pair = None if realloc is None else [realloc.short_channel, realloc.donor_channel]
    if pair != active.get(REALLOCATION):
        if realloc is not None:
            active[REALLOCATION] = pair
            out.append({"kind": REALLOCATION, "sku": sku, "active": True, "at_ms": now_ms,
                        "short_channel": realloc.short_channel, "short_quantity": realloc.short_quantity,
                        "hours_to_sellout": realloc.hours_to_sellout, "donor_channel": realloc.donor_channel,
                        "donor_quantity": realloc.donor_quantity, "donor_days_of_cover": realloc.donor_days_of_cover,
                        "units": realloc.units})
        else:
            del active[REALLOCATION]
            out.append({"kind": REALLOCATION, "sku": sku, "active": False, "at_ms": now_ms})

    replenish = replenishment_signal(
        sku, ats, sum(rates.values()),
        lead_time_days=settings.replenishment_lead_time_days, safety_days=settings.replenishment_safety_days,
    )
    if (replenish is not None) != bool(active.get(REPLENISHMENT)):
        if replenish is not None:
            active[REPLENISHMENT] = True
            out.append({"kind": REPLENISHMENT, "sku": sku, "active": True, "at_ms": now_ms, "ats": replenish.ats,
                        "daily_rate": replenish.daily_rate, "days_of_cover": replenish.days_of_cover,
                        "threshold_days": replenish.threshold_days, "units": replenish.units})
        else:
            del active[REPLENISHMENT]
            out.append({"kind": REPLENISHMENT, "sku": sku, "active": False, "at_ms": now_ms})
    return out


def newest_event_time(event_times_ms: Iterable[int]) -> Optional[int]:
    """The event time an allocation change is measured from: the newest of the movements applied
    for its SKU in the batch (the change reflects them all; older ones were already late when the
    newest arrived). None when no movement was applied."""
    return max(event_times_ms, default=None)


def encode_signal(signal: dict) -> bytes:
    # Infinite cover (a donor selling nothing) has no JSON number: orjson writes null.
    return orjson.dumps(signal)

