"""kill -9 the worker mid-stream, restart it, and every SKU's ATS is still exact: no movement lost
after a crash, none applied twice on replay (changelog recovery + origin marks)."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from connectors.publisher import RawPublisher
from connectors.simulators.tmall_traffic import TmallTraffic
from stockstream.core.stock import ats
from stockstream.process import WorkerProcess
from stockstream.topics import ensure_topics
from streams.ats_topic import latest_snapshots
from streams.ledger import read_ledger, rebuild
from tests.support.lag import pipeline_lag
from tests.support.ats import ats_over_http, wait_for_expected
from tests.support.tmall_backlog import tmall_backlog

pytestmark = pytest.mark.integration


def lag_once_busy(settings, budget_s: float = 0.7) -> int:
    """Waits until the worker has worked through part of what was just published (at most
    `budget_s`), and returns what is left: a fixed sleep killed a fast worker after it was done."""
    first = lag = pipeline_lag(settings)
    deadline = time.monotonic() + budget_s
    while lag > first // 2 and time.monotonic() < deadline:
        time.sleep(0.05)
        lag = pipeline_lag(settings)
    return lag


def test_kill_minus_9_twice_mid_stream_keeps_ats_exact(settings):
    ensure_topics(settings)
    traffic = TmallTraffic(skus=[f"SKU-{i:03d}" for i in range(200)], duplicate_rate=0.2, seed=5)
    publisher = RawPublisher(settings)
    publisher.publish("warehouse", traffic.receipts())
    messages = traffic.messages(20_000)

    worker = WorkerProcess(settings).start()
    try:
        worker.wait_ready()
        unprocessed_at_kill = []
        for _crash in range(2):
            publisher.publish("tmall", (next(messages) for _ in range(7_000)))
            unprocessed_at_kill.append(lag_once_busy(settings))  # mid-stream: busy with this chunk
            worker.kill()
            worker.start()
            worker.wait_ready()
        assert all(lag > 0 for lag in unprocessed_at_kill), f"a kill came after the work was done: {unprocessed_at_kill}"
        publisher.publish("tmall", messages)
        wrong = wait_for_expected(worker, traffic.truth.skus(), traffic.truth.ats, timeout=180)
        assert not wrong, f"{len(wrong)} SKUs differ after crashes (got, expected): {dict(list(wrong.items())[:10])}"
        # Time travel: before the first order, only the receipt was there.
        before_orders = traffic.first_order_ms - 1
        assert ats_over_http(worker, "SKU-000", as_of=before_orders) == traffic.receipt_units
    finally:
        worker.stop()

    # The ledger replays to the same numbers, and the compacted ats topic holds them too.
    replayed = rebuild(read_ledger(settings))
    assert {sku: ats(state) for sku, state in replayed.items()} == {sku: traffic.truth.ats(sku) for sku in traffic.truth.skus()}
    published = latest_snapshots(settings)
    assert {sku: snap["ats"] for sku, snap in published.items()} == {sku: traffic.truth.ats(sku) for sku in traffic.truth.skus()}


def test_a_worker_that_lost_its_disk_restores_its_tables_in_bulk_and_stays_exact(settings):
    """Local state deleted (a new disk, a replaced pod): the tables come back from their changelogs
    through the bulk restore (streams/table_restore.py), and what follows is applied on top of them
    exactly: redeliveries of orders seen before the loss are still recognised, stock still adds up."""
    settings = settings.model_copy(update={"table_bulk_restore_min_records": 100})
    traffic, publisher, messages = tmall_backlog(settings, skus=200, seed=11, messages=16_000, published=8_000)

    worker = WorkerProcess(settings).start()
    try:
        worker.wait_ready()
        wrong = wait_for_expected(worker, traffic.truth.skus(), traffic.truth.ats, timeout=120)
        assert not wrong, f"before the loss: {dict(list(wrong.items())[:10])}"
        worker.stop()
        for path in Path(settings.data_dir).iterdir():
            if path.is_dir():
                shutil.rmtree(path)  # the local RocksDB state: only the changelogs are left

        worker.start()
        worker.wait_ready()
        publisher.publish("tmall", messages)
        wrong = wait_for_expected(worker, traffic.truth.skus(), traffic.truth.ats, timeout=180)
        assert not wrong, f"{len(wrong)} SKUs differ after the restore (got, expected): {dict(list(wrong.items())[:10])}"
        restored = worker.metric("stockstream_table_restored_records_total")
        assert restored >= 2 * 100, f"the tables were not restored in bulk ({restored} records):\n{worker.log_tail()}"
    finally:
        worker.stop()

