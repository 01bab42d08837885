"""Calling a running worker's REST API from tests, and the setup the API tests share: two shops
(so that allocation has channels), topics, receipts and some Tmall traffic."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any, Optional

from connectors.publisher import RawPublisher
from connectors.simulators.tmall_traffic import TmallTraffic
from stockstream.process import WorkerProcess
from stockstream.settings import Settings, ShopCredentials
from stockstream.topics import ensure_topics

TMALL, JD = "tmall:tmall-flagship", "jd:jd-1"


@dataclass
class Answer:
    status: int
    content_type: str
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def call(worker: WorkerProcess, path: str, timeout: float = 30) -> Answer:
    try:
        with urllib.request.urlopen(f"{worker.url}{path}", timeout=timeout) as response:
            return Answer(response.status, response.headers.get("Content-Type", ""), response.read())
    except urllib.error.HTTPError as error:
        return Answer(error.code, error.headers.get("Content-Type", ""), error.read())


def get_json(worker: WorkerProcess, path: str) -> tuple[int, Any]:
    answer = call(worker, path)
    return answer.status, answer.json()


def wait_until_ready(worker: WorkerProcess, timeout: float = 60) -> dict:
    """Polls `/ready` until it answers 200; returns its last body."""
    deadline = time.monotonic() + timeout
    while True:
        assert worker.alive, f"worker died:\n{worker.log_tail()}"
        status, body = get_json(worker, "/ready")
        if status == 200 or time.monotonic() > deadline:
            assert status == 200, f"/ready still {status}: {body}\n{worker.log_tail()}"
            return body
        time.sleep(0.5)


def wait_for_json(worker: WorkerProcess, path: str, ok, timeout: float = 30) -> Any:
    """Polls `path` until `ok(body)` holds for a 200 answer; returns that body."""
    deadline = time.monotonic() + timeout
    last: Optional[tuple[int, Any]] = None
    while time.monotonic() < deadline:
        last = get_json(worker, path)
        if last[0] == 200 and ok(last[1]):
            return last[1]
        time.sleep(0.5)
    raise AssertionError(f"{path} never satisfied the condition; last answer {last}\n{worker.log_tail()}")


def with_two_shops(settings: Settings) -> Settings:
    shops = [ShopCredentials(platform="tmall", shop_id="tmall-flagship", app_key="k", app_secret="s"),
             ShopCredentials(platform="jd", shop_id="jd-1", app_key="k", app_secret="s")]
    return settings.model_copy(update={"shops": shops})


def stock_up(settings: Settings, skus: list[str], orders: int, seed: int = 9, receipt_units: int = 200) -> TmallTraffic:
    """Topics, one receipt for every SKU and `orders` Tmall messages, published before any worker."""
    ensure_topics(settings)
    traffic = TmallTraffic(skus=skus, duplicate_rate=0.1, seed=seed, receipt_units=receipt_units)
    publisher = RawPublisher(settings)
    publisher.publish("warehouse", traffic.receipts())
    assert publisher.publish("tmall", traffic.messages(orders)) == orders
    return traffic
