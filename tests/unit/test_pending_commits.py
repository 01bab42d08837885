"""A commit that does not happen (rebalance, coordinator away) is tried again for the partitions
the consumer still owns, also while no new batch comes (streams/consumer_errors.py)."""

from __future__ import annotations

from confluent_kafka import KafkaError, KafkaException, TopicPartition

from streams.consumer_errors import PendingCommits


class FakeConsumer:
    def __init__(self, owned: list[tuple[str, int]]) -> None:
        self.owned = owned
        self.refuse: list[int] = []  # error codes the next commits raise, in order
        self.committed: dict[tuple[str, int], int] = {}

    def assignment(self) -> list[TopicPartition]:
        return [TopicPartition(topic, partition) for topic, partition in self.owned]

    def commit(self, offsets, asynchronous: bool) -> None:
        assert asynchronous is False
        if self.refuse:
            raise KafkaException(KafkaError(self.refuse.pop(0)))
        for tp in offsets:
            self.committed[(tp.topic, tp.partition)] = tp.offset


def test_a_commit_lost_to_a_rebalance_is_committed_once_the_consumer_is_idle():
    # Seen in the two-worker benchmark: the partitions stayed with the consumer, nothing more came.
    consumer = FakeConsumer([("raw.pdd", 2), ("raw.pdd", 3)])
    commits = PendingCommits(retry_interval_s=1.0)
    consumer.refuse = [KafkaError.ILLEGAL_GENERATION]
    assert not commits.commit(consumer, [TopicPartition("raw.pdd", 2, 1603), TopicPartition("raw.pdd", 3, 1453)], now=10.0)
    assert consumer.committed == {}
    commits.retry(consumer, now=10.5)  # not yet: at most once a second
    assert consumer.committed == {}
    commits.retry(consumer, now=11.0)
    assert consumer.committed == {("raw.pdd", 2): 1603, ("raw.pdd", 3): 1453}
    assert commits.pending == {}


def test_the_next_batch_carries_what_failed_and_moved_partitions_are_dropped():
    consumer = FakeConsumer([("raw.tmall", 0), ("raw.tmall", 1)])
    commits = PendingCommits()
    consumer.refuse = [KafkaError.NOT_COORDINATOR]
    commits.commit(consumer, [TopicPartition("raw.tmall", 0, 50), TopicPartition("raw.tmall", 1, 70)], now=1.0)
    consumer.owned = [("raw.tmall", 0)]  # partition 1 moved to another worker: its owner re-reads it
    assert commits.commit(consumer, [TopicPartition("raw.tmall", 0, 80)], now=1.1)
    assert consumer.committed == {("raw.tmall", 0): 80}


def test_an_offset_never_moves_back():
    consumer = FakeConsumer([("raw.jd", 0)])
    commits = PendingCommits()
    consumer.refuse = [KafkaError.REBALANCE_IN_PROGRESS]
    commits.commit(consumer, [TopicPartition("raw.jd", 0, 90)], now=1.0)
    commits.commit(consumer, [TopicPartition("raw.jd", 0, 40)], now=2.0)  # re-read after a revoke and re-assign
    assert consumer.committed == {("raw.jd", 0): 90}
