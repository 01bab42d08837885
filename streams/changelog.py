"""Faust table changelog records sent through librdkafka (streams/outputs.py) instead of Faust's
producer buffer.

Why: every table write is a changelog record, and Faust's buffer hands them to aiokafka one by
one (~250 us of Python each). Measured here: with the agents' other outputs on librdkafka, the
buffer held ~4,000 changelog records at a time, the offset commit waited 6-14 s for it, and the
agents were held back by "producer buffer full".

What stays as Faust does it: the record (key, value, the partition of the event being
processed), the changelog topic, recovery and standbys reading it. The offset commit waits for
these records like for every other output (Outputs.flush, via streams/faust_patches.py). Faust
also keeps, in each partition's RocksDB, the changelog offset its local state is known to
contain, so that a restart with the state kept reads only the changelog past it; that offset is
written here after each flush, for the records acknowledged by then, instead of once per record.
"""

from __future__ import annotations

from typing import Any, Optional

from faust.types import TP

from streams.outputs import Outputs


class _Accepted:
    """What Faust's `Table.on_key_set` reads of a sent changelog record: its partition."""

    __slots__ = ("message", "partition")

    def __init__(self, partition: int) -> None:
        self.partition = partition
        self.message = self


class ChangelogSender:
    def __init__(self, outputs: Outputs) -> None:
        self.outputs = outputs
        self._tables: dict[str, Any] = {}  # changelog topic -> table
        self._persisted: dict[tuple[str, int], int] = {}
        self._accepted: dict[int, _Accepted] = {}

    def attach(self, table: Any) -> None:
        """Route `table`'s changelog records through the outputs (keys and values are bytes)."""
        topic = table.changelog_topic.get_topic_name()
        self._tables[topic] = table
        self.outputs.track_offsets(topic)
        send_now, accepted = self.outputs.send_now, self._accepted

        def send_changelog(partition: Optional[int], key: Any, value: Any, key_serializer: Any = None,
                           value_serializer: Any = None) -> _Accepted:
            # Faust always passes the partition of the event being processed (use_partitioner off).
            send_now(topic, value, key, partition)
            sent = accepted.get(partition)
            if sent is None:
                sent = accepted[partition] = _Accepted(partition)
            return sent

        table.send_changelog = send_changelog

    async def persist_offsets(self) -> None:
        """Record in each partition's local state the changelog offset acknowledged so far."""
        for (topic, partition), offset in list(self.outputs.acknowledged.items()):
            table = self._tables.get(topic)
            if table is None or self._persisted.get((topic, partition), -1) >= offset:
                continue
            try:
                table.data.set_persisted_offset(TP(topic, partition), offset)
            except Exception:  # the partition's store is closed (revoked meanwhile): its new owner recovers it
                continue
            self._persisted[(topic, partition)] = offset
