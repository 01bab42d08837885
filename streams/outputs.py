"""The agents' output records (movement batches, ATS snapshots, allocation changes, signals,
quarantine), produced with librdkafka instead of Faust's per-message send path.

Why: Faust's `topic.send` costs about a hundred microseconds of Python per record (a pending
message, a future, a trip through its producer buffer and aiokafka's accumulator); the stock
agent sends several records per SKU it changes, and the profile put Faust's send path among the
largest costs of a worker. librdkafka takes a record in a few microseconds and batches in C.

What it must keep: an input offset is committed only after the outputs it caused are in Kafka.
Faust commits after `producer.flush()`; streams/faust_patches.py makes that flush wait for
`Outputs.flush` too, which returns once the broker acknowledged every record produced before the
flush began (so, everything the offsets being committed caused) and raises if any failed (the
offset is then not committed and the worker stops; its successor processes the input again).
Keyed records are partitioned like the Java client and Faust (murmur2), so a key lands where
streams/partitioning.py says.
"""

from __future__ import annotations

import asyncio
import functools
from typing import Optional

from confluent_kafka import KafkaError, KafkaException, Producer

# How long `send` waits between tries when librdkafka's local queue is full (back pressure).
_QUEUE_FULL_WAIT_S = 0.005
_FLUSH_POLL_S = 0.002


class Outputs:
    def __init__(self, bootstrap_servers: str, producer: Optional[Producer] = None) -> None:
        self._bootstrap_servers = bootstrap_servers
        self._client = producer  # built on first use: an app that never sends opens no connection
        # Records are counted by epoch; a flush starts a new epoch and waits only for the older
        # ones. Waiting for "nothing unacknowledged" would never end while the agents keep
        # sending, and the commit waiting on it would starve (seen: a commit of 163 s).
        self._epoch = 0
        self._unacknowledged: dict[int, int] = {0: 0}
        self._deliveries = {0: functools.partial(self._on_delivery, 0)}
        self._failures: list[KafkaError] = []
        # (topic, partition) -> highest acknowledged offset, for the topics asked for
        self._tracked: set[str] = set()
        self.acknowledged: dict[tuple[str, int], int] = {}

    def track_offsets(self, topic: str) -> None:
        """Keep the highest acknowledged offset of each partition of `topic` in `acknowledged`."""
        self._tracked.add(topic)

    @property
    def _producer(self) -> Producer:
        if self._client is None:
            self._client = Producer(
                {
                    "bootstrap.servers": self._bootstrap_servers,
                    "enable.idempotence": True,
                    "acks": "all",
                    "linger.ms": 5,
                    "partitioner": "murmur2_random",  # Java / aiokafka / Faust: keyed records agree
                }
            )
        return self._client

    def _on_delivery(self, epoch: int, error: Optional[KafkaError], message) -> None:
        # Served by `poll` on the event loop's thread: no lock needed.
        self._unacknowledged[epoch] -= 1
        if error is not None:
            self._failures.append(error)
        elif self._tracked and message.topic() in self._tracked:
            tp = (message.topic(), message.partition())
            if message.offset() > self.acknowledged.get(tp, -1):
                self.acknowledged[tp] = message.offset()

    def _produce(self, topic: str, value: Optional[bytes], key: Optional[bytes], partition: Optional[int]) -> bool:
        """Hands one record to librdkafka, counted in the current epoch; False if its queue is full."""
        extra = {} if partition is None else {"partition": partition}
        epoch = self._epoch
        try:
            self._producer.produce(topic, value, key, on_delivery=self._deliveries[epoch], **extra)
        except BufferError:
            return False
        self._unacknowledged[epoch] += 1
        return True

    async def send(self, topic: str, value: bytes, key: Optional[bytes] = None, partition: Optional[int] = None) -> None:
        while not self._produce(topic, value, key, partition):  # queue full: let it drain
            self._producer.poll(0)
            await asyncio.sleep(_QUEUE_FULL_WAIT_S)

    def send_now(self, topic: str, value: Optional[bytes], key: bytes, partition: int) -> None:
        """`send` for callers that cannot await (a table write): a full queue blocks briefly."""
        while not self._produce(topic, value, key, partition):
            self._producer.poll(_QUEUE_FULL_WAIT_S)

    def poll(self) -> None:
        """Serve delivery reports that have arrived (cheap; call after each batch of sends)."""
        if self._client is not None:
            self._client.poll(0)

    async def flush(self) -> None:
        """Returns once every record sent before the call is acknowledged; raises if any record
        failed."""
        waited = self._epoch
        self._epoch += 1
        self._unacknowledged[self._epoch] = 0
        self._deliveries[self._epoch] = functools.partial(self._on_delivery, self._epoch)
        while self._client is not None:
            self._client.poll(0)
            if all(count <= 0 for epoch, count in self._unacknowledged.items() if epoch <= waited):
                break
            await asyncio.sleep(_FLUSH_POLL_S)
        for epoch in [e for e, count in self._unacknowledged.items() if e <= waited and count <= 0]:
            del self._unacknowledged[epoch]
            del self._deliveries[epoch]
        if self._failures:  # kept: no later flush may let a commit pass either
            raise KafkaException(self._failures[0])

    @property
    def unacknowledged(self) -> int:
        return sum(self._unacknowledged.values())
