"""Two worker processes share the partitions: any worker answers for any SKU (Faust routes the
lookup to the owner), and when one is killed the other takes its partitions over, exactly."""

from __future__ import annotations

import pytest

from stockstream.process import WorkerProcess
from tests.conftest import free_tcp_port
from tests.support.ats import ats_over_http, wait_for_expected
from tests.support.tmall_backlog import tmall_backlog

pytestmark = pytest.mark.integration


def second_worker_settings(settings):
    return settings.model_copy(update={"web_port": free_tcp_port(), "data_dir": settings.data_dir.parent / "data-b"})


def test_any_worker_answers_and_a_survivor_takes_over(settings):
    traffic, publisher, messages = tmall_backlog(settings, skus=60, seed=3, messages=6_000, published=3_000)

    worker_a = WorkerProcess(settings).start()
    worker_b = WorkerProcess(second_worker_settings(settings)).start()
    try:
        worker_a.wait_ready()
        worker_b.wait_ready()
        for worker in (worker_a, worker_b):
            wrong = wait_for_expected(worker, traffic.truth.skus(), traffic.truth.ats, timeout=180)
            assert not wrong, f"worker on {worker.url} answers differently: {dict(list(wrong.items())[:10])}"
        for sku in traffic.truth.skus():
            assert ats_over_http(worker_a, sku) == ats_over_http(worker_b, sku)

        worker_b.kill()
        publisher.publish("tmall", messages)
        wrong = wait_for_expected(worker_a, traffic.truth.skus(), traffic.truth.ats, timeout=180)
        assert not wrong, f"after worker B died: {dict(list(wrong.items())[:10])}"
    finally:
        worker_a.stop()
        worker_b.stop()
