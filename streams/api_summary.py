"""The whole-table part of `GET /api/summary` for the partitions this worker owns: how many SKUs
it holds and which may be at risk of selling out.

Kept by a sweep that reads each owned partition of the stock table in bounded slices
(streams/table_scan.py) and sleeps between slices, so that it takes at most `share` of the event
loop during a partition's first pass (a tenth of that after), and only while summaries are asked
for: an ask starts it, and it stops `idle_after_s` after the last. A partition's figures are
those of its last completed pass. SKUs written since are re-checked as the history sampler
decodes them (`observe`), so the at-risk list follows sales between passes. Each partition lists
at most 5,000-10,000 SKUs at risk, those with the fewest days of cover; any more are counted as
of the last pass.

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

from streams import metrics
from streams.api_views import RiskCandidate, read_sku_value
from streams.partitioning import partition_for
from streams.sku_allocation import SkuValue
from streams.table_scan import partition_dbs, read_partition

log = logging.getLogger(__name__)

SLICE_KEYS = 500  # keys per slice: ~10-25 ms of decoding, the longest the sweep holds the loop
# SKUs at risk listed per partition: those with the fewest days of cover when read. Past this the
# rest are counted as of the last pass only: memory, and the work of each ask, stay bounded even
# when a 618 peak puts most of a catalogue under the threshold.
LISTED_PER_PARTITION = 5_000
IDLE_AFTER_S = 60.0
PASS_INTERVAL_S = 1.0  # at least this long between the starts of two passes
# Passes after a partition's first run at this fraction of `share`: writes keep the at-risk list
# current between passes, so repeats only catch new SKUs and writes the history sampler skipped,
# and an open dashboard then costs a worker ~2% instead of 20%.
REPEAT_SHARE_FRACTION = 0.1
WAIT_POLL_S = 0.05


def _now_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class PartitionSummary:
    listed_max: int = LISTED_PER_PARTITION
    skus: int = 0
    # SKU -> (days of cover when read or written, what the at-risk list needs of it)
    at_risk: dict[str, tuple[float, RiskCandidate]] = field(default_factory=dict)
    not_listed: int = 0  # more SKUs at risk when read, counted only
    # Once the list was cut: candidates with this many days of cover or more are counted only.
    cutoff_days: float = math.inf
    read_at_ms: int = 0
    read_to: Optional[bytes] = None  # while a pass runs: the last key it has read

    def keep(self, candidate: RiskCandidate, days: float, counted: bool) -> None:
        """A SKU at risk. `counted`: found by the pass (counted when not listed) rather than by a
        write (a SKU written again and again must not be counted each time)."""
        if candidate.sku in self.at_risk or days < self.cutoff_days:
            self.at_risk[candidate.sku] = (days, candidate)
            if len(self.at_risk) > 2 * self.listed_max:  # cut in bulk: sorting per SKU would cost more
                ranked = sorted(self.at_risk.items(), key=lambda item: item[1][0])
                self.at_risk = dict(ranked[: self.listed_max])
                self.not_listed += len(ranked) - self.listed_max
                self.cutoff_days = ranked[self.listed_max - 1][1][0]
        elif counted:
            self.not_listed += 1

    def candidates(self) -> list[RiskCandidate]:
        return [candidate for _days, candidate in self.at_risk.values()]


class SummarySweep:
    def __init__(
        self,
        table: Any,
        owned: Callable[[], set[int]],
        partitions_total: int,
        threshold_days: float,
        share: float,
        slice_keys: int = SLICE_KEYS,
        listed_max: int = LISTED_PER_PARTITION,
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
        self.listed_max = listed_max
        self.idle_after_s = idle_after_s
        self.read = read
        self.clock_ms = clock_ms
        self.done: dict[int, PartitionSummary] = {}
        self._running: dict[int, PartitionSummary] = {}
        self._asked_at = -math.inf
        self._asked = asyncio.Event()

    # --- what the API calls -------------------------------------------------------------------

    async def summaries(self, partitions: Iterable[int], wait_s: float) -> tuple[dict[int, PartitionSummary], list[int]]:
        """The last completed pass of each of `partitions`, waiting up to `wait_s` for first ones;
        and the partitions still without one, whose figures so far are given instead (a first
        pass after a start or rebalance takes a while on a large catalogue)."""
        self._asked_at = time.monotonic()
        self._asked.set()
        wanted = sorted(partitions)
        deadline = time.monotonic() + wait_s
        while True:
            pending = [p for p in wanted if p not in self.done]
            if not pending or time.monotonic() >= deadline:
                break
            await asyncio.sleep(WAIT_POLL_S)
        return {p: self.done.get(p) or self._running.get(p) or PartitionSummary() for p in wanted}, pending

    def observe(self, value: SkuValue, at_ms: int) -> None:
        """A value just written: re-check whether its SKU is at risk."""
        sku = value.stock.sku
        key = sku.encode()
        partition = partition_for(key, self.partitions_total)
        running = self._running.get(partition)
        if running is not None and (running.read_to is None or key > running.read_to):
            running = None  # the running pass has not read this key yet: it will read this value
        candidate = RiskCandidate.of(value)
        cover = candidate.cover_at_risk(at_ms, self.threshold_days)
        for summary in (self.done.get(partition), running):
            if summary is None:
                continue
            if cover is not None:
                summary.keep(candidate, cover[0], counted=False)
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
                share = self.share * (REPEAT_SHARE_FRACTION if partition in self.done else 1.0)
                try:
                    await self.sweep(partition, share)
                except Exception:  # a database closed under a rebalance: the next pass
                    log.exception("summary sweep of partition %s failed; retrying on the next pass", partition)
                    self._running.pop(partition, None)
            await asyncio.sleep(max(0.0, PASS_INTERVAL_S - (time.monotonic() - started)))

    async def sweep(self, partition: int, share: Optional[float] = None) -> None:
        """One pass over a partition, in slices, sleeping between them to keep to `share` of the
        event loop (default: the sweep's)."""
        share = self.share if share is None else share
        summary = self._running[partition] = PartitionSummary(self.listed_max, read_at_ms=self.clock_ms())
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
                candidate = RiskCandidate.of(self.read(raw))
                summary.skus += 1
                cover = candidate.cover_at_risk(summary.read_at_ms, self.threshold_days)
                if cover is not None:
                    summary.keep(candidate, cover[0], counted=True)
            summary.read_to = items[-1][0] if items else summary.read_to
            held = time.perf_counter() - began
            metrics.SUMMARY_SWEEP_SECONDS.inc(held)
            if after is None:
                break
            await asyncio.sleep(held * (1 / share - 1))
        summary.read_to = None
        del self._running[partition]
        self.done[partition] = summary
