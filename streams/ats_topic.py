"""The latest ATS snapshot per SKU, read from the compacted `ats` topic to its current end."""

from __future__ import annotations

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from schemas import codec
from schemas.names import ATS_SNAPSHOT
from stockstream.settings import Settings
from stockstream.topics import ATS


def latest_snapshots(settings: Settings) -> dict[str, dict]:
    topic = settings.topic(ATS.name)
    consumer = Consumer({"bootstrap.servers": settings.bootstrap_servers, "group.id": "stockstream-ats-reader",
                         "enable.auto.commit": False})
    latest: dict[str, dict] = {}
    try:
        for partition in range(settings.partitions):
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
            if high <= low:
                continue
            consumer.assign([TopicPartition(topic, partition, OFFSET_BEGINNING)])
            position = low
            while position < high:
                for message in consumer.consume(num_messages=1000, timeout=1.0):
                    if message.error() is not None:
                        continue
                    position = message.offset() + 1
                    snapshot = codec.decode(message.value(), ATS_SNAPSHOT)
                    previous = latest.get(snapshot["sku"])
                    if previous is None or snapshot["version"] >= previous["version"]:
                        latest[snapshot["sku"]] = snapshot
    finally:
        consumer.close()
    return latest
