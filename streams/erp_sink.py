"""`stockstream erp-sink`: `erp.journal` -> the ERP's REST API, one idempotent upsert per entry.

``PUT {base}/record/v1/inventoryAdjustment/eid:{external_id}`` (NetSuite's upsert by external id):
writing the same entry twice leaves one adjustment, so at-least-once delivery is enough. Offsets
are committed only after every entry of a consumed batch is stored (or parked as invalid), so a
crash or an outage loses nothing; it may only PUT some entries again.

Answers: 2xx stored. 400/413/422 (the ERP finds the content invalid; sending it again cannot
help): parked in `erp.dead-letter` with the ERP's answer, counted as rejected. Anything else
(5xx, 401/403 until someone fixes the token, 404/409/429, timeouts, refused connections) is
retried with jittered exponential backoff capped at `erp_max_backoff_s`, for as long as it takes:
the sink stalls rather than skip an entry. A stall longer than the consumer's poll interval
costs a rebalance and the batch is read again: harmless, the PUTs are upserts.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from datetime import datetime, timezone
from typing import Optional

import aiohttp
import orjson
from confluent_kafka import Consumer, Message, Producer, TopicPartition
from tenacity import AsyncRetrying, retry_if_exception_type, wait_exponential_jitter

from schemas import codec
from schemas.errors import CodecError
from schemas.names import ERP_JOURNAL_ENTRY
from stockstream.core.journal import JournalEntry
from stockstream.settings import Settings
from stockstream.topics import ERP_DLQ, ERP_JOURNAL, ensure_topics
from streams import consumer_errors, metrics

log = logging.getLogger(__name__)

POLL_RECORDS = 500
POLL_TIMEOUT_S = 0.5
INVALID_CONTENT = frozenset({400, 413, 422})


class TransientPushError(Exception):
    """The ERP did not take the entry this time; try again."""


class RejectedEntry(Exception):
    def __init__(self, status: int, answer: str) -> None:
        super().__init__(f"ERP refused the entry: {status} {answer[:500]}")
        self.status = status
        self.answer = answer


def adjustment_url(base_url: str, external_id: str) -> str:
    return f"{base_url.rstrip('/')}/record/v1/inventoryAdjustment/eid:{external_id}"


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def adjustment_body(entry: JournalEntry) -> dict:
    """The JSON the ERP stores for one entry: the same entry always gives the same body."""
    return {
        "sku": entry.sku,
        "location": entry.location,
        "reason": entry.reason,
        "quantity": entry.quantity_delta,
        "window": {"start": _iso(entry.window_start_ms), "end": _iso(entry.window_end_ms)},
        "movementCount": entry.movement_count,
        "memo": f"stockstream {entry.reason} {_iso(entry.window_start_ms)}/{_iso(entry.window_end_ms)}",
    }


def sink_group(settings: Settings) -> str:
    return f"{settings.topic(settings.app_id)}-erp-sink"


class ErpSink:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.source = settings.topic(ERP_JOURNAL.name)
        self.dead_letter = settings.topic(ERP_DLQ.name)
        self.stopping = asyncio.Event()
        self._limit = asyncio.Semaphore(settings.erp_push_concurrency)

    # ---------------------------------------------------------------- one entry

    async def push(self, session: aiohttp.ClientSession, entry: JournalEntry) -> Optional[RejectedEntry]:
        """PUT one entry until the ERP stores it; returns the rejection if it refuses the content."""
        started = time.monotonic()
        url = adjustment_url(self.settings.erp_base_url, entry.external_id)
        body = orjson.dumps(adjustment_body(entry))
        retrying = AsyncRetrying(
            retry=retry_if_exception_type(TransientPushError),
            wait=wait_exponential_jitter(initial=0.1, max=self.settings.erp_max_backoff_s),
            stop=lambda _state: self.stopping.is_set(),
            reraise=True,
        )
        rejected: Optional[RejectedEntry] = None
        async with self._limit:
            async for attempt in retrying:
                with attempt:
                    try:
                        await self._put(session, url, body)
                    except RejectedEntry as exc:
                        rejected = exc
                    except TransientPushError:
                        metrics.ERP_PUSHES.labels("retry").inc()
                        raise
        metrics.ERP_PUSHES.labels("rejected" if rejected else "ok").inc()
        metrics.ERP_PUSH_LATENCY.observe(time.monotonic() - started)
        return rejected

    async def _put(self, session: aiohttp.ClientSession, url: str, body: bytes) -> None:
        try:
            async with session.put(url, data=body, headers={"Content-Type": "application/json"}) as response:
                if response.status < 300:
                    return
                answer = await response.text()
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            raise TransientPushError(f"{type(exc).__name__}: {exc}") from exc
        if response.status in INVALID_CONTENT:
            raise RejectedEntry(response.status, answer)
        if response.status in (401, 403):
            log.error("ERP refuses our credentials (%d): check STOCKSTREAM_ERP_TOKEN", response.status)
        raise TransientPushError(f"{response.status} {answer[:200]}")

    # ---------------------------------------------------------------- the loop

    async def run(self) -> None:
        await asyncio.to_thread(ensure_topics, self.settings, (ERP_JOURNAL, ERP_DLQ))
        consumer = Consumer(
            {
                "bootstrap.servers": self.settings.bootstrap_servers,
                "group.id": sink_group(self.settings),
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                **self.settings.group_membership("erp-sink", static=False),
            }
        )
        producer = Producer({"bootstrap.servers": self.settings.bootstrap_servers, "enable.idempotence": True, "acks": "all"})
        consumer.subscribe([self.source])
        commits = consumer_errors.PendingCommits()
        token = self.settings.erp_token.get_secret_value()
        timeout = aiohttp.ClientTimeout(total=self.settings.erp_request_timeout_s)
        try:
            async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}, timeout=timeout) as session:
                while not self.stopping.is_set():
                    messages = await asyncio.to_thread(consumer.consume, POLL_RECORDS, POLL_TIMEOUT_S)
                    messages = [m for m in messages if not consumer_errors.is_error(m)]
                    if not messages:
                        await asyncio.to_thread(commits.retry, consumer, time.monotonic())
                    elif await self._deliver(session, producer, messages):
                        await asyncio.to_thread(commits.commit, consumer, _next_offsets(messages), time.monotonic())
        finally:
            await asyncio.to_thread(consumer.close)

    async def _deliver(self, session: aiohttp.ClientSession, producer: Producer, messages: list[Message]) -> bool:
        """Push a batch; True when every entry is stored or parked (the batch may be committed)."""
        entries: list[tuple[Message, JournalEntry]] = []
        for message in messages:
            try:
                entries.append((message, JournalEntry.from_record(codec.decode(message.value(), ERP_JOURNAL_ENTRY))))
            except (CodecError, TypeError) as exc:
                self._park(producer, message, None, f"undecodable journal entry: {exc}")
        results = await asyncio.gather(*(self.push(session, entry) for _message, entry in entries), return_exceptions=True)
        complete = True
        for (message, entry), result in zip(entries, results):
            if isinstance(result, RejectedEntry):
                self._park(producer, message, entry, str(result))
            elif isinstance(result, BaseException):  # stopped while retrying: not stored, not committed
                complete = False
        await asyncio.to_thread(producer.flush)
        return complete and not self.stopping.is_set()

    def _park(self, producer: Producer, message: Message, entry: Optional[JournalEntry], reason: str) -> None:
        log.error("erp.dead-letter: %s", reason)
        record = {
            "source": {"topic": message.topic(), "partition": message.partition(), "offset": message.offset()},
            "entry": entry.to_record() if entry else None,
            "reason": reason,
            "parked_at_ms": int(time.time() * 1000),
        }
        producer.produce(self.dead_letter, key=message.key(), value=orjson.dumps(record))

    def stop(self) -> None:
        self.stopping.set()


def _next_offsets(messages: list[Message]) -> list[TopicPartition]:
    highest: dict[tuple[str, int], int] = {}
    for m in messages:
        key = (m.topic(), m.partition())
        highest[key] = max(highest.get(key, -1), m.offset())
    return [TopicPartition(topic, partition, offset + 1) for (topic, partition), offset in highest.items()]


def run_sink(settings: Settings) -> None:
    """Run until SIGTERM / SIGINT."""
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if settings.erp_metrics_port:
        from prometheus_client import start_http_server

        start_http_server(settings.erp_metrics_port, registry=metrics.REGISTRY)

    async def main() -> None:
        sink = ErpSink(settings)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, sink.stop)
        await sink.run()

    asyncio.run(main())
