"""Faust's table recovery, preceded by a bulk restore (streams/changelog_restore.py).

When Faust recovers the active partitions a worker was assigned, it first measures each changelog
partition's highwater and the offset its local state holds. Right after, where more than
`min_records` are missing, the missing records are read in bulk into the partition's RocksDB
store, and Faust's start offsets are moved to what was written. Faust's own loop then reads only
what is left (nothing, or what arrived since), the same way as when local state was kept.

Standby partitions are left to Faust: they are read in the background while the worker runs.

The restore has a time budget below Faust's `broker_request_timeout`: Faust gives up on the whole
recovery step (and stops) if the step takes longer. A restore cut short leaves its partitions
consistent up to some offset, and Faust reads on from there.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import Any, Optional

import rocksdict
from faust.tables.recovery import Recovery
from faust.types import TP

from streams import metrics
from streams.changelog_restore import RestoreRange, restore

log = logging.getLogger(__name__)

_RESTORER = "_stockstream_restorer"
# Share of Faust's broker_request_timeout the restore may take (see the module docstring).
BUDGET_SHARE = 0.6
_installed = False


class _StorePartition:
    """One partition of a Faust RocksDB store, written the way Faust's recovery writes it, plus
    Faust's persisted offset in the same write batch."""

    def __init__(self, store: Any, partition: int) -> None:
        self.db = store._db_for_partition(partition)
        self.offset_key = store.offset_key

    def write(self, records: list[tuple[bytes, Optional[bytes]]], offset: int) -> None:
        batch = rocksdict.WriteBatch(raw_mode=True)
        for key, value in records:
            if value is None:
                batch.delete(key)
            else:
                batch.put(key, value)
        batch.put(self.offset_key, str(offset).encode())
        self.db.write(batch)


class BulkRestorer:
    def __init__(self, bootstrap_servers: str, min_records: int, budget_s: float) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.min_records = min_records
        self.budget_s = budget_s
        self._running: Optional[tuple[asyncio.Future, threading.Event]] = None

    def ranges(self, recovery: Recovery, tps: set[TP], offsets: dict[TP, Optional[int]]) -> list[RestoreRange]:
        wanted = []
        for tp in tps:
            store = recovery.tp_to_table[tp].data
            applied = max(_or_minus_one(offsets.get(tp)), _or_minus_one(store.persisted_offset(tp)))
            last = recovery.active_highwaters.get(tp, -1)
            if last - applied >= self.min_records:
                wanted.append(RestoreRange(tp.topic, tp.partition, applied + 1, last, _StorePartition(store, tp.partition)))
        return wanted

    async def run(self, recovery: Recovery, tps: set[TP], offsets: dict[TP, Optional[int]]) -> None:
        await self._previous_finished()
        ranges = self.ranges(recovery, tps, offsets)
        if not ranges:
            return
        started = time.monotonic()
        stop = threading.Event()
        future = asyncio.get_running_loop().run_in_executor(
            None, restore, self.bootstrap_servers, ranges, stop, started + self.budget_s)
        self._running = (future, stop)
        try:
            result = await asyncio.shield(future)
        except asyncio.CancelledError:  # a rebalance restarted the recovery: the thread stops at its next batch
            stop.set()
            raise
        except Exception:
            log.exception("bulk table restore failed; Faust's recovery reads the changelog instead")
        else:
            elapsed = time.monotonic() - started
            table_names = sorted({recovery.tp_to_table[TP(r.topic, r.partition)].name for r in ranges})
            log.info("restored %d changelog records of %s (%d partitions) in %.1f s (%.0f records/s)%s",
                     result.records, ", ".join(table_names), len(ranges), elapsed, result.records / max(elapsed, 1e-6),
                     "" if result.complete else "; Faust's recovery reads the rest")
            metrics.TABLE_RESTORED.inc(result.records)
            metrics.TABLE_RESTORE_SECONDS.inc(elapsed)
        # What the stores hold is authoritative: each batch was written with its offset.
        for r in ranges:
            tp = TP(r.topic, r.partition)
            persisted = recovery.tp_to_table[tp].data.persisted_offset(tp)
            if persisted is not None and persisted > _or_minus_one(offsets.get(tp)):
                offsets[tp] = persisted

    async def _previous_finished(self) -> None:
        """Two restores must not write one partition at once: a cancelled one still runs until
        it sees its stop flag."""
        if self._running is not None:
            future, stop = self._running
            stop.set()
            try:
                await future
            except Exception:
                pass
            self._running = None


def _or_minus_one(offset: Optional[int]) -> int:
    return -1 if offset is None else offset


def enable(app: Any, bootstrap_servers: str, min_records: int) -> None:
    """Bulk-restore `app`'s active table partitions missing at least `min_records` records."""
    _install()
    budget_s = BUDGET_SHARE * float(app.conf.broker_request_timeout)
    app.__dict__[_RESTORER] = BulkRestorer(bootstrap_servers, min_records, budget_s)


def _install() -> None:
    global _installed
    if _installed:
        return
    original_build_offsets = Recovery._build_offsets

    async def _build_offsets(self: Recovery, consumer: Any, tps: Any, destination: Any, title: str) -> None:
        await original_build_offsets(self, consumer, tps, destination, title)
        restorer = self.app.__dict__.get(_RESTORER)
        if restorer is not None and title == "active" and tps:
            await restorer.run(self, set(tps), destination)

    Recovery._build_offsets = _build_offsets  # type: ignore[method-assign]
    _installed = True
