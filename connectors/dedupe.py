"""Adapter-side dedupe: a platform message that was already written to `raw.<platform>` is
acknowledged again without being written again.

Platforms redeliver: TMC re-serves unconfirmed messages, Douyin pushes again until it hears
success, PDD re-sends unacked frames, and a JD poller re-reads the overlap of its windows. Each
delivery carries an id (TMC message id, Douyin msg_id, PDD frame id; for JD the order version
`orderId:modified:orderState`), kept in the raw record's `message-id` header.

`DeliveryLog` remembers, per message id, that its record is in Kafka (WRITTEN) and whether the
follow-up snapshot the adapter fetches for it (Tmall fullinfo, Douyin order detail, PDD order)
is in Kafka too (COMPLETE). A redelivery of a WRITTEN message is not written again, but its
follow-up is still fetched; a redelivery of a COMPLETE message is only acknowledged. Ids are
marked only after the broker acknowledged the records, so a crash can never make the log claim
more than Kafka has.

The log is bounded (least recently seen ids go first, and ids older than `window_s`). On start,
`load_recent` rebuilds it from the tail of the raw topic: records whose timestamp is within
`window_s` (found with `offsets_for_times`), of this adapter's shops (the `shop` header). A
message id is COMPLETE there when a follow-up record with the same key (order id) was written at
or after it.

What remains possible: a message redelivered later than `window_s` after it was written (or
after more than `max_ids` newer ones), or redelivered to a different adapter process serving
other shops, is written again; so is one whose first write was cut off by a crash half-way
through the producer's flush while the log was empty. Downstream stays exact regardless: the
normalizer applies an order update only if it moves the line forward in (status rank, modified
time), so a second copy of a message produces no movement. This dedupe saves Kafka space and
worker time under redelivery storms; it is not what makes stock exact.
"""

from __future__ import annotations

import enum
import logging
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from typing import Iterable, Optional

from confluent_kafka import Consumer, KafkaException, TopicPartition

from connectors.base import RawHeader
from stockstream.settings import Settings
from stockstream.topics import raw_topic

log = logging.getLogger(__name__)


class Seen(enum.Enum):
    NEW = 0
    WRITTEN = 1  # the message's record is in Kafka; its follow-up snapshot may not be
    COMPLETE = 2  # the record and (when the adapter fetches one) its follow-up are in Kafka


class DeliveryLog:
    """Bounded memory of message ids written (LRU by last sight, TTL `window_s`)."""

    def __init__(self, window_s: float = 3600.0, max_ids: int = 500_000) -> None:
        self.window_s = window_s
        self.max_ids = max_ids
        self._ids: OrderedDict[str, tuple[float, Seen]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._ids)

    def state(self, message_id: Optional[str], now: Optional[float] = None) -> Seen:
        if not message_id:
            return Seen.NEW
        entry = self._ids.get(message_id)
        if entry is None:
            return Seen.NEW
        now = time.time() if now is None else now
        if now - entry[0] > self.window_s:
            del self._ids[message_id]
            return Seen.NEW
        self._ids.move_to_end(message_id)
        return entry[1]

    def mark(self, message_ids: Iterable[Optional[str]], state: Seen, at: Optional[float] = None) -> None:
        """Remember ids as WRITTEN or COMPLETE (never downgraded), at `at` (epoch s, default now)."""
        at = time.time() if at is None else at
        for message_id in message_ids:
            if not message_id:
                continue
            old = self._ids.pop(message_id, None)
            if old is not None and old[1] == Seen.COMPLETE:
                state_now = Seen.COMPLETE
            else:
                state_now = state
            self._ids[message_id] = (max(at, old[0]) if old else at, state_now)
        while len(self._ids) > self.max_ids:
            self._ids.popitem(last=False)


@dataclass(frozen=True)
class RecentDelivery:
    message_id: str
    key: str
    shop: str
    written_ms: int  # the record's Kafka timestamp
    complete: bool


def load_recent(
    settings: Settings,
    platform: str,
    shops: Iterable[str],
    window_s: float,
    followup_kinds: Iterable[str] = (),
    timeout_s: float = 60.0,
) -> list[RecentDelivery]:
    """Message ids written to raw.<platform> for `shops` in the last `window_s` (read to the end
    offsets as of the call). Blocking: call through `asyncio.to_thread`."""
    topic = settings.topic(raw_topic(platform))
    shops = set(shops)
    followup_kinds = set(followup_kinds)
    since_ms = int((time.time() - window_s) * 1000)
    consumer = Consumer(
        {
            "bootstrap.servers": settings.bootstrap_servers,
            "group.id": f"adapter-dedupe-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
            "auto.offset.reset": "latest",
        }
    )
    deliveries: dict[str, tuple[str, str, int]] = {}  # message id -> (key, shop, first written ms)
    followups: dict[str, int] = {}  # key -> last follow-up written ms
    try:
        meta = consumer.list_topics(topic, timeout=timeout_s)
        info = meta.topics.get(topic)
        if info is None or info.error is not None:
            return []  # nothing written yet
        deadline = time.monotonic() + timeout_s
        starts = consumer.offsets_for_times(
            [TopicPartition(topic, p, since_ms) for p in info.partitions], timeout=timeout_s
        )
        assignment, ends = [], {}
        for tp in starts:
            _low, high = consumer.get_watermark_offsets(TopicPartition(topic, tp.partition), timeout=timeout_s)
            start = tp.offset if tp.offset >= 0 else high  # -1: nothing that recent
            if start < high:
                assignment.append(TopicPartition(topic, tp.partition, start))
                ends[tp.partition] = high
        if not assignment:
            return []
        consumer.assign(assignment)
        while ends:
            if time.monotonic() > deadline:
                raise KafkaException(f"could not read the tail of {topic} in {timeout_s}s")
            msg = consumer.poll(0.2)
            if msg is None:
                continue
            if msg.error():
                raise KafkaException(msg.error())
            headers = {k: v.decode("utf-8", "replace") for k, v in (msg.headers() or []) if v is not None}
            if headers.get(RawHeader.SHOP) in shops and msg.key() is not None:
                key = msg.key().decode("utf-8", "replace")
                written_ms = msg.timestamp()[1]
                message_id = headers.get(RawHeader.MESSAGE_ID)
                if message_id:
                    deliveries.setdefault(message_id, (key, headers[RawHeader.SHOP], written_ms))
                elif headers.get(RawHeader.KIND) in followup_kinds:
                    followups[key] = max(followups.get(key, 0), written_ms)
            if msg.offset() + 1 >= ends.get(msg.partition(), 0):
                ends.pop(msg.partition(), None)
    finally:
        consumer.close()
    return [
        RecentDelivery(mid, key, shop, at, complete=followups.get(key, -1) >= at)
        for mid, (key, shop, at) in deliveries.items()
    ]


def restore(log_: DeliveryLog, recent: Iterable[RecentDelivery]) -> int:
    """Put what `load_recent` found into the log; returns how many ids."""
    n = 0
    for d in sorted(recent, key=lambda d: d.written_ms):
        log_.mark([d.message_id], Seen.COMPLETE if d.complete else Seen.WRITTEN, at=d.written_ms / 1000)
        n += 1
    return n
