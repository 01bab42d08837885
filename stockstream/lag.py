"""How far consumer groups are behind, from committed offsets and end offsets."""

from __future__ import annotations

from confluent_kafka import Consumer, TopicPartition


def group_lag(bootstrap: str, group: str, topics: list[str], partitions: int) -> int:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        tps = [TopicPartition(t, p) for t in topics for p in range(partitions)]
        committed = consumer.committed(tps, timeout=10)
        lag = 0
        for tp in committed:
            _low, high = consumer.get_watermark_offsets(TopicPartition(tp.topic, tp.partition), timeout=10)
            lag += high - (tp.offset if tp.offset >= 0 else 0)
        return lag
    finally:
        consumer.close()
