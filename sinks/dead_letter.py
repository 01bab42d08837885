"""The `channel.dead-letter` topic: stock writes given up on, with the reason; and `dlq retry`.

Value (UTF-8 JSON), key ``<channel>/<platform_sku_id>``:

    {"channel": "jd:10086001", "platform": "jd", "shop_id": "10086001", "listing_id": "...",
     "platform_sku_id": "...", "merchant_code": "...", "quantity": 7,
     "reason": "platform_error:21", "detail": "21 商品不存在 ...", "parked_at_ms": 1718000000000,
     "allocations": [{AllocationChange fields of each component, movement_ids empty}]}

Retrying re-publishes the parked record's allocations to `allocations` with the header
``stockstream-retry``. The sink takes such a record even though its version is already known,
if it is still the latest for its (SKU, channel), and pushes its listings again; if a newer
version came meanwhile, that one was (or will be) pushed and the retry is dropped: retrying
can never put an older quantity on a channel.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Optional

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from schemas import names
from schemas.codec import encode
from sinks.coalesce import Allocation, Push
from sinks.decisions import Decision
from sinks.kafka_io import Record, TopicWriter
from stockstream.settings import Settings
from stockstream.topics import ALLOCATIONS, CHANNEL_DLQ

RETRY_HEADER = "stockstream-retry"


def dead_letter(push: Push, decision: Decision, now_ms: int) -> Record:
    listing = push.target.listing
    value = {
        "channel": listing.channel,
        "platform": listing.platform,
        "shop_id": listing.shop_id,
        "listing_id": listing.listing_id,
        "platform_sku_id": listing.platform_sku_id,
        "merchant_code": listing.merchant_code,
        "quantity": push.quantity,
        "reason": decision.reason,
        "detail": decision.detail,
        "parked_at_ms": now_ms,
        "allocations": [a.as_record() for a in push.allocations],
    }
    key = f"{listing.channel}/{listing.platform_sku_id}".encode()
    return key, json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode(), None


def retry_records(value: dict) -> list[Record]:
    """The allocations of one dead letter, as `allocations` records marked as retries."""
    out = []
    for record in value.get("allocations") or []:
        allocation = Allocation.from_record(record)
        out.append((allocation.sku.encode(), encode(names.ALLOCATION_CHANGE, allocation.as_record()), [(RETRY_HEADER, b"dead-letter")]))
    return out


def is_retry(headers: Optional[list[tuple[str, bytes]]]) -> bool:
    return any(k == RETRY_HEADER for k, _ in headers or ())


def retry_dead_letters(settings: Settings, channel: Optional[str] = None, timeout: float = 30.0) -> int:
    """Re-publish parked writes (of one channel, or all) to `allocations`; returns how many
    dead letters were retried. Without a channel filter the consumer group
    `<app>-dlq-retry` commits what it retried, so the next run starts after it; with one, nothing
    is committed (other channels' letters stay for their own retry; retrying twice is harmless)."""
    topic = settings.topic(CHANNEL_DLQ.name)
    consumer = Consumer(
        {
            "bootstrap.servers": settings.bootstrap_servers,
            "group.id": f"{settings.topic(settings.app_id)}-dlq-retry" if channel is None else f"dlq-retry-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    writer = TopicWriter(settings)
    retried = 0
    try:
        metadata = consumer.list_topics(topic, timeout=timeout)
        partitions = sorted(metadata.topics[topic].partitions) if topic in metadata.topics else []
        ends = {}
        for p in partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout)
            if high > low:
                ends[p] = high
        if not ends:
            return 0
        committed = {tp.partition: tp.offset for tp in consumer.committed([TopicPartition(topic, p) for p in ends], timeout=timeout)}
        for p in list(ends):
            if committed.get(p, -1) >= ends[p]:
                del ends[p]
        if not ends:
            return 0
        consumer.assign([TopicPartition(topic, p, committed[p] if committed.get(p, -1) >= 0 else OFFSET_BEGINNING) for p in ends])
        to_commit: dict[int, int] = {}
        deadline = time.monotonic() + timeout
        while ends and time.monotonic() < deadline:
            message = consumer.poll(0.2)
            if message is None or message.error():
                continue
            p, offset = message.partition(), message.offset()
            value = json.loads(message.value())
            if channel is None or value.get("channel") == channel:
                writer.write(ALLOCATIONS.name, retry_records(value), timeout)
                retried += 1
            to_commit[p] = offset + 1
            if offset + 1 >= ends.get(p, 0):
                ends.pop(p, None)
        if channel is None and to_commit:
            consumer.commit(offsets=[TopicPartition(topic, p, o) for p, o in to_commit.items()], asynchronous=False)
        return retried
    finally:
        consumer.close()
