"""The inventory core's proof on the real broker: 50,000 raw events across four marketplaces and
the warehouse feed, 2,000 SKUs, 20% redeliveries, reordering within each order's stream; the
worker is killed with SIGKILL twice mid-stream. Every SKU's ATS over HTTP equals the oracle, and
a replay of the ledger reproduces it."""

from __future__ import annotations

import itertools
import time

import pytest

from connectors.publisher import RawPublisher
from connectors.simulators.traffic import generate
from stockstream.core.stock import ats
from stockstream.process import WorkerProcess
from stockstream.settings import ShopCredentials
from stockstream.topics import ensure_topics
from streams.ledger import read_ledger, rebuild
from tests.support.lag import pipeline_lag
from tests.support.ats import ats_over_http

pytestmark = pytest.mark.integration

EVENTS = 50_000


def wait_until_drained(worker: WorkerProcess, settings, timeout: float) -> float:
    started = time.monotonic()
    while pipeline_lag(settings) > 0:
        assert worker.alive, worker.log_tail()
        assert time.monotonic() - started < timeout, f"not drained after {timeout}s"
        time.sleep(1)
    return time.monotonic() - started


def test_fifty_thousand_events_four_platforms_two_crashes(settings):
    # Stock counts on (absolute, as of a time): a count between a shipment's physical time and the
    # time stockstream dates it would take the goods off twice. Every platform but JD states the
    # ship time (or a later message re-dates it: SHIP_REDATE); JD states none, so the one residual
    # is a JD order whose shipped state no poll ever saw. The pollers here see every state.
    traffic = generate(skus=2000, events=EVENTS, duplicate_rate=0.2, reorder=0.3, jd_missed_polls=0.0, seed=42)
    settings = settings.model_copy(update={"shops": [ShopCredentials(**shop) for shop in traffic.shop_settings()]})
    ensure_topics(settings)
    publisher = RawPublisher(settings)
    records = iter(traffic)

    worker = WorkerProcess(settings).start()
    try:
        worker.wait_ready()
        started = time.monotonic()
        for _crash in range(2):
            publisher.publish_all(itertools.islice(records, 15_000))
            time.sleep(2)
            assert pipeline_lag(settings) > 0, "the kill must interrupt work in progress"
            worker.kill()
            worker.start()
            worker.wait_ready()
        publisher.publish_all(records)
        wait_until_drained(worker, settings, timeout=600)
        elapsed = time.monotonic() - started
        print(f"\n{EVENTS} raw events through the pipeline with 2 crashes in {elapsed:.1f}s: {EVENTS / elapsed:.0f} events/s")

        expected = {sku: traffic.truth.ats(sku) for sku in traffic.truth.skus()}
        deadline = time.monotonic() + 60
        while True:
            got = {sku: ats_over_http(worker, sku) for sku in expected}
            wrong = {sku: (got[sku], want) for sku, want in expected.items() if got[sku] != want}
            if not wrong or time.monotonic() > deadline:
                break
            time.sleep(2)
        assert not wrong, f"{len(wrong)} of {len(expected)} SKUs differ (got, expected): {dict(list(wrong.items())[:10])}"
    finally:
        worker.stop()

    replayed = {sku: ats(state) for sku, state in rebuild(read_ledger(settings)).items()}
    assert {sku: replayed.get(sku, 0) for sku in expected} == expected
