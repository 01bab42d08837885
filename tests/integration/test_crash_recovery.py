"""kill -9 the worker mid-stream, restart it, and every SKU's ATS is still exact: no movement lost
after a crash, none applied twice on replay (changelog recovery + origin marks)."""

from __future__ import annotations

import time

import pytest

from connectors.publisher import RawPublisher
from connectors.simulators.tmall_traffic import TmallTraffic
from stockstream.process import WorkerProcess
from stockstream.topics import ensure_topics
from tests.support.ats import wait_for_expected

pytestmark = pytest.mark.integration


def test_kill_minus_9_twice_mid_stream_keeps_ats_exact(settings):
    ensure_topics(settings)
    traffic = TmallTraffic(skus=[f"SKU-{i:03d}" for i in range(200)], duplicate_rate=0.2, seed=5)
    publisher = RawPublisher(settings)
    publisher.publish("warehouse", traffic.receipts())
    messages = traffic.messages(20_000)

    worker = WorkerProcess(settings).start()
    try:
        worker.wait_ready()
        for _crash in range(2):
            publisher.publish("tmall", (next(messages) for _ in range(6_000)))
            time.sleep(2.5)  # mid-stream: the worker is busy with this chunk
            worker.kill()
            worker.start()
            worker.wait_ready()
        publisher.publish("tmall", messages)
        wrong = wait_for_expected(worker, traffic.truth.skus(), traffic.truth.ats, timeout=180)
        assert not wrong, f"{len(wrong)} SKUs differ after crashes (got, expected): {dict(list(wrong.items())[:10])}"
    finally:
        worker.stop()
