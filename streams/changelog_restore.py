"""Reads a changelog topic's partitions in bulk into local table state.

Why: Faust recovers a table partition by reading its changelog through its own consumer, one event
at a time: about 4,500 records/s here, 219 s for a worker that lost its disk holding 1M SKUs.
A librdkafka consumer hands over thousands of records per call and RocksDB takes them as one
write batch, so the same records restore at a rate bound by the fetch (see BENCHMARKS.md).

Every batch is written together with the changelog offset it reaches (`PartitionState.write`
stores both in one write), so a restore that stops anywhere (rebalance, kill -9, time budget)
leaves a partition that is consistent up to an offset, and whoever reads on (Faust's own
recovery, or the next restore) starts right after it.

No Faust here: the Faust side (which partitions, which store) is in streams/faust_patches.py.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Iterable, Optional, Protocol

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

log = logging.getLogger(__name__)

# Records asked of librdkafka per call: large enough that the per-call cost disappears, small
# enough that a stop request is seen within a fraction of a second.
BATCH = 10_000
POLL_TIMEOUT_S = 0.5


class PartitionState(Protocol):
    def write(self, records: list[tuple[bytes, Optional[bytes]]], offset: int) -> None:
        """Apply `records` (key, value; None deletes) and remember `offset` as applied, atomically."""


@dataclass
class RestoreRange:
    topic: str
    partition: int
    first: int  # first offset to read
    last: int  # last offset to read (the highwater - 1 measured before the restore)
    state: PartitionState


@dataclass
class Restored:
    records: int = 0
    reached: dict[tuple[str, int], int] = field(default_factory=dict)  # (topic, partition) -> last offset written
    complete: bool = False


def restore(
    bootstrap_servers: str, ranges: Iterable[RestoreRange], stop: threading.Event,
    deadline: float, idle_timeout_s: float = 30.0,
) -> Restored:
    """Reads every range from `first` through `last` into its state. Returns early, with what is
    written so far, when `stop` is set, at `deadline` (time.monotonic()), or when the broker gave
    nothing for `idle_timeout_s`: the caller's normal recovery reads the rest."""
    pending = {(r.topic, r.partition): r for r in ranges if r.last >= r.first}
    result = Restored()
    if not pending:
        result.complete = True
        return result
    consumer = Consumer({
        "bootstrap.servers": bootstrap_servers,
        # Assigned partitions only, never committed: the id just has to be unique.
        "group.id": f"stockstream-restore-{uuid.uuid4().hex}",
        "enable.auto.commit": False,
        "enable.partition.eof": True,
        # Compaction or retention may have removed `first`: start at what is left.
        "auto.offset.reset": "earliest",
    })
    try:
        consumer.assign([TopicPartition(t, p, r.first) for (t, p), r in pending.items()])
        last_data = time.monotonic()
        while pending and not stop.is_set() and time.monotonic() < deadline:
            messages = consumer.consume(BATCH, POLL_TIMEOUT_S)
            if not messages:
                if time.monotonic() - last_data > idle_timeout_s:
                    log.warning("changelog restore: no records for %.0f s, %d partition(s) left to Faust's recovery",
                                idle_timeout_s, len(pending))
                    break
                continue
            last_data = time.monotonic()
            by_partition: dict[tuple[str, int], list] = {}
            at_end: set[tuple[str, int]] = set()
            for message in messages:
                key = (message.topic(), message.partition())
                error = message.error()
                if error is None:
                    by_partition.setdefault(key, []).append(message)
                elif error.code() == KafkaError._PARTITION_EOF:
                    at_end.add(key)  # the end of the log: nothing more to read
                elif error.fatal():
                    raise KafkaException(error)
                else:
                    log.warning("changelog restore: %s", error)
            for key, batch in by_partition.items():
                wanted = pending.get(key)
                if wanted is None:
                    continue  # complete: records past `last` are left to the normal recovery
                # Offsets only grow within a partition: the records to write are a prefix.
                records = [(m.key(), m.value()) for m in batch if m.offset() <= wanted.last]
                if records:
                    reached = batch[len(records) - 1].offset()
                    wanted.state.write(records, reached)
                    result.records += len(records)
                    result.reached[key] = reached
            for key in [k for k, r in pending.items() if k in at_end or result.reached.get(k, -1) >= r.last]:
                del pending[key]
        result.complete = not pending
        return result
    finally:
        consumer.close()
