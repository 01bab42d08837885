"""Raw Tmall TMC messages -> normalizer -> movements -> RocksDB stock table -> GET /ats/{sku}."""

from __future__ import annotations

import json
import time
import urllib.request

import pytest

from connectors.publisher import RawPublisher
from connectors.simulators.tmall_traffic import TmallTraffic
from stockstream.process import WorkerProcess
from stockstream.topics import ensure_topics

pytestmark = pytest.mark.integration


def ats_over_http(worker: WorkerProcess, sku: str) -> int | None:
    try:
        with urllib.request.urlopen(f"{worker.url}/ats/{sku}", timeout=5) as response:
            return json.loads(response.read())["ats"]
    except OSError:
        return None


def wait_for_truth(worker: WorkerProcess, truth, timeout: float) -> dict[str, tuple[int | None, int]]:
    deadline = time.monotonic() + timeout
    while True:
        assert worker.alive, f"worker died:\n{worker.log_tail()}"
        wrong = {sku: (ats_over_http(worker, sku), truth.ats(sku)) for sku in truth.skus()}
        wrong = {sku: pair for sku, pair in wrong.items() if pair[0] != pair[1]}
        if not wrong or time.monotonic() > deadline:
            return wrong
        time.sleep(1)


def test_tmall_messages_with_duplicates_give_exact_ats(settings):
    ensure_topics(settings)
    traffic = TmallTraffic(skus=[f"SKU-{i:03d}" for i in range(25)], duplicate_rate=0.2, seed=11)
    publisher = RawPublisher(settings)
    publisher.publish("warehouse", traffic.receipts())
    assert publisher.publish("tmall", traffic.messages(1000)) == 1000

    worker = WorkerProcess(settings).start()
    try:
        worker.wait_ready()
        wrong = wait_for_truth(worker, traffic.truth, timeout=120)
        assert not wrong, f"ATS differs from ground truth (got, expected): {wrong}\n{worker.log_tail()}"
    finally:
        worker.stop()
