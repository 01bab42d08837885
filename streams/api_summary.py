"""The whole-table part of `GET /api/summary` for the partitions this worker owns: how many SKUs
it holds and which may be at risk of selling out.

Kept by a sweep that reads each owned partition of the stock table in bounded slices
(streams/table_scan.py) and sleeps between slices, so that it takes at most `share` of the event
loop, and only while summaries are asked for: an ask starts it, and it stops `idle_after_s` after
the last. A partition's figures are those of its last completed pass. SKUs written since are
re-checked as the history sampler decodes them (`observe`), so the at-risk list follows sales
between passes.

Why the candidates kept from a pass stay enough: with no new sale a SKU's sell-through rate only
decays, so its days of cover only grow; a SKU not at risk when read cannot become at risk
without a write, and writes are observed.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Optional

from streams.api_cluster import ShardUnavailable
from streams.api_views import at_risk_entry, read_sku_value
from streams.partitioning import partition_for
from streams.sku_allocation import SkuValue
from streams.table_scan import partition_dbs, read_partition

log = logging.getLogger(__name__)

SLICE_KEYS = 500  # keys per slice: ~10-25 ms of decoding, the longest the sweep holds the loop
IDLE_AFTER_S = 60.0
PASS_INTERVAL_S = 1.0  # at least this long between the starts of two passes
WAIT_POLL_S = 0.05


def _now_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class PartitionSummary:
    skus: int = 0
    at_risk: dict[str, SkuValue] = field(default_factory=dict)  # at risk when last read or written
    read_at_ms: int = 0
    read_to: Optional[bytes] = None  # while a pass runs: the last key it has read


class SummarySweep:
    def __init__(
        self,
        table: Any,
        owned: Callable[[], set[int]],
        partitions_total: int,
        threshold_days: float,
        share: float,
        slice_keys: int = SLICE_KEYS,
        idle_after_s: float = IDLE_AFTER_S,
        read: Callable[[bytes], SkuValue] = read_sku_value,
        clock_ms: Callable[[], int] = _now_ms,
    ) -> None:
        self.table = table
        self.owned = owned
        self.partitions_total = partitions_total
        self.threshold_days = threshold_days
        self.share = share
        self.slice_keys = slice_keys
        self.idle_after_s = idle_after_s
        self.read = read
        self.clock_ms = clock_ms
        self.done: dict[int, PartitionSummary] = {}
        self._running: dict[int, PartitionSummary] = {}
        self._asked_at = -math.inf
        self._asked = asyncio.Event()

    # --- what the API calls -------------------------------------------------------------------

    async def summaries(self, partitions: Iterable[int], wait_s: float) -> dict[int, PartitionSummary]:
        """The last completed pass of each of `partitions`, waiting up to `wait_s` for a first one.
        Raises ShardUnavailable naming the partitions still being read."""
        self._asked_at = time.monotonic()
        self._asked.set()
        wanted = sorted(partitions)
        deadline = time.monotonic() + wait_s
        while True:
            missing = [p for p in wanted if p not in self.done]
            if not missing:
                return {p: self.done[p] for p in wanted}
            if time.monotonic() >= deadline:
                raise ShardUnavailable(f"summary of partitions {missing} is still being read (a first pass over "
                                       "their SKUs after a start or rebalance): retry shortly")
            await asyncio.sleep(WAIT_POLL_S)

    def observe(self, value: SkuValue, at_ms: int) -> None:
        """A value just written: re-check whether its SKU is at risk."""
        sku = value.stock.sku
        key = sku.encode()
        partition = partition_for(key, self.partitions_total)
        running = self._running.get(partition)
        if running is not None and (running.read_to is None or key > running.read_to):
            running = None  # the running pass has not read this key yet: it will read this value
        at_risk = at_risk_entry(value, at_ms, self.threshold_days) is not None
        for summary in (self.done.get(partition), running):
            if summary is None:
                continue
            if at_risk:
                summary.at_risk[sku] = value
            else:
                summary.at_risk.pop(sku, None)

    def forget(self, partitions: Iterable[int]) -> None:
        """Partitions revoked: their figures are another worker's now, and stale if they return."""
        for partition in partitions:
            self.done.pop(partition, None)
            self._running.pop(partition, None)

    # --- the sweep ----------------------------------------------------------------------------

    async def run(self) -> None:
        while True:
            if time.monotonic() - self._asked_at > self.idle_after_s:
                self._asked.clear()
                await self._asked.wait()
            started = time.monotonic()
            owned = self.owned()
            self.forget([p for p in list(self.done) if p not in owned])
            # Partitions never read first: they are what a waiting ask needs.
            for partition in sorted(owned, key=lambda p: (p in self.done, self.done[p].read_at_ms if p in self.done else 0)):
                try:
                    await self.sweep(partition)
                except Exception:  # a database closed under a rebalance: the next pass
                    log.exception("summary sweep of partition %s failed; retrying on the next pass", partition)
                    self._running.pop(partition, None)
            await asyncio.sleep(max(0.0, PASS_INTERVAL_S - (time.monotonic() - started)))

    async def sweep(self, partition: int) -> None:
        """One pass over a partition, in slices, sleeping between them to keep to `share`."""
        summary = self._running[partition] = PartitionSummary(read_at_ms=self.clock_ms())
        after: Optional[bytes] = None
        while True:
            if partition not in self.owned() or self._running.get(partition) is not summary:
                self._running.pop(partition, None)
                return  # revoked meanwhile
            began = time.perf_counter()
            db = partition_dbs(self.table).get(partition)
            if db is None:
                items, after = [], None
            else:
                part = read_partition(db, after, self.slice_keys)
                items, after = part.items, part.resume_after
            for _key, raw in items:
                value = self.read(raw)
                summary.skus += 1
                if at_risk_entry(value, summary.read_at_ms, self.threshold_days) is not None:
                    summary.at_risk[value.stock.sku] = value
            summary.read_to = items[-1][0] if items else summary.read_to
            if after is None:
                break
            await asyncio.sleep((time.perf_counter() - began) * (1 / self.share - 1))
        summary.read_to = None
        del self._running[partition]
        self.done[partition] = summary
