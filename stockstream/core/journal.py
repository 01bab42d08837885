"""The ERP journal: on-hand changes of the ledger summed per (SKU, location, reason, window).

One `PartitionJournal` follows one partition of the `movements` topic, record by record, in offset
order. It is pure: the process around it (`streams/erp_journal.py`) feeds it records, publishes
the entries it returns and commits what `resume_point` says.

**What an entry's quantity is.** Every movement is applied to a shadow copy of the SKU's stock
(`stockstream.core.stock.apply_movement`, the very function the stock agent runs on the very same
partition in the very same order), and the entry takes the change of `on_hand` at the movement's
location, after minus before. So the journal of a (SKU, location) always sums to the on_hand
stockstream shows, whatever the movement:

* ``STOCK_COUNT`` is absolute: its delta is known only to the stock state. The shadow state knows
  it exactly (count minus the on_hand it re-bases), including the stock core's event-time rules: a
  count older than the current one is superseded (delta 0), deltas dated before a count are
  already in it (delta 0). Journaled as COUNT_CORRECTION.
* Replays (a movement delivered twice after a crash) are recognised by their origin marks, as in
  the stock agent: delta 0.
* Movements that change no on_hand (RESERVE, RELEASE, RETURN_RECEIVED, RETURN_SCRAPPED, settings)
  add nothing. Neither do malformed or UNKNOWN movements (the stock agent quarantines them).

Entries whose movements sum to 0 are not emitted: the ERP takes adjustments, and a zero adjustment
is none. The ledger keeps every movement for audit.

**Windows are deterministic.** A record's window comes from its Kafka timestamp (stored in the
log, so a re-read sees the same one). Each partition keeps an effective time ``H``: a record's
effective time is ``max(its timestamp, H)`` and becomes the new ``H``, so windows follow offsets
even if timestamps step back (a worker with a slower clock taking the partition over). A window ``[w, w+W)`` closes when a record with
effective time ``>= w + W + grace`` arrives, or, with the consumer caught up, when the wall clock
passes ``w + W + grace`` (idle flush; the window's end is then folded into ``H``, so a record the
broker stamps into an already closed window goes into the next one instead).

**Restart.** `resume_point` is the first offset of the oldest open window (everything before it
is in emitted windows) together with ``H`` as it was before that window's first record. Re-reading
from there with that ``H`` (after re-applying the earlier records to the shadow stock with
`warm`) rebuilds the same windows with the same contents and ids. The one gap: a crash in the
moment between publishing an idle-flushed window and committing, when meanwhile the broker stamped
a record into that window (broker and journal clocks more than `grace` apart): the re-emission
then has one more movement under the same external id (the ERP's upsert takes the newer content).

External ids hash (SKU, location, reason, partition, window start): the same window re-emitted
after a crash has the same id and, by the above, the same content.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from enum import Enum
from typing import Iterable, Optional

from stockstream.core.movements import Movement
from stockstream.core.stock import Outcome, StockState, apply_movement


class JournalReason(str, Enum):
    SALE_SHIPMENT = "SALE_SHIPMENT"
    RECEIPT = "RECEIPT"
    RETURN_RESTOCK = "RETURN_RESTOCK"
    SCRAP = "SCRAP"
    COUNT_CORRECTION = "COUNT_CORRECTION"
    TRANSFER = "TRANSFER"
    CUSTOMS = "CUSTOMS"
    ADJUSTMENT = "ADJUSTMENT"


# By MovementType value.
_REASON_BY_TYPE = {
    "SHIP": JournalReason.SALE_SHIPMENT,
    # A shipment re-dated across a stock count corrects what its SHIP did to on_hand.
    "SHIP_REDATE": JournalReason.SALE_SHIPMENT,
    "RECEIPT": JournalReason.RECEIPT,
    "RETURN_RESTOCKED": JournalReason.RETURN_RESTOCK,
    # Scrapping a return takes it out of inspection, not on_hand: mapped for completeness, it
    # journals nothing today (its on_hand delta is 0).
    "RETURN_SCRAPPED": JournalReason.SCRAP,
    "STOCK_COUNT": JournalReason.COUNT_CORRECTION,
    "TRANSFER_OUT": JournalReason.TRANSFER,
    "TRANSFER_IN": JournalReason.TRANSFER,
    "CUSTOMS_HOLD": JournalReason.CUSTOMS,
    "CUSTOMS_RELEASE": JournalReason.CUSTOMS,
    "ADJUSTMENT": JournalReason.ADJUSTMENT,
}


def journal_reason(m: Movement) -> Optional[JournalReason]:
    """The ERP reason of a movement; None for movements that never change on_hand."""
    reason = _REASON_BY_TYPE.get(m.type.value)
    # Warehouses write scrap and write-offs as adjustments with a reason text.
    if reason is JournalReason.ADJUSTMENT and m.reason and m.reason.strip().lower().startswith("scrap"):
        return JournalReason.SCRAP
    return reason


def journal_external_id(sku: str, location: str, reason: str, partition: int, window_start_ms: int) -> str:
    parts = ("erp-journal", sku, location, reason, partition, window_start_ms)
    return hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=16).hexdigest()


@dataclass(frozen=True)
class JournalEntry:
    external_id: str
    sku: str
    location: str
    reason: str
    quantity_delta: int
    window_start_ms: int
    window_end_ms: int
    movement_count: int
    movement_ids: tuple[str, ...]
    # The newest effective time of a record in the window: fixed by the ledger, so a re-emission
    # is identical (a wall-clock time would not be).
    created_at_ms: int

    def to_record(self) -> dict:
        """The stockstream.ErpJournalEntry Avro record."""
        return {
            "external_id": self.external_id,
            "sku": self.sku,
            "location": self.location,
            "reason": self.reason,
            "quantity_delta": self.quantity_delta,
            "window_start_ms": self.window_start_ms,
            "window_end_ms": self.window_end_ms,
            "movement_count": self.movement_count,
            "movement_ids": list(self.movement_ids),
            "created_at_ms": self.created_at_ms,
        }

    @classmethod
    def from_record(cls, record: dict) -> "JournalEntry":
        return cls(**{**record, "movement_ids": tuple(record["movement_ids"])})


@dataclass(frozen=True)
class ResumePoint:
    """Where a restart re-reads from, and the effective time ``H`` just before that record."""

    offset: int
    high_water_ms: Optional[int]

    def metadata(self) -> str:
        """For the Kafka offset commit's metadata string."""
        return "" if self.high_water_ms is None else f"h={self.high_water_ms}"

    @staticmethod
    def high_water_from_metadata(metadata: Optional[str]) -> Optional[int]:
        if metadata and metadata.startswith("h="):
            return int(metadata[2:])
        return None


@dataclass
class _Window:
    start_ms: int
    first_offset: int
    high_water_before: Optional[int]  # H before the first record of the window
    newest_ms: int = 0
    # (sku, location, reason) -> [delta, movement ids]
    sums: dict[tuple[str, str, str], list] = field(default_factory=dict)


class PartitionJournal:
    def __init__(
        self,
        partition: int,
        window_ms: int,
        grace_ms: int = 0,
        *,
        high_water_ms: Optional[int] = None,
        stocks: Optional[dict[str, StockState]] = None,
    ) -> None:
        if window_ms <= 0 or grace_ms < 0:
            raise ValueError("window must be positive and grace non-negative")
        self.partition = partition
        self.window_ms = window_ms
        self.grace_ms = grace_ms
        self.high_water_ms = high_water_ms
        self.stocks: dict[str, StockState] = {} if stocks is None else stocks
        self._open: dict[int, _Window] = {}  # by start; insertion order is start order

    # ---------------------------------------------------------------- feeding

    def warm(self, movements: Iterable[Movement]) -> None:
        """Apply already journaled movements (before the resume point) to the shadow stock only."""
        for m in movements:
            self._apply(m)

    def add(self, offset: int, timestamp_ms: int, movements: Iterable[Movement]) -> list[JournalEntry]:
        """One `movements` record; returns the entries of the windows it closes."""
        high_water_before = self.high_water_ms
        effective = timestamp_ms if high_water_before is None else max(timestamp_ms, high_water_before)
        self.high_water_ms = effective
        closed = self._close_until(effective - self.grace_ms)
        start = effective - effective % self.window_ms
        window = self._open.get(start)
        if window is None:
            window = self._open[start] = _Window(start, offset, high_water_before)
        window.newest_ms = max(window.newest_ms, effective)
        for m in movements:
            delta = self._apply(m)
            if delta is None:
                continue
            reason = journal_reason(m)
            slot = window.sums.get((m.sku, m.location, reason.value))
            if slot is None:
                slot = window.sums[(m.sku, m.location, reason.value)] = [0, []]
            slot[0] += delta
            slot[1].append(m.movement_id)
        return closed

    def flush_idle(self, now_ms: int) -> list[JournalEntry]:
        """Close the windows the wall clock has passed (end + grace <= now). Only call it when the
        consumer has read everything the partition held when `now_ms` was taken."""
        return self._close_until(now_ms - self.grace_ms)

    def flush_all(self) -> list[JournalEntry]:
        """Close every open window (tests, a final drain)."""
        return self._close_until(None)

    # ---------------------------------------------------------------- committing

    def resume_point(self, next_offset: int) -> ResumePoint:
        """What to commit once everything returned so far is published: `next_offset` is the
        offset after the last record added."""
        if self._open:
            oldest = next(iter(self._open.values()))
            return ResumePoint(oldest.first_offset, oldest.high_water_before)
        return ResumePoint(next_offset, self.high_water_ms)

    @property
    def open_windows(self) -> int:
        return len(self._open)

    @property
    def next_close_ms(self) -> Optional[int]:
        """When the wall clock closes the oldest open window (end + grace); None: none open."""
        if not self._open:
            return None
        return next(iter(self._open)) + self.window_ms + self.grace_ms

    # ---------------------------------------------------------------- internals

    def _apply(self, m: Movement) -> Optional[int]:
        """Apply to the shadow stock; the on_hand delta at the movement's location when it is
        journaled (an on-hand movement that took effect), else None."""
        state = self.stocks.get(m.sku)
        if state is None:
            state = self.stocks[m.sku] = StockState(m.sku)
        before: Optional[int] = None
        if m.location is not None and journal_reason(m) is not None:
            loc = state.locations.get(m.location)
            before = 0 if loc is None else loc.on_hand
        try:
            outcome = apply_movement(state, m)
        except ValueError:
            return None  # malformed (no location...): the stock agent quarantines it
        if before is None or outcome is not Outcome.APPLIED:
            return None
        return state.locations[m.location].on_hand - before

    def _close_until(self, until_ms: Optional[int]) -> list[JournalEntry]:
        """Emit and drop the open windows ending at or before `until_ms` (None: all)."""
        entries: list[JournalEntry] = []
        for start in list(self._open):
            end = start + self.window_ms
            if until_ms is not None and end > until_ms:
                break
            window = self._open.pop(start)
            entries.extend(self._entries(window))
            # Fold the end into H: a record stamped into a closed window goes into a later one.
            if self.high_water_ms is None or self.high_water_ms < end:
                self.high_water_ms = end
        return entries

    def _entries(self, window: _Window) -> list[JournalEntry]:
        end = window.start_ms + self.window_ms
        entries = []
        for (sku, location, reason), (delta, ids) in sorted(window.sums.items()):
            if delta == 0:
                continue
            entries.append(
                JournalEntry(
                    external_id=journal_external_id(sku, location, reason, self.partition, window.start_ms),
                    sku=sku,
                    location=location,
                    reason=reason,
                    quantity_delta=delta,
                    window_start_ms=window.start_ms,
                    window_end_ms=end,
                    movement_count=len(ids),
                    movement_ids=tuple(ids),
                    created_at_ms=window.newest_ms,
                )
            )
        return entries
