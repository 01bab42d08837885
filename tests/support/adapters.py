"""Helpers shared by the adapter integration tests (this module holds no tests): shop
credentials for a simulator, order traffic, reading raw topics back, PII checks."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Optional, Sequence

from confluent_kafka import Consumer, TopicPartition

from connectors.adapters.state import _watermarks
from connectors.simulated import SimBuyer
from connectors.simulators.base_api import OutOfStock, PlatformSim, SimShop
from stockstream.core.model import LineStatus
from stockstream.settings import Settings, ShopCredentials
from stockstream.topics import CONNECTOR_STATE, RAW_TOPICS, ensure_topics, raw_topic

S = LineStatus
# Order lifecycles after placement (the first status is where the order starts).
TMALL_LIFECYCLES = (
    (S.CREATED, S.PAID, S.SHIPPED, S.FINISHED),
    (S.CREATED, S.PAID, S.SHIPPED),
    (S.CREATED, S.PAID),
    (S.CREATED,),
    (S.CREATED, S.CLOSED),
    (S.CREATED, S.PAID, S.CLOSED),
)
PAID_FIRST_LIFECYCLES = (  # JD and PDD sellers only see paid orders
    (S.PAID, S.SHIPPED, S.FINISHED),
    (S.PAID, S.SHIPPED),
    (S.PAID,),
    (S.PAID, S.CLOSED),
)


def sim_shops(platform: str, n: int = 2) -> list[SimShop]:
    """n shops, each with its own app credentials and seller token."""
    base_id = {"tmall": 2200754211234, "jd": 10086001, "douyin": 4463798, "pdd": 987654321}[platform]
    return [
        SimShop(str(base_id + i), f"{platform}-app-{i}", f"{platform}-secret-{i}-{uuid.uuid4().hex[:6]}", f"{platform}-token-{i}")
        for i in range(n)
    ]


def credentials(platform: str, shops: Sequence[SimShop], base_url: str, **overrides: Any) -> list[ShopCredentials]:
    return [
        ShopCredentials(
            platform=platform, shop_id=s.shop_id, app_key=s.app_key, app_secret=overrides.get("app_secret", s.app_secret),
            access_token=s.access_token, api_base_url=base_url,
        )
        for s in shops
    ]


def sku_catalog(platform: str, n: int = 5) -> list[dict[str, str]]:
    """n SKUs of one listing in the platform's id style."""
    listing = {"tmall": "681234567890", "jd": "10001234567", "douyin": "3539925204033339668", "pdd": "123456789"}[platform]
    first = {"tmall": 5012345678901, "jd": 100012345678, "douyin": 1750000000000000001, "pdd": 1234567890}[platform]
    return [{"listing_id": listing, "sku_id": str(first + i), "merchant_code": f"MC-{i + 1:03d}"} for i in range(n)]


async def drive_orders(
    sim: PlatformSim,
    n_orders: int,
    lifecycles: Sequence[Sequence[LineStatus]],
    *,
    seed: int = 1,
    step_s: float = 0.0,
    partial_refunds: bool = False,
) -> list[str]:
    """Create orders over the sim's shops and walk them through random lifecycles, interleaved."""
    rng = random.Random(seed)
    skus = sku_catalog(sim.platform)
    plans = []
    for i in range(n_orders):
        shop = list(sim.shops)[i % len(sim.shops)]
        n_lines = rng.choice((1, 1, 2))
        picked = rng.sample(skus, n_lines)
        lines = [{**sku, "quantity": rng.randint(1, 3)} for sku in picked]
        plans.append((shop, lines, list(rng.choice(lifecycles))))
    order_ids = []
    steps: list[tuple[str, list]] = []
    for shop, lines, life in plans:
        try:
            order = sim.create_order(shop, lines, life[0], buyer=SimBuyer())
        except OutOfStock:
            continue
        order_ids.append(order.order_id)
        steps.append((order.order_id, life[1:]))
        if step_s:
            await asyncio.sleep(step_s)
    while any(rest for _, rest in steps):
        order_id, rest = rng.choice([s for s in steps if s[1]])
        status = rest.pop(0)
        order = sim.orders[order_id]
        if partial_refunds and status == S.CLOSED and len(order.lines) > 1 and rng.random() < 0.5:
            sim.advance(order_id, S.CLOSED, [order.lines[0].line_id])
        else:
            sim.advance(order_id, status)
        if step_s:
            await asyncio.sleep(step_s)
    return order_ids


def ensure_raw_topics(settings: Settings) -> None:
    ensure_topics(settings, (*RAW_TOPICS.values(), CONNECTOR_STATE))


@dataclass(frozen=True)
class Rec:
    key: str
    value: bytes
    headers: dict[str, str]
    partition: int
    offset: int


def _read_all(settings: Settings, topic: str, timeout: float) -> list[Rec]:
    consumer = Consumer(
        {
            "bootstrap.servers": settings.bootstrap_servers,
            "group.id": f"reader-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    try:
        meta = consumer.list_topics(topic, timeout=10)
        highs: dict[int, int] = {}
        assignment = []
        for p in meta.topics[topic].partitions:
            low, high = _watermarks(consumer, TopicPartition(topic, p), time.monotonic() + 20)
            if high > low:
                highs[p] = high
                assignment.append(TopicPartition(topic, p, low))
        out: list[Rec] = []
        if not assignment:
            return out
        consumer.assign(assignment)
        deadline = time.monotonic() + timeout
        while highs and time.monotonic() < deadline:
            msg = consumer.poll(0.2)
            if msg is None or msg.error():
                continue
            headers = {k: v.decode() for k, v in (msg.headers() or [])}
            out.append(Rec(msg.key().decode(), msg.value(), headers, msg.partition(), msg.offset()))
            if msg.offset() + 1 >= highs.get(msg.partition(), 0):
                highs.pop(msg.partition(), None)
        return out
    finally:
        consumer.close()


async def read_raw(settings: Settings, platform: str, timeout: float = 15.0) -> list[Rec]:
    """Everything in raw.<platform> right now (off the event loop: simulators keep serving)."""
    return await asyncio.to_thread(_read_all, settings, settings.topic(raw_topic(platform)), timeout)


async def read_topic(settings: Settings, name: str, timeout: float = 15.0) -> list[Rec]:
    return await asyncio.to_thread(_read_all, settings, settings.topic(name), timeout)


async def wait_until(
    predicate: Callable[[], bool | Awaitable[bool]], timeout: float, interval: float = 0.1, what: str | Callable[[], str] = ""
) -> None:
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what() if callable(what) else what or predicate}")
        await asyncio.sleep(interval)


def assert_no_pii(records: Sequence[Rec]) -> None:
    personal = list(SimBuyer().personal_strings())
    for rec in records:
        text = rec.value.decode("utf-8")
        for value in personal:
            assert value not in text, f"personal data {value!r} reached Kafka in {rec.headers} {text[:200]}"


def message_ids(records: Sequence[Rec], kind: Optional[str] = None) -> list[str]:
    return [r.headers["message-id"] for r in records if "message-id" in r.headers and (kind is None or r.headers.get("kind") == kind)]


async def cancel(task: asyncio.Task) -> None:
    task.cancel()
    try:
        await task
    except (asyncio.CancelledError, Exception):
        pass


# --------------------------------------------------------------------------------------------
# Adapters as real processes (kill -9 tests) and simulators with a gate in their HTTP path


class AdapterProcess:
    """`python -m stockstream adapter run --platform P` with these shops, killable with SIGKILL."""

    def __init__(self, settings: Settings, platform: str, shops: Sequence[ShopCredentials], log_path: Any,
                 metrics_port: int, adapter_port: int = 0, options: Sequence[str] = ()) -> None:
        self.settings = settings.model_copy(
            update={"shops": list(shops), "adapter_metrics_port": metrics_port, "adapter_port": adapter_port or settings.adapter_port}
        )
        self.platform = platform
        self.log_path = log_path
        self.options = list(options)
        self.process: Optional[subprocess.Popen] = None

    def start(self) -> "AdapterProcess":
        env = {**os.environ, **self.settings.to_env(), "PYTHONUNBUFFERED": "1", "STOCKSTREAM_LOG_LEVEL": "info"}
        args = [sys.executable, "-m", "stockstream", "adapter", "run", "--platform", self.platform]
        for option in self.options:
            args += ["--option", option]
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                            start_new_session=True)
        return self

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()

    def log_tail(self) -> str:
        try:
            return open(self.log_path, encoding="utf-8", errors="replace").read()[-3000:]
        except OSError:
            return ""

    def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        """(sample name, sorted labels) -> value, scraped from the process's /metrics."""
        from prometheus_client.parser import text_string_to_metric_families

        url = f"http://127.0.0.1:{self.settings.adapter_metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            text = response.read().decode()
        return {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples
        }

    def metric(self, name: str, **labels: str) -> float:
        try:
            return self.metrics().get((name, tuple(sorted(labels.items()))), 0.0)
        except OSError:
            return -1.0


class Gate:
    """Holds a simulator's requests that `matches(path, params)` (after letting `let_through`
    of them pass) until `release()`. Held requests then fail with 503: they belong to a process
    that was killed meanwhile, and must not take effect (a held TMC confirm must not confirm)."""

    def __init__(self, matches: Callable[[str, dict[str, str]], bool], let_through: int = 0) -> None:
        self.matches = matches
        self.let_through = let_through
        self.arrived = asyncio.Event()
        self.released = asyncio.Event()

    def install(self, sim: PlatformSim) -> "Gate":
        from aiohttp import web

        @web.middleware
        async def gate(request, handler):
            if not self.released.is_set():
                params = dict(request.query)
                if request.method == "POST" and request.content_type == "application/x-www-form-urlencoded":
                    params.update({k: v for k, v in (await request.post()).items() if isinstance(v, str)})
                if self.matches(request.path, params):
                    if self.let_through > 0:
                        self.let_through -= 1
                    else:
                        self.arrived.set()
                        await self.released.wait()
                        raise web.HTTPServiceUnavailable()
            return await handler(request)

        sim.app.middlewares.append(gate)
        return self

    def release(self) -> None:
        self.released.set()
