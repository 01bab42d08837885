"""Which consumed offsets of `allocations` may be committed.

A record is settled when every listing it made due was written or parked (or it made nothing
due: stale version, unlisted SKU, another platform's channel). The commit position of a
partition is its lowest unsettled offset, or the next offset to consume when all are settled:
after a crash the sink reads again from there, so nothing is lost, and pushing again what was
already pushed is harmless (writes are full overwrites).
"""

from __future__ import annotations

from collections import Counter

Position = tuple[int, int]  # (partition, offset)


class OffsetTracker:
    def __init__(self) -> None:
        self._next: dict[int, int] = {}  # partition -> offset after the last consumed record
        self._held: dict[int, Counter[int]] = {}  # partition -> unsettled offset -> holders

    def consumed(self, partition: int, offset: int) -> None:
        if offset + 1 > self._next.get(partition, -1):
            self._next[partition] = offset + 1

    def start_at(self, partition: int, offset: int) -> None:
        """Nothing consumed yet: the committable position is where reading starts."""
        self._next.setdefault(partition, offset)

    def hold(self, position: Position) -> None:
        partition, offset = position
        self._held.setdefault(partition, Counter())[offset] += 1

    def release(self, position: Position) -> None:
        partition, offset = position
        held = self._held.get(partition)
        if held is None or held[offset] <= 0:
            raise ValueError(f"offset {offset} of partition {partition} is not held")
        held[offset] -= 1
        if held[offset] == 0:
            del held[offset]

    def unsettled(self) -> int:
        return sum(sum(c.values()) for c in self._held.values())

    def committable(self) -> dict[int, int]:
        """partition -> offset to commit (the next record to read after a restart)."""
        out = {}
        for partition, nxt in self._next.items():
            held = self._held.get(partition)
            out[partition] = min(min(held), nxt) if held else nxt
        return out
