"""Raw Tmall TMC messages -> normalizer -> movements -> RocksDB stock table -> GET /ats/{sku}."""

from __future__ import annotations

import time
import urllib.request

import pytest

from connectors.publisher import RawPublisher
from connectors.simulators.tmall_traffic import TmallTraffic
from stockstream.process import WorkerProcess
from stockstream.topics import ensure_topics
from tests.support.ats import wait_for_expected

pytestmark = pytest.mark.integration


def scrape(worker: WorkerProcess) -> str:
    with urllib.request.urlopen(f"{worker.url}/metrics", timeout=10) as response:
        assert response.headers["Content-Type"].startswith("text/plain")
        return response.read().decode()


def sample(exposition: str, series: str) -> float:
    for line in exposition.splitlines():
        if line.startswith(series + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{series} not exposed:\n{exposition[:2000]}")


def test_tmall_messages_with_duplicates_give_exact_ats(settings):
    ensure_topics(settings)
    traffic = TmallTraffic(skus=[f"SKU-{i:03d}" for i in range(25)], duplicate_rate=0.2, seed=11)
    publisher = RawPublisher(settings)
    publisher.publish("warehouse", traffic.receipts())
    assert publisher.publish("tmall", traffic.messages(1000)) == 1000

    worker = WorkerProcess(settings).start()
    try:
        worker.wait_ready()
        wrong = wait_for_expected(worker, traffic.truth.skus(), traffic.truth.ats, timeout=120)
        assert not wrong, f"ATS differs from ground truth (got, expected): {wrong}\n{worker.log_tail()}"
        exposition = scrape(worker)
        assert sample(exposition, 'stockstream_raw_records_batched_total{platform="tmall"}') == 1000
        assert sample(exposition, 'stockstream_raw_records_processed_total{platform="tmall"}') == 1000
        assert sample(exposition, 'stockstream_movements_total{type="RESERVE"}') > 0
        assert sample(exposition, "stockstream_ats_updates_total") > 0
        assert sample(exposition, "stockstream_ingest_batcher_up") == 1
        assert sample(exposition, "stockstream_rebalances_total") >= 1
        # Refreshed on timers (lag 5 s, table sizes 30 s): everything is processed, so the lag
        # reads 0 and the stock table holds the 25 SKUs (RocksDB's estimate) within ~35 s.
        health = {
            'stockstream_consumer_lag{topic="raw.tmall"}': lambda v: v == 0,
            'stockstream_consumer_lag{topic="ingest"}': lambda v: v == 0,
            'stockstream_table_keys{table="stock"}': lambda v: v > 0,
        }
        deadline = time.monotonic() + 45
        while not all(f"{series} " in exposition and ok(sample(exposition, series)) for series, ok in health.items()):
            assert time.monotonic() < deadline, "\n".join(
                line for line in exposition.splitlines() if "consumer_lag" in line or "table_keys" in line
            )
            time.sleep(1)
            exposition = scrape(worker)
    finally:
        worker.stop()
