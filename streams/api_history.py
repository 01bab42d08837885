"""Recent history of the SKUs this worker owns, in memory, for the dashboard: per SKU a bounded
series of (time, ATS, units sold per day) points for the sparklines, and the latest changes of
published channel quantities.

Fed from the stock table's writes (a Faust sensor: every `table[key] = value` on this worker, i.e.
on the partitions it owns; standby replicas applying the changelog do not write through it), so
the stock agent's hot path pays one dict assignment per SKU and batch. A timer turns the values
written since its last run into points, once per SKU per interval.

Not durable and not replicated: after a restart or a rebalance the new owner starts the series of
the SKUs it took over afresh. List queries ask the owner of each partition, so every worker shows
the same history whichever is asked.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from itertools import islice
from typing import Callable

import faust

from stockstream.core.stock import ats
from streams.sku_allocation import SkuValue

POINTS_PER_SKU = 180
MAX_SKUS = 20_000
MAX_CHANGES = 500
SAMPLES_PER_TICK = 1_000
# Values waiting to be sampled. Past this many SKUs, writes of SKUs not already waiting are not
# kept (their history gets a gap): under a load that changes SKUs faster than they are sampled,
# the waiting values (~1 KB each) would otherwise grow with the catalogue (1M SKUs: ~1 GB).
MAX_PENDING = 5_000


class History:
    def __init__(self, points_per_sku: int = POINTS_PER_SKU, max_skus: int = MAX_SKUS, max_changes: int = MAX_CHANGES) -> None:
        self.points_per_sku = points_per_sku
        self.max_skus = max_skus
        # sku -> deque of [at_ms, ats, units/day]; least recently changed SKU first (evicted first).
        self._points: OrderedDict[str, deque] = OrderedDict()
        # sku -> {channel: (quantity, version)} last seen, to tell changes from re-reads.
        self._published: dict[str, dict[str, tuple[int, int]]] = {}
        self.changes: deque[dict] = deque(maxlen=max_changes)

    def observe(self, value: SkuValue, at_ms: int) -> None:
        sku = value.stock.sku
        rate = sum(value.allocation.daily_rates(at_ms).values())
        series = self._points.get(sku)
        if series is None:
            series = self._points[sku] = deque(maxlen=self.points_per_sku)
            if len(self._points) > self.max_skus:
                evicted, _ = self._points.popitem(last=False)
                self._published.pop(evicted, None)
        else:
            self._points.move_to_end(sku)
        series.append([at_ms, ats(value.stock), round(rate, 3)])
        self._record_changes(sku, value, at_ms)

    def _record_changes(self, sku: str, value: SkuValue, at_ms: int) -> None:
        allocation = value.allocation
        before = self._published.get(sku)
        now = {channel: (quantity, allocation.versions.get(channel, 0)) for channel, quantity in allocation.quantities.items()}
        self._published[sku] = now
        for channel, (quantity, version) in now.items():
            previous = None if before is None else before.get(channel)
            if previous is not None and previous[1] == version:
                continue
            if previous is None and version != 1:
                continue  # first sight of an older listing (after a restart): no change seen
            self.changes.append({
                "sku": sku, "channel": channel, "quantity": quantity,
                "previous_quantity": None if previous is None else previous[0], "version": version, "at_ms": at_ms,
            })

    def points(self, sku: str) -> list[list]:
        series = self._points.get(sku)
        return [] if series is None else [list(p) for p in series]

    def recent_changes(self, keep: Callable[[str], bool]) -> list[dict]:
        """Changes of SKUs `keep` accepts (those of the partitions asked about), oldest first."""
        return [dict(change) for change in self.changes if keep(change["sku"])]


class StockWrites(faust.Sensor):
    """Collects the values written to one table since the last `drain`."""

    def __init__(self, table: faust.Table, max_pending: int = MAX_PENDING, **kwargs) -> None:
        super().__init__(**kwargs)
        self.table = table
        self.max_pending = max_pending
        self.pending: dict[bytes, bytes] = {}
        self.skipped = 0  # writes not kept because `max_pending` SKUs were waiting

    def on_table_set(self, table, key, value) -> None:
        if table is self.table and value is not None:
            if len(self.pending) < self.max_pending or key in self.pending:
                self.pending[key] = value
            else:
                self.skipped += 1

    def drain(self, limit: int) -> list[bytes]:
        """Up to `limit` values, those waiting longest first; the rest wait for the next call."""
        if len(self.pending) <= limit:
            pending, self.pending = self.pending, {}
            return list(pending.values())
        keys = list(islice(self.pending, limit))
        return [self.pending.pop(key) for key in keys]


def record_pending(
    writes: StockWrites, history: History, at_ms: int, read: Callable[[bytes], SkuValue], limit: int = SAMPLES_PER_TICK,
    also: Callable[[SkuValue, int], None] | None = None,
) -> int:
    """Turn values written since the last call into history points; returns how many. At most
    `limit` per call: decoding costs ~20-50 us a value, and at a 618 peak every SKU changes every
    second; the history then gets sparser instead of taking CPU from the stock agent."""
    values = writes.drain(limit)
    for raw in values:
        value = read(raw)
        history.observe(value, at_ms)
        if also is not None:  # the summary's at-risk list (streams/api_summary.py)
            also(value, at_ms)
    return len(values)
