"""Key -> partition, the same way the Java client, aiokafka and Faust's router do it.

Everything stockstream writes to a keyed-state topic is partitioned with this function, so that a
key lands on the same partition number in every co-partitioned topic, and the HTTP API
(streams/api_cluster.py) finds the worker that owns a SKU from the group's assignment.
"""

from __future__ import annotations

from functools import lru_cache

from aiokafka.partitioner import murmur2


# murmur2 is pure Python (~2% of a worker's samples with one call per movement); SKUs and order
# keys repeat, so the recent ones are remembered.
@lru_cache(maxsize=65_536)
def partition_for(key: bytes, partitions: int) -> int:
    return (murmur2(key) & 0x7FFFFFFF) % partitions
