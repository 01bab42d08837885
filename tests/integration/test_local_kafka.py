"""The embedded Kafka broker against real clients: round trips, restarts, crashes, the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from confluent_kafka import Consumer, KafkaError, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from stockstream.kafka.local import LocalKafka, LocalKafkaError

pytestmark = pytest.mark.integration

RECORDS = 100


def create_topic(bootstrap: str, topic: str, partitions: int = 1) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, partitions, 1)])[topic].result(timeout=30)


def topic_names(bootstrap: str) -> set[str]:
    return set(AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=10).topics)


def produce(bootstrap: str, topic: str, records: list[tuple[bytes, bytes]]) -> None:
    failures: list[KafkaError] = []
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True})
    for key, value in records:
        producer.produce(topic, value, key, on_delivery=lambda err, _msg: err and failures.append(err))
    assert producer.flush(30) == 0, "records still unsent after 30 s"
    assert failures == []


def consume(bootstrap: str, topic: str, count: int, timeout: float = 60.0) -> list[tuple[bytes, bytes]]:
    """The first ``count`` records of the topic, read by a fresh consumer group from the start."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"{topic}-reader-{time.monotonic_ns()}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    records: list[tuple[bytes, bytes]] = []
    try:
        consumer.subscribe([topic])
        deadline = time.monotonic() + timeout
        while len(records) < count and time.monotonic() < deadline:
            message = consumer.poll(1.0)
            if message is None:
                continue
            assert message.error() is None, message.error()
            records.append((message.key(), message.value()))
    finally:
        consumer.close()
    return records


def numbered_records(count: int) -> list[tuple[bytes, bytes]]:
    return [(f"sku-{n % 7}".encode(), f"movement-{n}".encode()) for n in range(count)]


# --------------------------------------------------------------------------------------------
# The session broker (whichever conftest chose)


def test_confluent_kafka_round_trip(kafka_bootstrap: str, topic_prefix: str) -> None:
    topic = f"{topic_prefix}round-trip"
    create_topic(kafka_bootstrap, topic, partitions=3)
    sent = numbered_records(30)

    produce(kafka_bootstrap, topic, sent)
    received = consume(kafka_bootstrap, topic, len(sent))

    assert sorted(received) == sorted(sent)
    # Kafka orders per key (one key, one partition): each SKU's movements arrive in send order.
    for sku in {key for key, _ in sent}:
        assert [v for k, v in received if k == sku] == [v for k, v in sent if k == sku]


async def test_aiokafka_round_trip(kafka_bootstrap: str, topic_prefix: str) -> None:
    topic = f"{topic_prefix}aio-round-trip"
    create_topic(kafka_bootstrap, topic, partitions=2)
    sent = numbered_records(20)

    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    await producer.start()
    try:
        for key, value in sent:
            await producer.send_and_wait(topic, value, key=key)
    finally:
        await producer.stop()

    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=kafka_bootstrap, group_id=f"{topic}-reader", auto_offset_reset="earliest"
    )
    await consumer.start()
    received: list[tuple[bytes, bytes]] = []
    try:
        deadline = time.monotonic() + 60
        while len(received) < len(sent) and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=1000)
            received += [(m.key, m.value) for messages in batches.values() for m in messages]
    finally:
        await consumer.stop()

    assert sorted(received) == sorted(sent)


# --------------------------------------------------------------------------------------------
# A broker of the test's own, to stop, kill and restart


@pytest.fixture(scope="module")
def own_broker(local_kafka_factory: Callable[[], LocalKafka]) -> Iterator[LocalKafka]:
    broker = local_kafka_factory()
    broker.start()
    yield broker
    broker.stop()


def test_start_when_serving_returns_at_once(own_broker: LocalKafka) -> None:
    pid = own_broker.status().pid

    started = time.monotonic()
    own_broker.start()

    assert time.monotonic() - started < 5
    status = own_broker.status()
    assert status.serving and status.pid == pid
    assert own_broker.bootstrap_servers in status.describe()


def test_topics_and_records_survive_a_clean_restart(own_broker: LocalKafka, topic_prefix: str) -> None:
    topic = f"{topic_prefix}survives-stop"
    create_topic(own_broker.bootstrap_servers, topic, partitions=3)
    sent = numbered_records(RECORDS)
    produce(own_broker.bootstrap_servers, topic, sent)

    own_broker.stop()
    stopped = own_broker.status()
    assert not stopped.serving and stopped.pid is None and not stopped.port_open
    assert not own_broker.pid_file.exists()
    own_broker.start()

    assert topic in topic_names(own_broker.bootstrap_servers)
    assert sorted(consume(own_broker.bootstrap_servers, topic, RECORDS)) == sorted(sent)


def test_records_survive_sigkill(own_broker: LocalKafka, topic_prefix: str) -> None:
    topic = f"{topic_prefix}survives-kill"
    create_topic(own_broker.bootstrap_servers, topic, partitions=2)
    sent = numbered_records(RECORDS)
    produce(own_broker.bootstrap_servers, topic, sent)

    own_broker.kill()
    assert own_broker.status().pid is None
    assert own_broker.pid_file.exists(), "a crash leaves its pid file behind; start must see it is stale"
    own_broker.start()

    assert own_broker.status().serving
    assert sorted(consume(own_broker.bootstrap_servers, topic, RECORDS)) == sorted(sent)


# --------------------------------------------------------------------------------------------
# Failing loudly


def test_start_refuses_a_port_in_use(tmp_path: Path, free_port: Callable[[], int]) -> None:
    import socket

    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        broker = LocalKafka(data_dir=tmp_path / "kafka", port=taken, controller_port=free_port(), detach=False)

        with pytest.raises(LocalKafkaError, match=f"127.0.0.1:{taken} is already in use"):
            broker.start()


def test_a_broker_dying_at_start_up_reports_its_log(
    local_kafka_factory: Callable[[], LocalKafka], monkeypatch: pytest.MonkeyPatch
) -> None:
    broker = local_kafka_factory()
    real_command = LocalKafka._broker_command
    monkeypatch.setattr(
        LocalKafka, "_broker_command", lambda self, java, libs: [java, "-XX:+NoSuchJvmOption", *real_command(self, java, libs)[1:]]
    )

    with pytest.raises(LocalKafkaError, match="exited while starting") as failure:
        broker.start(timeout=60)

    assert "NoSuchJvmOption" in str(failure.value)
    assert broker.status().pid is None


# --------------------------------------------------------------------------------------------
# The command line


def test_cli_start_status_stop(tmp_path: Path, free_port: Callable[[], int]) -> None:
    env = {
        **os.environ,
        "STOCKSTREAM_DATA_DIR": str(tmp_path / "data"),
        "STOCKSTREAM_KAFKA_PORT": str(free_port()),
        "STOCKSTREAM_KAFKA_CONTROLLER_PORT": str(free_port()),
    }

    def stockstream(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "stockstream", *args], env=env, capture_output=True, text=True, timeout=180
        )

    try:
        started = stockstream("kafka", "start")
        assert started.returncode == 0, started.stderr
        assert "serving at" in started.stdout
        # The CLI process has exited: the broker lives on in its own session.
        running = stockstream("kafka", "status")
        assert running.returncode == 0 and "serving at" in running.stdout, running.stdout + running.stderr
    finally:
        stopped = stockstream("kafka", "stop")
    assert stopped.returncode == 0, stopped.stderr
    after = stockstream("kafka", "status")
    assert after.returncode == 1 and "not running" in after.stdout
