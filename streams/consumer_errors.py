"""How the worker's own confluent-kafka consumers (ingest batcher, quarantine retrier) treat
errors: only fatal ones stop the worker; rebalances and transport hiccups are part of life."""

from __future__ import annotations

import logging

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

log = logging.getLogger(__name__)

# A commit refused because of a rebalance: a partition that moved is re-read by its new owner from
# the last commit (everything downstream recognises the replay); one that stayed (cooperative
# rebalancing keeps most in place) is committed again by `PendingCommits`.
REBALANCE_COMMIT_ERRORS = frozenset(
    {
        KafkaError.ILLEGAL_GENERATION,
        KafkaError.REBALANCE_IN_PROGRESS,
        KafkaError.UNKNOWN_MEMBER_ID,
        KafkaError._ASSIGNMENT_LOST,
        KafkaError._NO_OFFSET,
    }
)


def is_error(message: Message) -> bool:
    """True for a message that carries an error to skip; raises for a fatal one."""
    error = message.error()
    if error is None:
        return False
    if error.fatal():
        raise KafkaException(error)
    # Partition EOF, transport hiccups, coordinator moves: librdkafka recovers by itself.
    if error.code() != KafkaError._PARTITION_EOF:
        log.warning("consumer: %s", error)
    return True


# A commit that did not happen because the group coordinator moved or is still loading (a broker
# restart): librdkafka finds the new one by itself, and the next commit carries these offsets.
RETRIABLE_COMMIT_ERRORS = frozenset(
    {
        KafkaError.NOT_COORDINATOR,
        KafkaError.COORDINATOR_NOT_AVAILABLE,
        KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
        KafkaError.REQUEST_TIMED_OUT,
        KafkaError._TIMED_OUT,
        KafkaError._TRANSPORT,
        KafkaError._WAIT_COORD,
    }
)


def commit(consumer: Consumer, offsets: list[TopicPartition]) -> bool:
    """Synchronous commit; False when a rebalance made it moot or the coordinator was away (the
    offsets stay uncommitted: a crash before the next commit re-reads, never skips). A caller
    that commits only the partitions of its latest batch keeps what failed in `PendingCommits`."""
    try:
        consumer.commit(offsets=offsets, asynchronous=False)
        return True
    except KafkaException as exc:
        code = exc.args[0].code()
        if code in RETRIABLE_COMMIT_ERRORS:
            log.warning("commit not done, the coordinator is away (the next commit carries it): %s", exc.args[0])
            return False
        if code not in REBALANCE_COMMIT_ERRORS:
            raise
        log.warning("commit lost to a rebalance (the records will be read again): %s", exc.args[0])
        return False


class PendingCommits:
    """The offsets of a consumer that commits, after each forwarded batch, the partitions of that
    batch. A commit that did not happen (rebalance, coordinator away) is retried with the next
    batch and, while no batch comes, on its own every `retry_interval_s`, for the partitions the
    consumer still owns (the others are re-read by their new owner from the last commit).

    Without it a partition that received nothing after a failed commit kept its old committed
    offset for good (seen in the two-worker benchmark: raw.pdd/2 and /3 never committed after a
    rebalance kept them on the same worker): its lag never drained, and a restart re-read it.
    Every offset kept here is of records already delivered downstream, so committing it late,
    or after the partition came back, never skips a record."""

    def __init__(self, retry_interval_s: float = 1.0) -> None:
        self.retry_interval_s = retry_interval_s
        self.pending: dict[tuple[str, int], int] = {}
        self._tried_at = float("-inf")

    def commit(self, consumer: Consumer, offsets: list[TopicPartition], now: float) -> bool:
        """Commit `offsets` (next offsets to read) together with any still pending."""
        for tp in offsets:
            key = (tp.topic, tp.partition)
            self.pending[key] = max(self.pending.get(key, tp.offset), tp.offset)
        return self._commit_owned(consumer, now)

    def retry(self, consumer: Consumer, now: float) -> None:
        """Call when idle: commits what is pending, at most every `retry_interval_s`."""
        if self.pending and now - self._tried_at >= self.retry_interval_s:
            self._commit_owned(consumer, now)

    def _commit_owned(self, consumer: Consumer, now: float) -> bool:
        self._tried_at = now
        # librdkafka changes the assignment only inside poll/consume, on this same thread: it
        # cannot change between this check and the commit. The broker would not refuse a
        # commit of another member's partition; committing it could move its offset back.
        owned = {(tp.topic, tp.partition) for tp in consumer.assignment()}
        for key in [key for key in self.pending if key not in owned]:
            del self.pending[key]
        if not self.pending:
            return True
        if commit(consumer, [TopicPartition(topic, partition, offset) for (topic, partition), offset in self.pending.items()]):
            self.pending.clear()
            return True
        return False
