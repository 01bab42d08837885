"""Warehouse feed: CSV rows and JSON documents -> WarehouseEvents."""

from __future__ import annotations

import json

import pytest

from connectors import base, warehouse
from connectors.base import Rejected
from stockstream.core.model import WarehouseEvent, WarehouseEventType as T

T0 = 1731254400000  # 2024-11-11 00:00:00+08:00
HEADER = "event_type,document_id,line_no,location,sku,quantity,event_time,counterpart_location,reason,result"


def ev(t: T, doc: str, line: int, sku: str, qty: int, **kw: object) -> WarehouseEvent:
    return WarehouseEvent(event_type=t, document_id=doc, line_no=line, location=kw.pop("location", "HZ-FTZ-01"),  # type: ignore[arg-type]
                          sku=sku, quantity=qty, event_time_ms=kw.pop("time", T0), **kw)  # type: ignore[arg-type]


def csv_bytes(*rows: str, header: str = HEADER) -> bytes:
    return ("\r\n".join((header, *rows)) + "\r\n").encode()


def rejected(outcome: object, code: str) -> Rejected:
    assert isinstance(outcome, Rejected), outcome
    assert outcome.reason_code == code, outcome
    return outcome


def test_csv_every_event_type() -> None:
    payload = csv_bytes(
        "RECEIPT,GRN-1,1,HZ-FTZ-01,SKU-1,100,2024-11-11T00:00:00+08:00,,,",
        "STOCK_COUNT,CNT-1,1,HZ-FTZ-01,SKU-1,0,2024-11-11T00:00:00+08:00,,cycle count,",
        "TRANSFER_OUT,TO-1,1,HZ-FTZ-01,SKU-1,10,2024-11-10T16:00:00Z,SH-DC-02,,",
        "TRANSFER_IN,TO-1,2,SH-DC-02,SKU-1,10,1731254400000,HZ-FTZ-01,,",
        "CUSTOMS_HOLD,CH-1,1,HZ-FTZ-01,SKU-2,5,2024-11-11T00:00:00+08:00,,CIQ inspection,",
        "CUSTOMS_RELEASE,CR-1,1,HZ-FTZ-01,SKU-2,5,2024-11-11T00:00:00+08:00,,,",
        "RETURN_RECEIVED,RT-1,1,HZ-FTZ-01,SKU-3,1,2024-11-11T00:00:00+08:00,,,",
        "RETURN_INSPECTED,RI-1,1,HZ-FTZ-01,SKU-3,1,2024-11-11T00:00:00+08:00,,sealed,restocked",
        "RETURN_INSPECTED,RI-1,2,HZ-FTZ-01,SKU-4,1,2024-11-11T00:00:00+08:00,,opened,SCRAPPED",
        "RETURN_RESTOCKED,RR-1,1,HZ-FTZ-01,SKU-5,2,2024-11-11T00:00:00+08:00,,,",
        "RETURN_SCRAPPED,RS-1,1,HZ-FTZ-01,SKU-5,1,2024-11-11T00:00:00+08:00,,,",
        "ADJUSTMENT,ADJ-1,1,HZ-FTZ-01,SKU-6,-3,2024-11-11T00:00:00+08:00,,damaged,",
    )
    assert warehouse.parse(payload, {"kind": "csv"}) == (
        ev(T.RECEIPT, "GRN-1", 1, "SKU-1", 100),
        ev(T.STOCK_COUNT, "CNT-1", 1, "SKU-1", 0, reason="cycle count"),
        ev(T.TRANSFER_OUT, "TO-1", 1, "SKU-1", 10, counterpart_location="SH-DC-02"),
        ev(T.TRANSFER_IN, "TO-1", 2, "SKU-1", 10, location="SH-DC-02", counterpart_location="HZ-FTZ-01"),
        ev(T.CUSTOMS_HOLD, "CH-1", 1, "SKU-2", 5, reason="CIQ inspection"),
        ev(T.CUSTOMS_RELEASE, "CR-1", 1, "SKU-2", 5),
        ev(T.RETURN_RECEIVED, "RT-1", 1, "SKU-3", 1),
        ev(T.RETURN_RESTOCKED, "RI-1", 1, "SKU-3", 1, reason="sealed"),
        ev(T.RETURN_SCRAPPED, "RI-1", 2, "SKU-4", 1, reason="opened"),
        ev(T.RETURN_RESTOCKED, "RR-1", 1, "SKU-5", 2),
        ev(T.RETURN_SCRAPPED, "RS-1", 1, "SKU-5", 1),
        ev(T.ADJUSTMENT, "ADJ-1", 1, "SKU-6", -3, reason="damaged"),
    )


def test_csv_bom_column_order_and_recognition_without_kind() -> None:
    payload = b"\xef\xbb\xbf" + csv_bytes(
        "SKU-1,5,RECEIPT,GRN-9,1,WH,2024-11-11T00:00:00+08:00,ignored",
        header="sku,quantity,event_type,document_id,line_no,location,event_time,extra_column",
    )
    assert warehouse.parse(payload) == (ev(T.RECEIPT, "GRN-9", 1, "SKU-1", 5, location="WH"),)
    assert warehouse.parse(csv_bytes()) == ()  # header only


def test_json_document() -> None:
    doc = {
        "document_id": "RTN-20241111-001",
        "type": "RETURN_INSPECTED",
        "location": "HZ-FTZ-01",
        "event_time": "2024-11-11T00:00:00+08:00",
        "reason": "batch inspection",
        "lines": [
            {"line_no": 1, "sku": "SKU-1", "quantity": 2, "result": "restocked"},
            {"sku": "SKU-2", "quantity": "1", "result": "scrapped", "reason": "broken seal"},
        ],
    }
    assert warehouse.parse(json.dumps(doc).encode()) == (
        ev(T.RETURN_RESTOCKED, "RTN-20241111-001", 1, "SKU-1", 2, reason="batch inspection"),
        ev(T.RETURN_SCRAPPED, "RTN-20241111-001", 2, "SKU-2", 1, reason="broken seal"),
    )


def test_builders_round_trip() -> None:
    events = [
        ev(T.TRANSFER_OUT, "TO-7", 1, "SKU-1", 4, counterpart_location="SH-DC-02", reason="rebalance"),
        ev(T.TRANSFER_OUT, "TO-7", 2, "SKU-2", 6, counterpart_location="SH-DC-02"),
    ]
    assert warehouse.parse(warehouse.csv_payload(events, bom=True), {"kind": "csv"}) == tuple(events)
    assert warehouse.parse(warehouse.json_document(events), {"kind": "json"}) == tuple(events)
    with pytest.raises(ValueError):
        warehouse.json_document([events[0], ev(T.RECEIPT, "TO-7", 3, "SKU-3", 1)])


@pytest.mark.parametrize(
    "row, code",
    [
        ("RECEIPT,G,1,WH,SKU,0,2024-11-11T00:00:00+08:00,,,", base.BAD_QUANTITY),
        ("RECEIPT,G,1,WH,SKU,-1,2024-11-11T00:00:00+08:00,,,", base.BAD_QUANTITY),
        ("RECEIPT,G,1,WH,SKU,1.5,2024-11-11T00:00:00+08:00,,,", base.BAD_QUANTITY),
        ("STOCK_COUNT,G,1,WH,SKU,-1,2024-11-11T00:00:00+08:00,,,", base.BAD_QUANTITY),
        ("ADJUSTMENT,G,1,WH,SKU,0,2024-11-11T00:00:00+08:00,,,", base.BAD_QUANTITY),
        ("RECEIPT,G,1,WH,SKU,,2024-11-11T00:00:00+08:00,,,", base.MISSING_FIELD),
        ("RECEIPT,G,1,WH,SKU,1,2024-11-11T00:00:00,,,", base.BAD_TIME),  # no offset
        ("RECEIPT,G,1,WH,SKU,1,2024-13-11T00:00:00+08:00,,,", base.BAD_TIME),
        ("RECEIPT,G,1,WH,SKU,1,12,,,", base.BAD_TIME),
        ("RECEIPT,G,0,WH,SKU,1,2024-11-11T00:00:00+08:00,,,", base.WRONG_SHAPE),
        ("RECEIPT,G,x,WH,SKU,1,2024-11-11T00:00:00+08:00,,,", base.WRONG_TYPE),
        ("RECEIPT,,1,WH,SKU,1,2024-11-11T00:00:00+08:00,,,", base.MISSING_FIELD),
        ("RECEIPT,G,1,,SKU,1,2024-11-11T00:00:00+08:00,,,", base.MISSING_FIELD),
        ("RECEIPT,G,1,WH,,1,2024-11-11T00:00:00+08:00,,,", base.MISSING_FIELD),
        ("SHIPMENT,G,1,WH,SKU,1,2024-11-11T00:00:00+08:00,,,", base.UNKNOWN_STATUS),
        ("RETURN_INSPECTED,G,1,WH,SKU,1,2024-11-11T00:00:00+08:00,,,resold", base.UNKNOWN_STATUS),
        ("RETURN_INSPECTED,G,1,WH,SKU,1,2024-11-11T00:00:00+08:00,,,", base.MISSING_FIELD),
        ("TRANSFER_OUT,G,1,WH,SKU,1,2024-11-11T00:00:00+08:00,,,", base.MISSING_FIELD),
        ("TRANSFER_IN,G,1,WH,SKU,1,2024-11-11T00:00:00+08:00,WH,,", base.WRONG_SHAPE),
        ("RECEIPT,G,1,WH,SKU,1", base.WRONG_SHAPE),  # too few columns
        ("RECEIPT,G,1,WH,SKU,1,2024-11-11T00:00:00+08:00,,,,extra", base.WRONG_SHAPE),
    ],
)
def test_csv_rejections(row: str, code: str) -> None:
    rejected(warehouse.parse(csv_bytes(row), {"kind": "csv"}), code)


def test_csv_file_level_rejections_and_per_row_iteration() -> None:
    rejected(warehouse.parse(b"", {"kind": "csv"}), base.WRONG_SHAPE)
    rejected(warehouse.parse(b"sku,quantity\r\nA,1\r\n", {"kind": "csv"}), base.WRONG_SHAPE)
    rejected(warehouse.parse(b"\xff\xfe", {"kind": "csv"}), base.BAD_ENCODING)
    rejected(warehouse.parse(b"a,b\x00", {"kind": "csv"}), base.BAD_ENCODING)
    rejected(warehouse.parse(csv_bytes('RECEIPT,"G,1'), {"kind": "csv"}), base.WRONG_SHAPE)
    rejected(warehouse.parse(b"x", {"kind": "xml"}), base.UNKNOWN_KIND)
    dup = csv_bytes(*["RECEIPT,G,1,WH,SKU,1,2024-11-11T00:00:00+08:00,,,"] * 2)
    rejected(warehouse.parse(dup, {"kind": "csv"}), base.DUPLICATE_LINE)
    mixed = csv_bytes(
        "RECEIPT,G,1,WH,SKU,1,2024-11-11T00:00:00+08:00,,,",
        "RECEIPT,G,2,WH,SKU,-1,2024-11-11T00:00:00+08:00,,,",
    )
    rejected(warehouse.parse(mixed, {"kind": "csv"}), base.BAD_QUANTITY)  # the record is all-or-nothing
    rows = list(warehouse.iter_csv(mixed))
    assert rows[0] == ev(T.RECEIPT, "G", 1, "SKU", 1, location="WH")
    assert isinstance(rows[1], Rejected) and rows[1].reason_code == base.BAD_QUANTITY
    assert [type(r) for r in warehouse.iter_csv(b"\xff")] == [Rejected]


@pytest.mark.parametrize(
    "change, code",
    [
        ({"lines": []}, base.WRONG_SHAPE),
        ({"lines": "SKU-1"}, base.WRONG_SHAPE),
        ({"lines": [1]}, base.WRONG_SHAPE),
        ({"type": None}, base.MISSING_FIELD),
        ({"type": 3}, base.WRONG_TYPE),
        ({"event_time": 1731254400}, base.BAD_TIME),  # seconds: before 2000 as ms
        ({"event_time": True}, base.BAD_TIME),
        ({"lines": [{"line_no": 1, "sku": "A", "quantity": 1}, {"line_no": 1, "sku": "B", "quantity": 1}]}, base.DUPLICATE_LINE),
        ({"lines": [{"line_no": 1, "sku": ["A"], "quantity": 1}]}, base.WRONG_TYPE),
        ({"lines": [{"line_no": 1, "sku": "A", "quantity": 1e3}]}, base.BAD_QUANTITY),
    ],
)
def test_json_rejections(change: dict, code: str) -> None:
    doc = {"document_id": "GRN-1", "type": "RECEIPT", "location": "WH", "event_time": "2024-11-11T00:00:00+08:00",
           "lines": [{"line_no": 1, "sku": "A", "quantity": 1}]}
    doc.update(change)
    rejected(warehouse.parse(json.dumps(doc).encode(), {"kind": "json"}), code)
    rejected(warehouse.parse(b"{broken", {"kind": "json"}), base.BAD_JSON)
    rejected(warehouse.parse(b"[]", {"kind": "json"}), base.WRONG_SHAPE)
