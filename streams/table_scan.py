"""Bounded reads, in key order, of the table partitions this worker owns: what the list queries
(`GET /ats`, `GET /api/summary`) read instead of iterating a whole table.

Why bounded: a read runs on the worker's event loop, and the agents wait while it runs. Iterating
a million-key table there held a worker for seconds (README, "List queries").

Why synchronous: a read opens an iterator on a partition's RocksDB and drops it before returning.
Holding one across an `await` would let a rebalance revoke the partition meanwhile; Faust then
forgets the database, and a live iterator would keep it open (and its lock held) when the
partition is assigned again. A caller that reads more resumes after the last key it got.

Keys are SKUs as UTF-8 bytes, so RocksDB's byte order is the order of the SKU strings.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Optional

from faust.stores.rocksdb import Store

# Faust's RocksDB store keeps each partition's consumed changelog offset under this key.
FAUST_OFFSET_KEY: bytes = Store.offset_key


def partition_dbs(table: Any) -> Mapping[int, Any]:
    """The open RocksDB (rocksdict `Rdict`) of each partition of `table`'s store. Faust exposes no
    public way to them short of iterating every key; an absent partition has nothing stored."""
    return getattr(table.data, "_dbs", {})


@dataclass(frozen=True)
class Slice:
    items: list[tuple[bytes, bytes]]  # (key, value) in key order
    # Every key up to and including this one has been read; None when the end was reached.
    resume_after: Optional[bytes]


def read_partition(db: Any, after: Optional[bytes], budget: int) -> Slice:
    """Up to `budget` (key, value) pairs of one partition database with keys after `after`."""
    items: list[tuple[bytes, bytes]] = []
    it = db.iter()
    try:
        if after is None:
            it.seek_to_first()
        else:
            it.seek(after)
            if it.valid() and it.key() == after:
                it.next()
        while it.valid():
            key = it.key()
            if key != FAUST_OFFSET_KEY:
                if len(items) == budget:
                    break
                items.append((key, it.value()))
            it.next()
        more = it.valid()
    finally:
        del it
    return Slice(items, (items[-1][0] if items else after) if more else None)


def read_owned(dbs: Mapping[int, Any], partitions: Iterable[int], after: Optional[bytes], budget: int) -> Slice:
    """Up to `budget` pairs after `after` over the databases of `partitions`, merged in key order:
    nothing is left out before `resume_after` in any of them."""
    present = [p for p in sorted(partitions) if p in dbs]
    # Keys hash evenly over partitions: a share of the budget each fills it with few reads wasted
    # past the smallest stop.
    share = -(-budget // max(1, len(present)))
    slices = [read_partition(dbs[p], after, share) for p in present]
    # Past the smallest key a partition stopped at, that partition may hold keys not read yet.
    stops = [s.resume_after for s in slices if s.resume_after is not None]
    frontier = min(stops) if stops else None
    merged = heapq.merge(*(s.items for s in slices), key=lambda item: item[0])
    items = [item for item in merged if frontier is None or item[0] <= frontier]
    if len(items) > budget:
        items = items[:budget]
        frontier = items[-1][0]
    return Slice(items, frontier)
