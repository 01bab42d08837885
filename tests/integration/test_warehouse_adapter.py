"""The warehouse adapter against the real broker: HTTP documents (JSON and CSV) land in
raw.warehouse unchanged and keyed by document id, bad tokens publish nothing, invalid documents
are answered 400 and kept in quarantine, and the CSV file drop publishes, quarantines bad rows,
moves files only after publishing, and re-publishes a file after a crash before the move."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from pathlib import Path

import aiohttp
import pytest
from confluent_kafka import Consumer, TopicPartition

from connectors import warehouse as feed
from connectors.adapters import make_feed_adapter
from connectors.adapters.warehouse import TOKEN_HEADER, WarehouseAdapter
from connectors.publisher import RawPublisher
from schemas import codec
from stockstream.core.model import WarehouseEvent, WarehouseEventType as W
from stockstream.topics import QUARANTINE, RAW_WAREHOUSE, ensure_topics
from tests.support.adapters import read_topic

pytestmark = pytest.mark.integration

TOKENS = {"HZ-FTZ-01": "token-hz", "SH-3PL": "token-sh"}
T0 = 1_731_290_400_000  # 2024-11-11T10:00:00+08:00


def ev(doc: str, line: int, sku: str, qty: int, kind: W = W.RECEIPT, location: str = "HZ-FTZ-01") -> WarehouseEvent:
    return WarehouseEvent(kind, doc, line, location, sku, qty, T0)


def adapter(settings, **options) -> WarehouseAdapter:
    ensure_topics(settings, (RAW_WAREHOUSE, QUARANTINE))
    return make_feed_adapter("warehouse", RawPublisher(settings), tokens=TOKENS, **options)


async def read_quarantine(settings) -> list[dict]:
    """Every QuarantineRecord in the test's quarantine topic (keys may be null there)."""
    return await asyncio.to_thread(_read_quarantine, settings)


def _read_quarantine(settings) -> list[dict]:
    topic = settings.topic(QUARANTINE.name)
    consumer = Consumer(
        {"bootstrap.servers": settings.bootstrap_servers, "group.id": f"q-{uuid.uuid4().hex}", "enable.auto.commit": False}
    )
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        out = []
        for p in partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            if high <= low:
                continue
            consumer.assign([TopicPartition(topic, p, low)])
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                msg = consumer.poll(0.2)
                if msg is None or msg.error():
                    continue
                out.append((msg.timestamp()[1], msg.partition(), msg.offset(), codec.decode(msg.value())))
                if msg.offset() + 1 >= high:
                    break
        return [record for *_, record in sorted(out, key=lambda t: (t[0], t[1], t[2]))]
    finally:
        consumer.close()


async def post(session: aiohttp.ClientSession, url: str, body: bytes, content_type: str, token: str | None):
    headers = {"Content-Type": content_type}
    if token is not None:
        headers[TOKEN_HEADER] = token
    async with session.post(url, data=body, headers=headers) as response:
        return response.status, await response.json()


async def test_http_documents_published_unchanged_keyed_by_document(settings):
    wh = adapter(settings)
    url = await wh.start()
    json_doc = feed.json_document([ev("GRN-1", 1, "SKU-1", 10), ev("GRN-1", 2, "SKU-2", 5)])
    csv_one = feed.csv_payload([ev("CNT-7", 1, "SKU-1", 42, W.STOCK_COUNT, "SH-3PL")])
    csv_two = feed.csv_payload([ev("GRN-2", 1, "SKU-3", 3), ev("ADJ-9", 1, "SKU-1", -2, W.ADJUSTMENT), ev("GRN-2", 2, "SKU-4", 1)])
    try:
        async with aiohttp.ClientSession() as s:
            assert await post(s, url, json_doc, "application/json", "token-hz") == (
                200, {"ok": True, "documents": ["GRN-1"], "events": 2}
            )
            status, answer = await post(s, url, csv_one, "text/csv; charset=utf-8", "token-sh")
            assert status == 200 and answer["documents"] == ["CNT-7"]
            status, answer = await post(s, url, csv_two, "text/csv", "token-hz")
            assert status == 200 and answer["documents"] == ["GRN-2", "ADJ-9"] and answer["events"] == 3
    finally:
        await wh.stop()

    records = await read_topic(settings, RAW_WAREHOUSE.name)
    by_key = {r.key: r for r in records}
    assert sorted(by_key) == ["ADJ-9", "CNT-7", "GRN-1", "GRN-2"] and len(records) == 4
    assert by_key["GRN-1"].value == json_doc and by_key["CNT-7"].value == csv_one
    for key, rec in by_key.items():
        assert rec.headers["platform"] == "warehouse" and rec.headers["message-id"] == key
        assert int(rec.headers["received-at"]) > T0
    assert by_key["GRN-1"].headers["kind"] == "json" and by_key["GRN-1"].headers["shop"] == "HZ-FTZ-01"
    assert by_key["CNT-7"].headers["kind"] == "csv" and by_key["CNT-7"].headers["shop"] == "SH-3PL"
    # A CSV body with two documents is split; each part parses to exactly its own events.
    assert feed.parse(by_key["GRN-2"].value, {"kind": "csv"}) == (ev("GRN-2", 1, "SKU-3", 3), ev("GRN-2", 2, "SKU-4", 1))
    assert feed.parse(by_key["ADJ-9"].value, {"kind": "csv"}) == (ev("ADJ-9", 1, "SKU-1", -2, W.ADJUSTMENT),)
    assert await read_quarantine(settings) == []


async def test_bad_token_401_nothing_published_invalid_400_quarantined(settings):
    wh = adapter(settings)
    url = await wh.start()
    good = feed.json_document([ev("GRN-1", 1, "SKU-1", 10)])
    bad_qty = good.replace(b'"quantity":10', b'"quantity":-10')
    broken_csv = b"event_type,document_id,line_no,location,sku,quantity,event_time\nRECEIPT,GRN-5,1,HZ,SKU-1,3,2024-11-11T10:00:00\n"
    try:
        async with aiohttp.ClientSession() as s:
            assert (await post(s, url, good, "application/json", "wrong"))[0] == 401
            assert (await post(s, url, good, "application/json", None))[0] == 401
            status, answer = await post(s, url, bad_qty, "application/json", "token-hz")
            assert status == 400 and answer["error"] == "bad_quantity" and "-10" in answer["reason"]
            status, answer = await post(s, url, broken_csv, "text/csv", "token-sh")
            assert status == 400 and answer["error"] == "bad_time"
            status, answer = await post(s, url, b"<xml/>", "application/xml", "token-sh")
            assert status == 415
    finally:
        await wh.stop()

    assert await read_topic(settings, RAW_WAREHOUSE.name) == []
    q = await read_quarantine(settings)
    assert [r["reason_code"] for r in q] == ["bad_quantity", "bad_time", "unsupported_media_type"]
    assert q[0]["value"] == bad_qty and q[0]["key"] == b"GRN-1" and q[0]["headers"]["warehouse"] == "HZ-FTZ-01"
    assert q[1]["value"] == broken_csv and q[1]["key"] == b"GRN-5" and q[1]["headers"]["kind"] == "csv"
    assert all(r["source_topic"] == settings.topic("raw.warehouse") and r["source_offset"] == -1 for r in q)
    assert all(r["reason"] and not r["retryable"] for r in q)
    assert wh.counters["unauthorized"] == 2


def drop(directory: Path, name: str, data: bytes) -> Path:
    path = directory / name
    path.write_bytes(data)
    os.utime(path, (0, 0))  # old enough for the watcher
    return path


async def test_file_drop_publishes_documents_quarantines_bad_rows_and_moves(settings, tmp_path):
    wh = adapter(settings, drop_dir=tmp_path, poll_interval_s=0.1, min_age_s=0.5)
    good = drop(tmp_path, "good.csv", feed.csv_payload(
        [ev("GRN-1", 1, "SKU-1", 10), ev("GRN-1", 2, "SKU-2", 5), ev("TRF-1", 1, "SKU-1", 2, W.CUSTOMS_HOLD)], bom=True
    ))
    mixed_rows = feed.csv_payload([ev("GRN-2", 1, "SKU-1", 1), ev("GRN-3", 1, "SKU-1", 4), ev("GRN-3", 2, "SKU-2", 6)])
    lines = mixed_rows.split(b"\r\n")
    lines[3] = lines[3].replace(b",6,", b",six,")  # GRN-3 line 2: bad quantity -> GRN-3 held back whole
    mixed = drop(tmp_path, "mixed.csv", b"\r\n".join(lines))
    broken = drop(tmp_path, "broken.csv", b"\xff\xfe not utf-8")
    fresh = tmp_path / "fresh.csv"  # just written: left for the next scan
    fresh.write_bytes(feed.csv_payload([ev("GRN-9", 1, "SKU-9", 9)]))
    (tmp_path / "notes.txt").write_text("ignored")

    outcomes = {o.path.name: o for o in await wh.scan()}
    assert sorted(outcomes) == ["broken.csv", "good.csv", "mixed.csv"]
    assert outcomes["good.csv"].published == ["GRN-1", "TRF-1"] and outcomes["good.csv"].quarantined == 0
    assert outcomes["mixed.csv"].published == ["GRN-2"] and outcomes["mixed.csv"].quarantined == 2
    assert outcomes["broken.csv"].published == [] and outcomes["broken.csv"].quarantined == 1
    assert not good.exists() and (tmp_path / "processed" / "good.csv").exists()
    assert (tmp_path / "rejected" / "mixed.csv").exists() and (tmp_path / "rejected" / "broken.csv").exists()
    assert not mixed.exists() and not broken.exists()
    assert fresh.exists() and (tmp_path / "notes.txt").exists()

    records = await read_topic(settings, RAW_WAREHOUSE.name)
    by_key = {r.key: r for r in records}
    assert sorted(by_key) == ["GRN-1", "GRN-2", "TRF-1"] and len(records) == 3
    assert feed.parse(by_key["GRN-1"].value, by_key["GRN-1"].headers) == (ev("GRN-1", 1, "SKU-1", 10), ev("GRN-1", 2, "SKU-2", 5))
    assert by_key["TRF-1"].headers["kind"] == "csv" and by_key["TRF-1"].headers["message-id"] == "TRF-1"

    q = await read_quarantine(settings)
    codes = sorted((r["reason_code"], (r["key"] or b"").decode(), r["headers"]["file"]) for r in q)
    assert codes == [
        ("bad_encoding", "", "broken.csv"),
        ("bad_quantity", "GRN-3", "mixed.csv"),
        ("incomplete_document", "GRN-3", "mixed.csv"),
    ]
    row = next(r for r in q if r["reason_code"] == "bad_quantity")
    assert b"six" in row["value"] and row["headers"]["row"] == "4" and "six" in row["reason"]
    held = next(r for r in q if r["reason_code"] == "incomplete_document")
    assert feed.parse(held["value"], {"kind": "csv"}) == (ev("GRN-3", 1, "SKU-1", 4),)
    assert next(r for r in q if r["reason_code"] == "bad_encoding")["value"] == b"\xff\xfe not utf-8"


async def test_crash_between_publish_and_move_republishes(settings, tmp_path):
    data = feed.csv_payload([ev("GRN-1", 1, "SKU-1", 10), ev("CNT-1", 1, "SKU-2", 3, W.STOCK_COUNT)])
    path = drop(tmp_path, "wms-export.csv", data)

    crashing = adapter(settings, drop_dir=tmp_path, min_age_s=0)

    async def crash(_path: Path) -> None:
        raise RuntimeError("killed after publishing, before moving")

    crashing.before_move = crash
    assert await crashing.scan() == []  # the failure is logged, the file stays
    assert path.exists() and crashing.counters["published"] == 2 and crashing.counters["file_failed"] == 1

    restarted = adapter(settings, drop_dir=tmp_path, min_age_s=0)  # the process after a restart
    [outcome] = await restarted.scan()
    assert outcome.published == ["GRN-1", "CNT-1"] and outcome.moved_to == tmp_path / "processed" / "wms-export.csv"
    assert not path.exists() and await restarted.scan() == []

    records = await read_topic(settings, RAW_WAREHOUSE.name)
    keys = sorted(r.key for r in records)
    assert keys == ["CNT-1", "CNT-1", "GRN-1", "GRN-1"]  # at least once, none missing
    events = {e for r in records for e in feed.parse(r.value, r.headers)}
    assert events == set(feed.parse(data, {"kind": "csv"}))


async def test_watcher_runs_until_stopped(settings, tmp_path):
    wh = adapter(settings, drop_dir=tmp_path, poll_interval_s=0.1, min_age_s=0)
    stop = asyncio.Event()
    task = asyncio.create_task(wh.run(stop))
    try:
        await asyncio.sleep(0.3)
        (tmp_path / "late.csv").write_bytes(feed.csv_payload([ev("GRN-7", 1, "SKU-7", 7)]))
        for _ in range(100):
            if (tmp_path / "processed" / "late.csv").exists():
                break
            await asyncio.sleep(0.1)
        assert (tmp_path / "processed" / "late.csv").exists()
        assert wh.url.startswith("http://127.0.0.1:")
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
    assert [r.key for r in await read_topic(settings, RAW_WAREHOUSE.name)] == ["GRN-7"]
