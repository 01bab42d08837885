"""No stuck partition: ~1,000 hostile raw records (every platform's payloads type-confused,
truncated, byte-flipped, random, foreign; tombstones, records without key, headers that are not
UTF-8) interleaved with ~500 valid Tmall messages and their warehouse receipt, on the real broker,
through a worker process. Then:

* the worker's consumer groups have committed everything (lag 0): nothing stopped a partition;
* every hostile record is in `quarantine` under its own source topic/partition/offset, with a
  documented reason code and a readable reason;
* every SKU's ATS equals the traffic's ground truth: the valid orders in between were unaffected.
"""

from __future__ import annotations

import random
import time
import uuid

import pytest

from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

from connectors.base import Rejected
from connectors.publisher import RawPublisher
from connectors.simulators.tmall_traffic import TmallTraffic
from schemas import codec
from stockstream.process import WorkerProcess
from stockstream.topics import QUARANTINE, ensure_topics, raw_topic
from tests.fuzz.hostile import FAMILIES, PARSER_REASONS, PARSERS, hostile_payload, parser_of
from tests.support.ats import wait_for_expected
from tests.support.lag import pipeline_lag

pytestmark = pytest.mark.integration

BAD_RECORDS = 1000
VALID_MESSAGES = 500


def hostile_records(n: int, seed: int) -> list[tuple[str, bytes | None, bytes | None, list[tuple[str, bytes]]]]:
    """(platform, key, value, headers) that the platform's parser rejects (so none of them can
    touch the traffic's SKUs whatever it says), plus tombstones and non-UTF-8 headers."""
    rnd = random.Random(seed)
    out = []
    while len(out) < n:
        name = rnd.choice(PARSERS)
        platform = name.split("-")[0]
        roll = rnd.random()
        if roll < 0.03:  # a tombstone: no value at all
            out.append((platform, rnd.choice([b"order-x", None]), None, []))
            continue
        payload, headers = hostile_payload(name, rnd.choice(FAMILIES), rnd, None)
        kafka_headers = []
        for k, v in (headers or {}).items():
            if v is not None:
                kafka_headers.append((k, v if isinstance(v, bytes) else str(v).encode()))
        if roll < 0.06:
            kafka_headers.append(("shop", b"\xff\xfe"))  # not UTF-8: decoded with replacement
        text_headers = {k: v.decode("utf-8", "replace") for k, v in kafka_headers}
        if not isinstance(parser_of(name)(payload, text_headers), Rejected):
            continue
        out.append((platform, rnd.choice([b"order-%d" % rnd.randrange(50), None, b"\xff"]), payload, kafka_headers))
    return out


def test_hostile_records_are_quarantined_and_no_partition_sticks(settings):
    started = time.monotonic()
    ensure_topics(settings)
    traffic = TmallTraffic(skus=[f"SKU-{i:03d}" for i in range(20)], duplicate_rate=0.1, seed=5)
    valid = list(traffic.messages(VALID_MESSAGES))
    bad = hostile_records(BAD_RECORDS, seed=5)

    publisher = RawPublisher(settings)
    publisher.publish("warehouse", traffic.receipts())
    producer = Producer({"bootstrap.servers": settings.bootstrap_servers, "enable.idempotence": True, "partitioner": "murmur2_random"})
    positions: list[tuple[str, int, int]] = []

    def delivered(error, message) -> None:
        assert error is None, error
        positions.append((message.topic(), message.partition(), message.offset()))

    step = VALID_MESSAGES // 10
    for chunk in range(10):  # valid traffic and hostile records interleaved in ten rounds
        publisher.publish("tmall", valid[chunk * step : (chunk + 1) * step])
        for platform, key, value, headers in bad[chunk * len(bad) // 10 : (chunk + 1) * len(bad) // 10]:
            producer.produce(settings.topic(raw_topic(platform)), key=key, value=value, headers=headers, on_delivery=delivered)
        assert producer.flush(30) == 0
    assert len(positions) == len(bad)

    worker = WorkerProcess(settings).start()
    try:
        worker.wait_ready()
        wrong = wait_for_expected(worker, traffic.truth.skus(), traffic.truth.ats, timeout=90)
        assert not wrong, f"ATS differs from ground truth (got, expected): {wrong}\n{worker.log_tail()}"

        deadline = time.monotonic() + 60
        while (lag := pipeline_lag(settings)) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert lag == 0, f"a partition is stuck: {lag} records not committed\n{worker.log_tail()}"
        assert worker.alive, worker.log_tail()

        quarantined = {}
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            records = [codec.decode(value) for value in _read(settings)]
            quarantined = {(q["source_topic"], q["source_partition"], q["source_offset"]): q for q in records}
            if all(p in quarantined for p in positions):
                break
            time.sleep(1)
        missing = [p for p in positions if p not in quarantined]
        assert not missing, f"{len(missing)} hostile records not in quarantine, e.g. {missing[:5]}"
        for position in positions:
            q = quarantined[position]
            assert q["reason_code"] in PARSER_REASONS and q["reason"].strip(), q
    finally:
        worker.stop()
    assert time.monotonic() - started < 150


def _read(settings) -> list[bytes]:
    """Every value in the quarantine topic now (keys may be null, which tests.support's reader
    does not expect)."""
    topic = settings.topic(QUARANTINE.name)
    consumer = Consumer({"bootstrap.servers": settings.bootstrap_servers, "group.id": f"reader-{uuid.uuid4().hex}", "enable.auto.commit": False})
    try:
        ends = {}
        for p in consumer.list_topics(topic, timeout=10).topics[topic].partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            if high > low:
                ends[p] = high
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in ends])
        values: list[bytes] = []
        deadline = time.monotonic() + 20
        while ends and time.monotonic() < deadline:
            msg = consumer.poll(0.2)
            if msg is None or msg.error():
                continue
            values.append(msg.value())
            if msg.offset() + 1 >= ends.get(msg.partition(), 0):
                ends.pop(msg.partition(), None)
        return values
    finally:
        consumer.close()


def test_a_raw_record_near_the_broker_limit_does_not_stop_the_worker(settings):
    ensure_topics(settings)
    producer = Producer({"bootstrap.servers": settings.bootstrap_servers, "message.max.bytes": 2_000_000})
    producer.produce(settings.topic(raw_topic("tmall")), key=b"big", value=b"{" + b" " * 1_040_000 + b"}")
    assert producer.flush(30) == 0
    worker = WorkerProcess(settings).start()
    try:
        worker.wait_ready()
        deadline = time.monotonic() + 45
        while worker.alive and pipeline_lag(settings) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert worker.alive, worker.log_tail()
        assert pipeline_lag(settings) == 0
    finally:
        worker.stop()
    # Kept, not dropped: quarantined with its reason, truncated, pointing at the original.
    kept = [codec.decode(value) for value in _read(settings)]
    oversized = [r for r in kept if r["reason_code"] == "oversized_record"]
    assert len(oversized) == 1 and oversized[0]["key"] == b"big", [r["reason_code"] for r in kept]
    assert len(oversized[0]["value"]) == 64 * 1024 and "1040002 bytes" in oversized[0]["reason"]
