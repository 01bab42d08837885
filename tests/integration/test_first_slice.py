"""Raw Tmall TMC messages -> normalizer -> movements -> RocksDB stock table -> GET /ats/{sku}."""

from __future__ import annotations

import pytest

from connectors.publisher import RawPublisher
from connectors.simulators.tmall_traffic import TmallTraffic
from stockstream.process import WorkerProcess
from stockstream.topics import ensure_topics
from tests.support.ats import wait_for_expected

pytestmark = pytest.mark.integration


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
    finally:
        worker.stop()
