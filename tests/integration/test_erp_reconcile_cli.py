"""`stockstream erp-reconcile --csv`: an ERP on-hand export against the `ats` topic on the real
broker; differences printed and published to `reconciliation`."""

from __future__ import annotations

import os
import subprocess
import sys

import orjson
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from schemas import codec
from schemas.names import ATS_SNAPSHOT
from stockstream.topics import ATS, RECONCILIATION, ensure_topics
from streams.partitioning import partition_for

pytestmark = pytest.mark.integration


def snapshot(sku: str, version: int, on_hand: dict[str, int]) -> bytes:
    return codec.encode(ATS_SNAPSHOT, {
        "sku": sku, "version": version, "ats": sum(on_hand.values()), "sellable_on_hand": sum(on_hand.values()),
        "reserved": 0, "safety_stock": 0, "presale_allowance": 0,
        "locations": {loc: {"on_hand": q, "customs_hold": 0, "inspection": 0, "in_transit": 0} for loc, q in on_hand.items()},
        "reserved_by_channel": {}, "movement_ids": [], "updated_at_ms": 0,
    })


def read_all(settings, topic: str) -> list[tuple[bytes, dict]]:
    consumer = Consumer({"bootstrap.servers": settings.bootstrap_servers, "group.id": "erp-reconcile-test",
                         "enable.auto.commit": False})
    out = []
    try:
        for p in range(settings.partitions):
            _low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            if not high:
                continue
            consumer.assign([TopicPartition(topic, p, 0)])
            position = 0
            while position < high:
                for m in consumer.consume(100, timeout=1.0):
                    if m.error() is None:
                        position = m.offset() + 1
                        out.append((m.key(), orjson.loads(m.value())))
    finally:
        consumer.close()
    return out


def test_erp_reconcile_reports_and_publishes_differences(settings, tmp_path):
    ensure_topics(settings, (ATS, RECONCILIATION))
    producer = Producer({"bootstrap.servers": settings.bootstrap_servers})
    for sku, version, on_hand in (("SKU-1", 1, {"wh1": 10}), ("SKU-1", 2, {"wh1": 7, "wh2": 3}), ("SKU-2", 4, {"wh1": 5})):
        producer.produce(settings.topic(ATS.name), key=sku.encode(), value=snapshot(sku, version, on_hand),
                         partition=partition_for(sku.encode(), settings.partitions))
    assert producer.flush(30) == 0
    export = tmp_path / "onhand.csv"
    export.write_text("sku,location,on_hand\nSKU-1,wh1,7\nSKU-1,wh2,1\nSKU-3,wh1,4\n")

    result = subprocess.run(
        [sys.executable, "-m", "stockstream", "erp-reconcile", "--csv", str(export)],
        env={**os.environ, **settings.to_env(), "COLUMNS": "160"}, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "3 of 4" in result.stdout and "3 discrepancies published" in result.stdout
    assert "+2" in result.stdout and "-4" in result.stdout and "+5" in result.stdout

    published = {key.decode(): value for key, value in read_all(settings, settings.topic(RECONCILIATION.name))}
    assert set(published) == {"erp-on-hand:SKU-1:wh2", "erp-on-hand:SKU-2:wh1", "erp-on-hand:SKU-3:wh1"}
    assert published["erp-on-hand:SKU-1:wh2"] | {"checked_at_ms": 0} == {
        "kind": "erp_on_hand", "sku": "SKU-1", "location": "wh2", "erp_on_hand": 1, "stockstream_on_hand": 3,
        "difference": 2, "ats_version": 2, "source": str(export), "checked_at_ms": 0,
    }
    assert published["erp-on-hand:SKU-3:wh1"]["ats_version"] is None
