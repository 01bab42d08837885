"""How the worker's own confluent-kafka consumers (ingest batcher, quarantine retrier) treat
errors: only fatal ones stop the worker; rebalances and transport hiccups are part of life."""

from __future__ import annotations

import logging

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

log = logging.getLogger(__name__)

# A commit refused because a rebalance moved the partitions: the new owner re-reads from the last
# commit, and everything downstream recognises the replay.
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
    offsets stay uncommitted: a crash before the next commit re-reads, never skips)."""
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
