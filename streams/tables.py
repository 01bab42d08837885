"""A dict-like view of one partition of a Faust table for the plain processors, which must not
import Faust.

Reads and writes go straight to the partition's RocksDB, and each write sends its changelog
record first, as Faust's Table does. Why not through the Table: its layers (the managed dict, the
serializers, the store's current-event lookup, a locked key index) cost ~4 us per get and ~15 us
per put, measured, against ~0.5 and ~3 us for RocksDB itself; the agents make about three table
accesses per raw event. What they add is unused by these tables of raw bytes (serializers, key
TTLs of windowed tables) or an optimisation only: the key index lets a read outside an event (the
HTTP API) find a key's partition without probing each partition's DB, and such reads still find
every key. Writes are still reported to the app's sensors: the API's ATS history
(streams/api_history.py) is one of them.
"""

from __future__ import annotations

from typing import Optional

import faust


class TableStore:
    """The keys of the event being processed, in partition `partition` of `table` (the event's
    own partition: the tables are co-partitioned with the agents' topics). Used only inside that
    event's iteration, so the partition's DB cannot be closed by a rebalance meanwhile."""

    __slots__ = ("_table", "_db", "_partition", "_send_changelog", "_on_set")

    def __init__(self, table: faust.Table, partition: int) -> None:
        self._table = table
        self._db = table.data._db_for_partition(partition)
        self._partition = partition
        self._send_changelog = table.send_changelog
        self._on_set = table._sensor_on_set

    def get(self, key: bytes) -> Optional[bytes]:
        return self._db.get(key)

    def put(self, key: bytes, value: bytes) -> None:
        # As Faust's Table: changelog and sensors (its on_key_set), then the store.
        self._send_changelog(self._partition, key, value)
        self._on_set(self._table, key, value)
        self._db.put(key, value)
