"""Unmapped SKUs are quarantined with their reason and re-processed automatically once the catalog
topic learns the mapping, without restarting anything: nothing lost, nothing counted twice. And a
catalog change is picked up live by orders that come after it."""

from __future__ import annotations

import time

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from connectors.publisher import RawPublisher
from connectors.simulators.tmall_traffic import GroundTruth, TmallTraffic
from schemas import codec
from schemas.names import QUARANTINE_RECORD
from stockstream.catalog_topic import CatalogRecord, publish_catalog, publish_records
from stockstream.core.model import SkuComponent
from stockstream.process import WorkerProcess
from stockstream.topics import QUARANTINE, ensure_topics
from tests.support.ats import ats_over_http, wait_for_expected

pytestmark = pytest.mark.integration

SKUS = [f"SKU-{i:03d}" for i in range(25)]
KNOWN, UNKNOWN = SKUS[:20], SKUS[20:]


def read_topic(settings, name: str) -> list[dict]:
    topic = settings.topic(name)
    consumer = Consumer({"bootstrap.servers": settings.bootstrap_servers, "group.id": "test-reader", "enable.auto.commit": False})
    try:
        ends = {}
        for partition in range(settings.partitions):
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
            if high > low:
                ends[partition] = high
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in ends])
        records = []
        deadline = time.monotonic() + 30
        while ends and time.monotonic() < deadline:
            for message in consumer.consume(500, 0.5):
                if message.error():
                    continue
                records.append(codec.decode(message.value(), QUARANTINE_RECORD))
                if message.offset() + 1 >= ends.get(message.partition(), 0):
                    ends.pop(message.partition(), None)
        return records
    finally:
        consumer.close()


def mapping(code: str, *components: tuple[str, int]) -> CatalogRecord:
    return CatalogRecord(code, code, None, None, tuple(SkuComponent(sku, qty) for sku, qty in components))


def more_traffic(code: str, seed: int, first_order: int) -> TmallTraffic:
    traffic = TmallTraffic(skus=[code], duplicate_rate=0.1, seed=seed)
    traffic._order_seq = first_order  # order ids of their own
    return traffic


def test_unmapped_orders_are_retried_once_the_catalog_learns_them(settings):
    settings = settings.model_copy(update={"catalog_mode": "strict"})
    ensure_topics(settings)
    # Listing ids of their own: the simulated orders' platform SKU ids must not match by listing.
    publish_catalog(settings, [("tmall", f"tm-{sku}", sku, sku, 1) for sku in KNOWN])
    traffic = TmallTraffic(skus=SKUS, duplicate_rate=0.2, seed=11)
    publisher = RawPublisher(settings)
    publisher.publish("warehouse", traffic.receipts())
    assert publisher.publish("tmall", traffic.messages(1000)) == 1000

    worker = WorkerProcess(settings).start()
    try:
        worker.wait_ready()
        started = time.monotonic()
        wrong = wait_for_expected(worker, KNOWN, traffic.truth.ats, timeout=120)
        assert not wrong, f"known SKUs wrong (got, expected): {wrong}\n{worker.log_tail()}"
        print(f"known SKUs exact after {time.monotonic() - started:.1f}s")
        # Nothing of the unknown codes' orders was applied: their stock is the receipt.
        assert {sku: ats_over_http(worker, sku) for sku in UNKNOWN} == {sku: traffic.receipt_units for sku in UNKNOWN}
        quarantined = [r for r in read_topic(settings, QUARANTINE.name) if r["reason_code"] == "unmapped_sku"]
        assert quarantined and all(r["retryable"] for r in quarantined)
        named = {sku for r in quarantined for sku in SKUS if sku in r["reason"]}
        assert named == set(UNKNOWN), [r["reason"] for r in quarantined[:5]]

        # The catalog learns the missing codes: the held orders go through, nothing restarted.
        publish_catalog(settings, [("tmall", f"tm-{sku}", sku, sku, 1) for sku in UNKNOWN])
        started = time.monotonic()
        wrong = wait_for_expected(worker, SKUS, traffic.truth.ats, timeout=120)
        assert not wrong, f"SKUs wrong after the catalog learned them (got, expected): {wrong}\n{worker.log_tail()}"
        print(f"every SKU exact {time.monotonic() - started:.1f}s after the catalog update")

        # Live changes: a new code maps to SKU-000, then to two units of SKU-001 for later orders.
        expected = GroundTruth(received=traffic.truth.received, final_status=dict(traffic.truth.final_status))
        publish_records(settings, [mapping("ALIAS-A", ("SKU-000", 1))])
        first = more_traffic("ALIAS-A", seed=21, first_order=100_000)
        publisher.publish("tmall", first.messages(200))
        for key, (_code, quantity, status) in first.truth.final_status.items():
            expected.final_status[key] = ("SKU-000", quantity, status)
        wrong = wait_for_expected(worker, SKUS, expected.ats, timeout=60)
        assert not wrong, f"new mapping not applied (got, expected): {wrong}"

        publish_records(settings, [mapping("ALIAS-A", ("SKU-001", 2))])
        time.sleep(3)  # the worker's feed reads it within milliseconds
        second = more_traffic("ALIAS-A", seed=31, first_order=200_000)
        publisher.publish("tmall", second.messages(200))
        for key, (_code, quantity, status) in second.truth.final_status.items():
            expected.final_status[key] = ("SKU-001", quantity * 2, status)
        wrong = wait_for_expected(worker, SKUS, expected.ats, timeout=60)
        assert not wrong, f"changed mapping not applied (got, expected): {wrong}"
        assert ats_over_http(worker, "SKU-001") != traffic.truth.ats("SKU-001")  # the change did move it
    finally:
        worker.stop()
