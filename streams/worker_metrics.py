"""A worker's own health metrics, beside what the agents count: consumer lag of the agents' topics,
rebalances, and the size of the tables this worker serves.

Table sizes come from RocksDB's `rocksdb.estimate-num-keys` property of each partition's
database: read from the memtables' and SST files' metadata, cheap whatever the table holds. A
count by iteration would scan millions of keys on the event loop. Only the partitions this worker
holds actively count (standby copies are open too), so a sum over workers is the table's size.
"""

from __future__ import annotations

import logging
from typing import Any, Mapping

import faust
import mode

from streams import metrics
from streams.api_cluster import local_partitions
from streams.consumer_lag import LAG_INTERVAL_S, TopicGauge, faust_offset_rows, lag_by_topic
from streams.table_scan import partition_dbs

log = logging.getLogger(__name__)

TABLE_KEYS_INTERVAL_S = 30.0
ESTIMATE_NUM_KEYS = "rocksdb.estimate-num-keys"


def estimated_keys(dbs: Mapping[int, Any], partitions: set[int]) -> int:
    """Estimated keys over the partition databases (rocksdict `Rdict`s) of `partitions`."""
    return sum(db.property_int_value(ESTIMATE_NUM_KEYS) or 0 for partition, db in dbs.items() if partition in partitions)


def active_table_keys(app: faust.App, table: faust.Table) -> int:
    return estimated_keys(partition_dbs(table), local_partitions(app, table))


class WorkerMetricsService(mode.Service):
    """Refreshes the lag and table gauges on timers and counts rebalances. `tables`: metric label
    -> table; `topic_prefix`: cut from topic names for the `topic` label."""

    def __init__(self, app: faust.App, tables: Mapping[str, faust.Table], topic_prefix: str, **kwargs) -> None:
        super().__init__(**kwargs)
        self.app = app
        self.tables = dict(tables)
        self.topic_prefix = topic_prefix
        self.lag = TopicGauge(metrics.CONSUMER_LAG)
        # Sent once per rebalance this consumer takes part in (the first assignment included),
        # after the revocation and before table recovery.
        app.on_partitions_assigned.connect(self._on_partitions_assigned)

    async def _on_partitions_assigned(self, _app: Any, _assigned: Any, **_kwargs: Any) -> None:
        metrics.REBALANCES.inc()

    async def on_start(self) -> None:
        for name in self.tables:  # exposed from the start, 0 until partitions are assigned
            metrics.TABLE_KEYS.labels(name).set(0)

    @mode.Service.timer(LAG_INTERVAL_S)
    async def _refresh_lag(self) -> None:
        try:
            rows = faust_offset_rows(self.app.consumer, self.app.tables.changelog_topics)
        except Exception as exc:  # consumer not started yet, or mid-rebalance: next time
            log.debug("consumer lag not read: %s", exc)
            return
        self.lag.set(lag_by_topic(rows, self.topic_prefix))

    @mode.Service.timer(TABLE_KEYS_INTERVAL_S)
    async def _refresh_table_keys(self) -> None:
        for name, table in self.tables.items():
            try:
                metrics.TABLE_KEYS.labels(name).set(active_table_keys(self.app, table))
            except Exception as exc:  # a partition database closing during a rebalance: next time
                log.debug("size of table %s not read: %s", name, exc)
