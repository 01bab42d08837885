"""The sink's memory: the latest allocation per (master SKU, channel), the listings due for a
push, and what was last pushed to each listing. Pure: no Kafka, no HTTP, no clock of its own.

Coalescing and ordering:
* an allocation is taken only if its version is higher than the one known for its (SKU,
  channel); equal versions (replays re-emit them) and older ones (late deliveries) are dropped;
* a listing due several times before its push is pushed once, with the quantity computed from
  the latest allocations at the moment the push starts;
* a listing has at most one push in flight (`in_flight`), so a push started later always
  carries a quantity from versions at least as new: no older quantity after a newer one.

A dead-letter retry re-delivers an allocation with its version unchanged (`retry=True`): if it is
still the latest, the listings are pushed again even when the quantity looks unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Callable, Iterable, Optional

from sinks.offsets import OffsetTracker, Position
from sinks.targets import Target, TargetIndex
from stockstream.core.allocation import bundle_allocation

Key = tuple[str, str]  # (channel, platform SKU id)


@dataclass(frozen=True, slots=True)
class Allocation:
    """The fields of a stockstream.AllocationChange the sink keeps (movement ids are dropped)."""

    sku: str
    channel: str
    quantity: int
    version: int
    computed_at_ms: int
    previous_quantity: int = 0
    ats: int = 0
    ats_version: int = 0
    rule_version: int = 0
    mode: str = ""
    event_time_ms: Optional[int] = None  # platform event behind it (end-to-end latency); None: re-emission

    @classmethod
    def from_record(cls, record: dict) -> "Allocation":
        return cls(
            record["sku"], record["channel"], int(record["quantity"]), int(record["version"]), int(record["computed_at_ms"]),
            int(record.get("previous_quantity", 0)), int(record.get("ats", 0)), int(record.get("ats_version", 0)),
            int(record.get("rule_version", 0)), str(record.get("mode", "")), record.get("event_time_ms"),
        )

    def as_record(self) -> dict:
        """A stockstream.AllocationChange record (movement ids empty)."""
        return {
            "sku": self.sku, "channel": self.channel, "quantity": self.quantity,
            "previous_quantity": self.previous_quantity, "version": self.version, "ats": self.ats,
            "ats_version": self.ats_version, "rule_version": self.rule_version, "mode": self.mode,
            "movement_ids": [], "computed_at_ms": self.computed_at_ms, "event_time_ms": self.event_time_ms,
        }


class Verdict(str, Enum):
    APPLIED = "applied"  # newer version: its listings are due
    RETRY = "retry"  # a dead-letter retry of the latest version: its listings are due again
    STALE = "stale"  # version already known (duplicate) or older
    UNLISTED = "unlisted"  # newer, but no listing of the channel shows the SKU
    ELSEWHERE = "elsewhere"  # a channel this sink does not serve


@dataclass(slots=True)
class Due:
    positions: list[Position] = field(default_factory=list)
    force: bool = False
    attempts: int = 0  # transient failures so far
    not_before: float = 0.0  # monotonic seconds


@dataclass(frozen=True, slots=True)
class Push:
    """One listing write the pusher is to make."""

    target: Target
    quantity: int
    computed_at_ms: int  # of the newest allocation the quantity comes from
    allocations: tuple[Allocation, ...]  # the components' allocations (dead letters, retries)
    positions: tuple[Position, ...]
    attempts: int
    force: bool

    @property
    def key(self) -> Key:
        return self.target.key


class SinkState:
    def __init__(self, index: TargetIndex, serves: Callable[[str], bool], tracker: Optional[OffsetTracker] = None) -> None:
        self.index = index
        self.serves = serves
        self.tracker = tracker if tracker is not None else OffsetTracker()
        self.allocations: dict[tuple[str, str], Allocation] = {}
        self.pushed: dict[Key, int] = {}
        self.parked: dict[Key, int] = {}
        self._due: dict[str, dict[Key, Due]] = {}  # channel -> listing -> due
        self.in_flight: set[Key] = set()

    # ---------------------------------------------------------------- allocations in

    def apply(self, allocation: Allocation, position: Optional[Position] = None, *, live: bool = True, retry: bool = False) -> Verdict:
        """Take one allocation. `live` False (warm-up below the committed offset): it was pushed
        before, so only the memory is updated. A live one that makes listings due holds its
        position in the tracker until every one of them is written or parked."""
        if not self.serves(allocation.channel):
            return Verdict.ELSEWHERE
        key = (allocation.sku, allocation.channel)
        known = self.allocations.get(key)
        if known is not None and allocation.version <= known.version:
            if retry and allocation.version == known.version and live:
                targets = self.index.targets(*key)
                for target in targets:
                    self._make_due(target.key, position, force=True)
                return Verdict.RETRY if targets else Verdict.UNLISTED
            return Verdict.STALE
        self.allocations[key] = allocation
        targets = self.index.targets(*key)
        if not targets:
            return Verdict.UNLISTED
        for target in targets:
            if live:
                self._make_due(target.key, position, force=retry)
            else:
                self.pushed[target.key] = self.desired(target)[0]
        return Verdict.APPLIED

    def desired(self, target: Target) -> tuple[int, int, tuple[Allocation, ...]]:
        """(quantity, newest computed_at_ms, component allocations) from the latest allocations."""
        channel = target.listing.channel
        found = [self.allocations.get((sku, channel)) for sku, _units in target.components]
        known = tuple(a for a in found if a is not None)
        if not target.is_bundle:
            quantity = max(known[0].quantity, 0) if known else 0
        else:
            by_sku = {a.sku: {channel: a.quantity} for a in known}
            quantity = bundle_allocation(by_sku, target.components).get(channel, 0)
        computed_at = max((a.computed_at_ms for a in known), default=0)
        return quantity, computed_at, known

    def set_index(self, index: TargetIndex) -> list[Key]:
        """Swap in a rebuilt index (catalog or listings changed); listings that are new or whose
        components changed become due. Returns them."""
        old = self.index
        self.index = index
        changed = []
        for key, target in index.by_key.items():
            before = old.by_key.get(key)
            if before is None or before.components != target.components:
                if any((sku, target.listing.channel) in self.allocations for sku, _ in target.components):
                    self._make_due(key, None, force=False)
                    changed.append(key)
        return changed

    def mark_drift(self, key: Key) -> None:
        """The channel shows something else than we pushed: push again (even the same number)."""
        if key in self.index.by_key:
            self._make_due(key, None, force=True)

    # ---------------------------------------------------------------- pushes out

    def take(self, channel: str, limit: int, now: float) -> list[Push]:
        """Up to `limit` pushes due on one channel. Listings whose quantity equals what was last
        pushed (and not forced) are settled right here without a call."""
        due = self._due.get(channel)
        if not due:
            return []
        out: list[Push] = []
        for key in list(due):
            if len(out) >= limit:
                break
            entry = due[key]
            if entry.not_before > now or key in self.in_flight:
                continue
            del due[key]
            target = self.index.by_key.get(key)
            if target is None:  # the listing left the index since
                self._release(entry.positions)
                continue
            quantity, computed_at, allocations = self.desired(target)
            if not entry.force and self.pushed.get(key) == quantity:
                self._release(entry.positions)
                continue
            self.in_flight.add(key)
            out.append(Push(target, quantity, computed_at, allocations, tuple(entry.positions), entry.attempts, entry.force))
        return out

    def written(self, push: Push) -> None:
        self.pushed[push.key] = push.quantity
        self.parked.pop(push.key, None)
        self._settle(push)

    def parked_push(self, push: Push) -> None:
        """Given up on (it is in the dead-letter topic now)."""
        self.parked[push.key] = push.quantity
        self._settle(push)

    def again(self, push: Push, delay_s: float, now: float, *, failed: bool) -> None:
        """Push later (throttled, or a transient failure when `failed`); the quantity is computed
        anew then, so newer allocations arriving meanwhile are coalesced into it."""
        self.in_flight.discard(push.key)
        entry = self._due.setdefault(push.target.listing.channel, {}).get(push.key)
        if entry is None:
            entry = self._due[push.target.listing.channel][push.key] = Due()
        entry.positions.extend(push.positions)
        entry.force = entry.force or push.force
        entry.attempts = max(entry.attempts, push.attempts + (1 if failed else 0))
        entry.not_before = max(entry.not_before, now + delay_s)

    def due_count(self, channel: Optional[str] = None) -> int:
        if channel is not None:
            return len(self._due.get(channel, ()))
        return sum(len(d) for d in self._due.values())

    def next_due_at(self, channel: str) -> Optional[float]:
        due = self._due.get(channel)
        if not due:
            return None
        times = [e.not_before for k, e in due.items() if k not in self.in_flight]
        return min(times) if times else None

    def is_busy(self, key: Key) -> bool:
        return key in self.in_flight or key in self._due.get(key[0], {})

    # ---------------------------------------------------------------- internals

    def _make_due(self, key: Key, position: Optional[Position], *, force: bool) -> None:
        entry = self._due.setdefault(key[0], {}).get(key)
        if entry is None:
            entry = self._due[key[0]][key] = Due()
        if position is not None:
            entry.positions.append(position)
            self.tracker.hold(position)
        entry.force = entry.force or force

    def _settle(self, push: Push) -> None:
        self.in_flight.discard(push.key)
        self._release(push.positions)

    def _release(self, positions: Iterable[Position]) -> None:
        for position in positions:
            self.tracker.release(position)
