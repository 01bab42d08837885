"""Two workers share the partitions; every query answers the same whichever is asked: SKU lookups
(routed to the owner) and list queries (gathered from both owners and merged, in pages)."""

from __future__ import annotations

import time
import urllib.parse

import pytest

from stockstream.process import WorkerProcess
from tests.conftest import free_tcp_port
from tests.support.api_client import JD, TMALL, get_json, stock_up, wait_until_ready, with_two_shops
from tests.support.ats import wait_for_expected
from tests.support.lag import pipeline_lag

pytestmark = pytest.mark.integration

SKUS = [f"SKU-{i:03d}" for i in range(12)]


def own_partitions(worker: WorkerProcess) -> tuple[list[int], object]:
    """The partitions the worker owns now (none while it rebalances or recovers), and its answer."""
    status, body = get_json(worker, "/internal/ats?partitions=0,1,2,3&limit=1")
    return (body["partitions"] if status == 200 else []), (status, body if status != 200 else body["partitions"])


def test_every_query_answers_the_same_on_both_workers(settings):
    # Each worker reads at most 2 keys per list request: lists come in pages.
    settings = with_two_shops(settings).model_copy(update={"api_list_scan_keys": 2})
    traffic = stock_up(settings, SKUS, orders=300, seed=4)
    worker_a = WorkerProcess(settings).start()
    worker_b = WorkerProcess(settings.model_copy(update={
        "web_port": free_tcp_port(), "data_dir": settings.data_dir.parent / "data-b"})).start()
    try:
        for worker in (worker_a, worker_b):
            worker.wait_ready()
        # Both in the group, each owning a part: the rebalance after B joined is over.
        deadline = time.monotonic() + 90
        while True:
            (parts_a, said_a), (parts_b, said_b) = own_partitions(worker_a), own_partitions(worker_b)
            if parts_a and parts_b and sorted(parts_a + parts_b) == [0, 1, 2, 3]:
                break
            assert time.monotonic() < deadline, (
                f"partitions never split over both workers: A {said_a}, B {said_b}\n{worker_a.log_tail()}\n{worker_b.log_tail()}")
            time.sleep(0.5)
        for worker in (worker_a, worker_b):
            wait_until_ready(worker)
        wrong = wait_for_expected(worker_a, SKUS, traffic.truth.ats, timeout=60)
        assert not wrong, f"ATS differs from ground truth: {wrong}\n{worker_a.log_tail()}"
        deadline = time.monotonic() + 30
        while pipeline_lag(settings) and time.monotonic() < deadline:
            time.sleep(0.5)
        time.sleep(1.5)  # one more history sample after the last write

        below = sorted(traffic.truth.ats(sku) for sku in SKUS)[len(SKUS) // 2]
        paths = [
            "/ats", "/ats?history=true", f"/ats?below={below}", f"/ats?below={below}&limit=3",
            f"/ats?channel={urllib.parse.quote(TMALL, safe='')}&location=main",
            *(f"/ats/{sku}" for sku in SKUS),
            *(f"/allocations/{sku}" for sku in SKUS),
            *(f"/provenance/{sku}/{urllib.parse.quote(channel, safe='')}" for sku in SKUS[:4] for channel in (TMALL, JD)),
        ]
        for path in paths:
            status_a, body_a = get_json(worker_a, path)
            status_b, body_b = get_json(worker_b, path)
            assert status_a == status_b == 200, f"{path}: {status_a} {body_a} / {status_b} {body_b}"
            assert body_a == body_b, f"{path} answers differently:\nA {body_a}\nB {body_b}"

        listed, after, pages = [], None, 0
        while True:  # following next_after, asking either worker in turn
            query = f"/ats?below={below}&limit=3" + ("" if after is None else f"&after={urllib.parse.quote(after)}")
            page = get_json((worker_a, worker_b)[pages % 2], query)[1]
            assert page["partitions"] == [0, 1, 2, 3] and len(page["items"]) <= 3
            listed += [item["sku"] for item in page["items"]]
            pages += 1
            after = page["next_after"]
            if after is None:
                break
        assert listed == sorted(sku for sku in SKUS if traffic.truth.ats(sku) < below)
        assert pages > 2  # the budget did cut the reads
        # The summary gathers the same parts (rates are evaluated at the asking worker's clock).
        summary_a, summary_b = get_json(worker_a, "/api/summary")[1], get_json(worker_b, "/api/summary")[1]
        for field in ("skus", "recent_changes", "partitions", "at_risk_total", "quarantine_records", "dead_letter_records"):
            assert summary_a[field] == summary_b[field], field
        assert summary_a["skus"] == len(SKUS)
    finally:
        worker_a.stop()
        worker_b.stop()
