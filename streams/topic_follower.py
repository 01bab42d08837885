"""Read a whole (compacted) topic from the beginning and follow it, on a thread of its own.

For state every worker needs in full (the catalog, the allocation rules): every partition is
assigned directly, no consumer group joined, nothing committed. `ready` is set once the follower
has read up to the end offsets it saw when it started, so that callers can wait for the complete
picture rather than act on a half-loaded one.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable, Optional

import mode
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Message, TopicPartition

from stockstream.settings import Settings
from streams import consumer_errors

log = logging.getLogger(__name__)

# What a topic created a moment ago answers until its partitions have leaders.
_NOT_READY = {
    KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE, KafkaError.UNKNOWN_TOPIC_OR_PART,
    KafkaError._TIMED_OUT,
}

# The messages of one poll, in partition order: apply them.
OnMessages = Callable[[list[Message]], None]


class TopicFollower:
    def __init__(self, settings: Settings, topic: str, on_messages: OnMessages, name: str) -> None:
        self.settings = settings
        self.topic = topic
        self.name = name
        self.on_messages = on_messages
        self.ready = threading.Event()
        self.failure: Optional[BaseException] = None
        self._stopping = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def read_to_end(self, timeout: float = 30.0) -> None:
        """One-shot (a CLI): read up to the current end on the calling thread, then stop."""
        deadline = time.monotonic() + timeout
        self._run(until=lambda: self.ready.is_set() or time.monotonic() > deadline)
        if not self.ready.is_set():
            raise TimeoutError(f"{self.topic}: not read to the end within {timeout}s")

    def _run(self, until: Optional[Callable[[], bool]] = None) -> None:
        consumer = Consumer(
            {
                "bootstrap.servers": self.settings.bootstrap_servers,
                # Required by librdkafka; never joined (assign, not subscribe) and never committed.
                "group.id": f"{self.settings.topic(self.settings.app_id)}-{self.name}",
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "auto.offset.reset": "earliest",
                "fetch.wait.max.ms": 50,
            }
        )
        try:
            partitions = self._partitions(consumer)
            if partitions is None:
                return
            ends: dict[int, int] = {}
            for partition in partitions:
                low, high = self._watermarks(consumer, partition)
                if high > low:
                    ends[partition] = high
            consumer.assign([TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in partitions])
            self._catch_up_check(consumer, ends)
            while not self._stopping.is_set() and not (until is not None and until()):
                messages = [m for m in consumer.consume(num_messages=1000, timeout=0.1) if not consumer_errors.is_error(m)]
                if messages:
                    self.on_messages(messages)
                for message in messages:
                    end = ends.get(message.partition())
                    if end is not None and message.offset() + 1 >= end:
                        del ends[message.partition()]
                if not self.ready.is_set():
                    self._catch_up_check(consumer, ends)
        except BaseException as exc:  # surfaced by FollowerService, which crashes the worker
            self.failure = exc
            log.exception("%s failed", self.name)
            if until is not None:
                raise
        finally:
            consumer.close()

    def _partitions(self, consumer: Consumer) -> Optional[list[int]]:
        while not self._stopping.is_set():
            metadata = consumer.list_topics(self.topic, timeout=30)
            topic = metadata.topics.get(self.topic)
            if topic is not None and topic.error is None and topic.partitions:
                return sorted(topic.partitions)
            time.sleep(0.5)  # not created yet
        return None

    def _watermarks(self, consumer: Consumer, partition: int) -> tuple[int, int]:
        # A topic created a moment ago may not have a leader everywhere yet: retriable, retry.
        deadline = time.monotonic() + 30
        while True:
            try:
                return consumer.get_watermark_offsets(TopicPartition(self.topic, partition), timeout=10)
            except KafkaException as exc:
                if exc.args[0].code() not in _NOT_READY or time.monotonic() > deadline or self._stopping.is_set():
                    raise
                time.sleep(0.2)

    def _catch_up_check(self, consumer: Consumer, ends: dict[int, int]) -> None:
        # Compaction leaves gaps, so the consumer's position decides too, not only record offsets.
        if ends:
            for tp in consumer.position([TopicPartition(self.topic, p) for p in ends]):
                if tp.offset >= 0 and tp.offset >= ends.get(tp.partition, 0):
                    ends.pop(tp.partition, None)
        if not ends:
            self.ready.set()


class FollowerService(mode.Service):
    """Ties a follower thread to the worker's life; a failed follower crashes the worker."""

    def __init__(self, follower: TopicFollower, **kwargs) -> None:
        super().__init__(**kwargs)
        self.follower = follower

    async def on_start(self) -> None:
        self.follower.start()

    async def on_stop(self) -> None:
        self.follower.stop()

    @mode.Service.timer(1.0)
    async def _watch(self) -> None:
        if self.follower.failure is not None:
            await self.crash(self.follower.failure)
