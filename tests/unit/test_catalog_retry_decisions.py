"""The catalog topic codec, the live catalog's modes, and the retrier's decisions (no Kafka)."""

from __future__ import annotations

import pytest

from connectors.simulators.tmall_traffic import TmallTraffic
from schemas import codec
from schemas.batches import decode_movements, encode_ingest
from schemas.names import QUARANTINE_RECORD
from stockstream.catalog_topic import (
    CatalogRecord,
    decode,
    encode,
    listing_key,
    records_from_rows,
    tombstone,
)
from stockstream.core.catalog import Catalog, CatalogRow
from stockstream.core.model import LineStatus, LineUpdate, SkuComponent
from stockstream.settings import Settings
from streams.catalog_feed import CatalogFeed, catalog_mode
from streams.normalize import UNMAPPED_SKU, IdentityCatalog, Normalizer, load_catalog
from streams.retry import Held, HeldRecord, decide, platforms_by_topic, retry_origin, retry_raw


def line(code, sku_id="5012345678901"):
    return LineUpdate("L1", sku_id, code, 1, LineStatus.PAID)


# -- codec -------------------------------------------------------------------------------------


def test_code_record_round_trips():
    record = CatalogRecord("GIFT-1", "GIFT-1", "tmall", "123", (SkuComponent("A", 1), SkuComponent("B", 2)))
    key, value = encode(record)
    assert key == b"GIFT-1"
    assert decode(key, value) == record
    assert decode(key, value).listing is None


def test_listing_record_and_tombstones():
    record = CatalogRecord(listing_key("jd", "99"), None, "jd", "99", (SkuComponent("A", 3),))
    assert decode(*encode(record)).listing == ("jd", "99")
    assert encode(tombstone(merchant_code="GIFT-1")) == (b"GIFT-1", None)
    assert encode(tombstone(listing=("jd", "99"))) == (b"listing:jd:99", None)
    assert decode(b"listing:jd:99", None).components is None


@pytest.mark.parametrize(
    "value", [b"[]", b'{"components": []}', b'{"components": [{"sku": "A", "quantity": 0}]}', b"not json"]
)
def test_bad_values_are_rejected(value):
    with pytest.raises(ValueError):
        decode(b"X", value)


def test_rows_become_one_record_per_code_and_per_listing_like_from_rows():
    rows = [
        CatalogRow("tmall", "1", "GIFT", "A", 1),
        CatalogRow("tmall", "1", "GIFT", "B", 2),
        CatalogRow("jd", "7", "GIFT", "A", 1),
        CatalogRow("jd", "7", "GIFT", "B", 2),
        CatalogRow("pdd", "5", None, "C", 1),
    ]
    records = {r.key: r for r in records_from_rows(rows)}
    assert set(records) == {"GIFT", "listing:tmall:1", "listing:jd:7", "listing:pdd:5"}
    assert records["GIFT"].components == (SkuComponent("A", 1), SkuComponent("B", 2))
    # Applying the records gives the same answers as the CSV catalog.
    feed = CatalogFeed(Settings(catalog_mode="strict"))
    for record in records.values():
        feed.apply(*encode(record))
    expected = Catalog.from_rows(rows)
    for platform, sku_id, code in [("tmall", "1", "GIFT"), ("jd", "7", None), ("pdd", "5", None), ("pdd", "6", "X")]:
        probe = line(code, sku_id)
        assert feed.resolver.resolve(platform, probe) == expected.resolve(platform, probe)


# -- the live catalog --------------------------------------------------------------------------


def test_catalog_modes():
    assert catalog_mode(Settings()) == "identity"
    assert catalog_mode(Settings(catalog_path="x.csv")) == "strict"
    assert catalog_mode(Settings(catalog_path="x.csv", catalog_mode="identity")) == "identity"
    assert isinstance(load_catalog(Settings()), IdentityCatalog)
    assert load_catalog(Settings(catalog_mode="strict")).resolve("tmall", line("SKU-1")) is None

    identity = CatalogFeed(Settings())
    assert identity.resolver.resolve("tmall", line("SKU-1")) == (SkuComponent("SKU-1", 1),)
    identity.apply(*encode(CatalogRecord("SKU-1", components=(SkuComponent("MASTER", 2),))))
    assert identity.resolver.resolve("tmall", line("SKU-1")) == (SkuComponent("MASTER", 2),)
    assert identity.resolver.resolve("tmall", line(None)) is None  # no code, unknown listing

    strict = CatalogFeed(Settings(catalog_mode="strict"))
    assert strict.resolver.resolve("tmall", line("SKU-1")) is None


def test_feed_applies_updates_and_tombstones_and_tells_listeners():
    feed = CatalogFeed(Settings(catalog_mode="strict"))
    heard = []
    feed.add_listener(heard.extend)
    keys = [feed.apply(*encode(CatalogRecord("C", components=(SkuComponent("A", 1),))))]
    feed.changed(keys)
    assert feed.resolver.resolve("tmall", line("C")) == (SkuComponent("A", 1),)
    feed.apply(*encode(CatalogRecord("C", components=(SkuComponent("B", 1),))))
    assert feed.resolver.resolve("tmall", line("C")) == (SkuComponent("B", 1),)
    feed.apply(*encode(tombstone(merchant_code="C")))
    assert feed.resolver.resolve("tmall", line("C")) is None
    feed.apply(*encode(CatalogRecord(listing_key("tmall", "5"), components=(SkuComponent("A", 1),))))
    assert feed.resolver.resolve("tmall", line(None, "5")) == (SkuComponent("A", 1),)
    feed.apply(*encode(tombstone(listing=("tmall", "5"))))
    assert feed.resolver.resolve("tmall", line(None, "5")) is None
    assert feed.apply(b"C", b"garbage") is None and feed.bad_records == 1
    assert heard == ["C"] and feed.generation == 1


# -- the retrier's decisions -------------------------------------------------------------------


class Store(dict):
    def put(self, key, value):
        self[key] = value


def ingest_batch(records, topic="raw.tmall"):
    return encode_ingest(
        [
            {"topic": topic, "partition": 0, "offset": offset, "timestamp_ms": 0, "key": r.key.encode(),
             "value": r.value, "headers": dict(r.headers)}
            for offset, r in enumerate(records)
        ]
    )


def test_unmapped_order_is_held_then_retried_through_its_own_stream():
    settings = Settings(catalog_mode="strict", partitions=2)
    feed = CatalogFeed(settings)
    feed.apply(*encode(CatalogRecord("KNOWN", components=(SkuComponent("KNOWN", 1),))))
    normalizer = Normalizer(settings, feed.resolver)
    traffic = TmallTraffic(skus=["NEW-CODE"], duplicate_rate=0.0, seed=3)
    paid = [r for r in traffic.messages(40) if b"TradeBuyerPay" in r.value][:1]
    assert paid
    store = Store()

    first = normalizer.process(ingest_batch(paid), 0, store)
    assert first.movements == 0 and len(first.quarantined) == 1
    quarantined = codec.decode(first.quarantined[0][1], QUARANTINE_RECORD)
    assert quarantined["reason_code"] == UNMAPPED_SKU and "NEW-CODE" in quarantined["reason"]

    by_topic = platforms_by_topic(settings)
    held = decide(quarantined, feed.resolver, by_topic)
    assert held.action == "hold" and "NEW-CODE" in held.missing
    # Processing the same record at its original position again defers again.
    assert normalizer.process(ingest_batch(paid), 0, store).movements == 0

    feed.apply(*encode(CatalogRecord("NEW-CODE", components=(SkuComponent("MASTER-9", 2),))))
    assert decide(quarantined, feed.resolver, by_topic).action == "retry"
    retry_value = encode_ingest([retry_raw(quarantined, 0)])
    retried = normalizer.process(retry_value, 0, store, origin=retry_origin(0, 17))
    assert not retried.quarantined
    movements = [m for _, batch in retried.movement_batches for m in decode_movements(batch)]
    assert movements and {m.sku for m in movements} == {"MASTER-9"}
    assert {m.origin.stream for m in movements} == {"0|retry"} and {m.origin.offset for m in movements} == {17}
    # Retrying again (a restart re-reads the quarantine) is a duplicate: nothing more.
    again = normalizer.process(retry_value, 0, store, origin=retry_origin(0, 18))
    assert again.movements == 0 and not again.quarantined


def test_decide_drops_what_is_not_a_retryable_unmapped_sku():
    settings = Settings(catalog_mode="strict")
    feed = CatalogFeed(settings)
    base = {"source_topic": "raw.tmall", "value": b"{}", "headers": {}, "reason_code": UNMAPPED_SKU, "retryable": False}
    assert decide(base, feed.resolver, platforms_by_topic(settings)).action == "drop"
    other = {**base, "retryable": True, "reason_code": "malformed"}
    assert decide(other, feed.resolver, platforms_by_topic(settings)).action == "drop"
    warehouse = {**base, "retryable": True, "source_topic": "raw.warehouse"}
    assert decide(warehouse, feed.resolver, platforms_by_topic(settings)).action == "drop"


def test_held_index_and_commit_offsets():
    held = Held()
    held.add(HeldRecord(0, 5, {"n": 5}, frozenset({"A", "listing:tmall:1"})))
    held.add(HeldRecord(0, 9, {"n": 9}, frozenset({"B"})))
    held.add(HeldRecord(1, 3, {"n": 3}, frozenset(), not_before=100.0))
    assert held.commit_offsets({0: 20, 1: 4, 2: 7}) == {0: 5, 1: 3, 2: 7}
    assert held.take_changed(["Z"]) and 1 not in {h.partition for h in held.records.values()}  # any-change waiters
    assert [h.offset for h in held.take_changed(["listing:tmall:1"])] == [5]
    assert held.commit_offsets({0: 20}) == {0: 9}
    assert held.take_changed(["A"]) == []
    held.add(HeldRecord(1, 4, {}, frozenset(), not_before=50.0))
    assert held.take_due(10.0) == [] and [h.offset for h in held.take_due(60.0)] == [4]
    held.drop_partitions([0])
    assert len(held) == 0 and not held.by_key
