"""Shared fixtures: one real Kafka broker per test session, and per-test isolation on top of it.

Where the broker comes from, first match wins:

1. ``KAFKA_BOOTSTRAP_SERVERS`` in the environment: a broker someone already runs (CI service).
2. testcontainers' Kafka, if a Docker daemon answers (the docker client alone is not enough).
3. The embedded broker (``stockstream.kafka.local.LocalKafka``) on free ports in a temp dir.

If none of them works the fixture errors: integration tests fail, they are never skipped.
Tests share the broker, so each one works under its own topic prefix.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from stockstream.kafka.local import LocalKafka
from stockstream.settings import Settings


def free_tcp_port() -> int:
    """A TCP port nothing listens on right now (the OS picks it, so parallel sessions differ)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def free_tcp_ports(count: int) -> list[int]:
    """Distinct free ports: all sockets stay bound until every port is picked."""
    with ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) for _ in range(count)]
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]


def make_local_kafka(data_dir: Path) -> LocalKafka:
    """An embedded broker (version and jar cache from Settings) on free ports, not started.

    Attached (``detach=False``): it is stopped when Python exits even if a test forgets to.
    """
    port, controller_port = free_tcp_ports(2)
    return LocalKafka.from_settings(
        Settings(), data_dir=data_dir, port=port, controller_port=controller_port, detach=False
    )


def docker_daemon_answers() -> bool:
    try:
        import docker

        client = docker.from_env(timeout=3)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:  # no socket, no permission, no package: all mean "no Docker here"
        return False


def _kafka_container():  # type: ignore[no-untyped-def]
    try:
        from testcontainers.community.kafka import KafkaContainer
    except ImportError:  # testcontainers before the community split
        from testcontainers.kafka import KafkaContainer
    return KafkaContainer().with_kraft()


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``host:port`` of the session's Kafka broker."""
    from_env = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "").strip()
    if from_env:
        yield from_env
        return
    if docker_daemon_answers():
        with _kafka_container() as container:
            yield container.get_bootstrap_server()
        return
    broker = make_local_kafka(tmp_path_factory.mktemp("kafka"))
    broker.start()
    try:
        yield broker.bootstrap_servers
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def local_kafka_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[], LocalKafka]]:
    """Makes embedded brokers of a test's own (to stop, kill, restart), each in a fresh temp dir."""
    made: list[LocalKafka] = []

    def make() -> LocalKafka:
        broker = make_local_kafka(tmp_path_factory.mktemp("own-kafka"))
        made.append(broker)
        return broker

    yield make
    for broker in made:
        broker.stop()


@pytest.fixture
def free_port() -> Callable[[], int]:
    """Call it for as many free TCP ports as the test needs."""
    return free_tcp_port


@pytest.fixture
def topic_prefix() -> str:
    """Unique per test, so tests sharing the broker never see each other's topics or groups."""
    return f"t-{uuid.uuid4().hex[:10]}-"


@pytest.fixture
def settings(kafka_bootstrap: str, topic_prefix: str, tmp_path: Path) -> Settings:
    """Settings for a worker of this test: session broker, own topic prefix, own state and port."""
    return Settings(
        # Passed by its env name: the field's validation alias makes pydantic ignore
        # `bootstrap_servers=` as a keyword.
        STOCKSTREAM_BOOTSTRAP_SERVERS=kafka_bootstrap,
        topic_prefix=topic_prefix,
        data_dir=tmp_path / "data",
        web_port=free_tcp_port(),
        partitions=4,
    )
