"""parse is total: arbitrary bytes, arbitrary JSON and type-confused versions of real payloads
give a well-formed outcome, never an exception, and never a `parser_error` (which would mean a
parser bug that escaped to the catch-all)."""

from __future__ import annotations

import json
import os
import random
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors import base, douyin, jd, pdd, tmall, warehouse
from connectors.base import Rejected, is_personal_key, redact_payload
from connectors.registry import PLATFORMS, get_connector
from connectors.simulated import example_order
from stockstream.core.model import LineStatus, OrderUpdate, WarehouseEvent

# STOCKSTREAM_FUZZ_EXAMPLES scales every fuzz test up (e.g. 10000 for the long run).
EXAMPLES = int(os.environ.get("STOCKSTREAM_FUZZ_EXAMPLES", "2000"))
RANDOM_INPUT_EXAMPLES = max(EXAMPLES // 4, 1)  # random input fails at the first shape check: cheap coverage
MUTATIONS_PER_EXAMPLE = 5
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
FUZZ_RANDOM = settings(max_examples=RANDOM_INPUT_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))

REASON_CODES = {v for k, v in vars(base).items() if k.isupper() and isinstance(v, str)} - {base.PARSER_ERROR}

KINDS = {"tmall": tmall.KINDS, "jd": jd.KINDS, "douyin": douyin.KINDS, "pdd": pdd.KINDS}


def _valid_docs(platform: str) -> list[tuple[str, Any]]:
    """(kind, document) for every payload kind and a spread of statuses."""
    docs: list[tuple[str, Any]] = []
    for status in LineStatus:
        if platform == "tmall":
            o = example_order("tmall", status, shipped=True)
            docs.append(("fullinfo", tmall.fullinfo_response(o)))
            docs.append(("tmc", tmall.tmc_message(o, "taobao_trade_TradeBuyerPay", 2215004180128620412, o.lines[0])))
            docs.append(("tmc", tmall.tmc_message(o, "taobao_refund_RefundSuccess", 7, o.lines[1])))
        elif platform == "douyin":
            o = example_order("douyin", status, shipped=True)
            docs.append(("detail", douyin.order_detail_response(o)))
            docs.append(("push", douyin.push_message(o, "102", "7000000000000000001")))
            docs.append(("push", json.loads(douyin.push_body([douyin.push_message(o, "206", "m2", [o.lines[0]])]))))
        elif status != LineStatus.CREATED:
            if platform == "jd":
                o = example_order("jd", status, shipped=True)
                docs.append(("order", jd.search_order(o)))
                docs.append(("search", jd.search_response([jd.search_order(o)])))
            else:
                o = example_order("pdd", status, shipped=True)
                docs.append(("order", pdd.order_information_response(o)))
                docs.append(("frame", pdd.ws_frame(o, "pdd_trade_TradeSellerShip", 1001)))
    return docs


VALID = {p: _valid_docs(p) for p in PLATFORMS}

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=30),
    st.sampled_from(["", "0", "-1", "1.5", "2024-11-11 00:00:00", "2024-13-45 99:99:99", "{", "[]", '{"a":1}', "WAIT_BUYER_PAY", "101"]),
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=12), children, max_size=5),
    max_leaves=15,
)
CONFUSERS: list[Any] = [
    None, True, False, 0, -1, 1, 1.5, 2**64, 10**30, "", " ", "x", "-1", "0", "1e3", "NaN", [], {}, [1], {"a": 1},
    "2024-11-11 00:00:00", "2024-02-30 00:00:00", "{", "[]", "\u0000", "中文", "a b", 1731254400, 1731254400000,
]


def mutate(value: Any, rnd: random.Random, extra: Any) -> Any:
    """A type-confused copy: values swapped for wrong types, keys dropped, lists emptied or grown,
    nested JSON strings mutated inside."""
    roll = rnd.random()
    if roll < 0.06:
        return rnd.choice(CONFUSERS + [extra])
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if rnd.random() < 0.06:
                continue
            out[k] = mutate(v, rnd, extra)
        if rnd.random() < 0.03:
            out[rnd.choice(["tid", "oid", "status", "num", "orderState", "itemTotal", "tag", "p_id", "order_status", "x"])] = rnd.choice(CONFUSERS)
        return out
    if isinstance(value, list):
        items = [mutate(v, rnd, extra) for v in value if rnd.random() > 0.05]
        if items and rnd.random() < 0.05:
            items.append(items[0])  # duplicates
        return items
    if isinstance(value, str) and value[:1] in "{[" and roll < 0.6:
        try:
            return json.dumps(mutate(json.loads(value), rnd, extra), ensure_ascii=False)
        except (ValueError, RecursionError):
            return value
    return value


def check_outcome(platform: str, outcome: object) -> None:
    if isinstance(outcome, Rejected):
        assert outcome.reason_code in REASON_CODES, outcome
        assert isinstance(outcome.reason, str) and outcome.reason
        return
    assert isinstance(outcome, tuple), outcome
    for update in outcome:
        assert isinstance(update, OrderUpdate)
        assert update.platform == platform
        assert isinstance(update.order_id, str) and update.order_id
        assert isinstance(update.shop_id, str) and update.shop_id
        assert isinstance(update.modified_ms, int) and 946_684_800_000 <= update.modified_ms < 4_102_444_800_000
        assert isinstance(update.lines, tuple)
        # Lines, or an order-level status (a notification naming the order, not its lines).
        assert update.lines or update.status is not None
        assert update.status is None or (isinstance(update.status, LineStatus) and isinstance(update.shipped, bool))
        ids = [line.line_id for line in update.lines]
        assert len(ids) == len(set(ids))
        for line in update.lines:
            assert isinstance(line.line_id, str) and line.line_id
            assert isinstance(line.status, LineStatus)
            assert isinstance(line.shipped, bool)
            assert line.quantity is None or (type(line.quantity) is int and line.quantity >= 1)
            assert line.platform_sku_id is None or (isinstance(line.platform_sku_id, str) and line.platform_sku_id)
            assert line.merchant_code is None or isinstance(line.merchant_code, str)
            if update.snapshot:
                assert line.quantity is not None and line.platform_sku_id is not None


def headers_for(platform: str) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {},
        optional={
            "kind": st.sampled_from(list(KINDS[platform]) + ["junk", ""]) | st.binary(max_size=4),
            "shop": st.sampled_from(["s1", "", "2200754211234"]),
            "message-id": st.sampled_from(["m1", ""]),
        },
    )


@pytest.mark.parametrize("platform", PLATFORMS)
@FUZZ_RANDOM
@given(data=st.data())
def test_arbitrary_bytes(platform: str, data: st.DataObject) -> None:
    payload = data.draw(st.binary(max_size=600) | st.text(max_size=300).map(str.encode))
    check_outcome(platform, get_connector(platform).parse(payload, data.draw(headers_for(platform))))


@pytest.mark.parametrize("platform", PLATFORMS)
@FUZZ_RANDOM
@given(data=st.data())
def test_arbitrary_json(platform: str, data: st.DataObject) -> None:
    payload = json.dumps(data.draw(json_values)).encode()
    check_outcome(platform, get_connector(platform).parse(payload, data.draw(headers_for(platform))))


@pytest.mark.parametrize("platform", PLATFORMS)
@FUZZ
@given(data=st.data())
def test_type_confused_real_payloads(platform: str, data: st.DataObject) -> None:
    kind, doc = data.draw(st.sampled_from(VALID[platform]))
    # a drawn seed, not st.randoms(): that records every random() call as a draw and costs
    # 100x the parse; failures still reproduce from the seed hypothesis prints
    rnd = random.Random(data.draw(st.integers(0, 2**32 - 1), label="seed"))
    extra = data.draw(json_scalars)
    headers = data.draw(st.sampled_from([{"kind": kind, "shop": "s1"}, {"kind": kind}, {}]))
    for _ in range(MUTATIONS_PER_EXAMPLE):
        mutated = mutate(doc, rnd, extra)
        check_outcome(platform, get_connector(platform).parse(json.dumps(mutated, ensure_ascii=False).encode(), headers))


def test_valid_payloads_parse() -> None:
    """The fuzz corpus itself is valid: otherwise mutations would start from rejections."""
    for platform, docs in VALID.items():
        for kind, doc in docs:
            outcome = get_connector(platform).parse(json.dumps(doc).encode(), {"kind": kind, "shop": "s1"})
            assert isinstance(outcome, tuple), (platform, kind, outcome)


# -- warehouse --------------------------------------------------------------------------------

WAREHOUSE_CSV = (
    b"event_type,document_id,line_no,location,sku,quantity,event_time,counterpart_location,reason,result\r\n"
    b"TRANSFER_OUT,TO-1,1,HZ,SKU-1,10,2024-11-11T00:00:00+08:00,SH,,\r\n"
    b"RETURN_INSPECTED,RI-1,1,HZ,SKU-3,1,1731254400000,,sealed,restocked\r\n"
)
WAREHOUSE_DOC = {
    "document_id": "ADJ-1", "type": "ADJUSTMENT", "location": "HZ", "event_time": "2024-11-11T00:00:00Z",
    "lines": [{"line_no": 1, "sku": "A", "quantity": -2}, {"sku": "B", "quantity": "3", "reason": "found"}],
}


def check_warehouse(outcome: object) -> None:
    if isinstance(outcome, Rejected):
        assert outcome.reason_code in REASON_CODES, outcome
        return
    assert isinstance(outcome, tuple)
    for e in outcome:
        assert isinstance(e, WarehouseEvent)
        assert e.document_id and e.location and e.sku and type(e.quantity) is int and e.line_no >= 1


@FUZZ_RANDOM
@given(payload=st.binary(max_size=600), kind=st.sampled_from([None, "csv", "json", "x"]))
def test_warehouse_arbitrary_bytes(payload: bytes, kind: str | None) -> None:
    check_warehouse(warehouse.parse(payload, {"kind": kind} if kind else {}))


@FUZZ
@given(data=st.data())
def test_warehouse_mutated(data: st.DataObject) -> None:
    rnd = random.Random(data.draw(st.integers(0, 2**32 - 1), label="seed"))
    doc = json.dumps(mutate(WAREHOUSE_DOC, rnd, data.draw(json_scalars))).encode()
    check_warehouse(warehouse.parse(doc, {"kind": "json"}))
    csv_bytes = bytearray(WAREHOUSE_CSV)
    for _ in range(rnd.randint(1, 6)):
        pos = rnd.randrange(len(csv_bytes))
        csv_bytes[pos : pos + 1] = rnd.choice([b"", b",", b'"', b"\r\n", b"-", b"x", b"\xff", bytes([rnd.randrange(256)])])
    check_warehouse(warehouse.parse(bytes(csv_bytes), {"kind": "csv"}))
    for row in warehouse.iter_csv(bytes(csv_bytes)):
        check_warehouse(row if isinstance(row, Rejected) else (row,))


# -- PII stripping ----------------------------------------------------------------------------


def _personal_keys_anywhere(value: Any) -> bool:
    if isinstance(value, dict):
        return any((isinstance(k, str) and is_personal_key(k)) or _personal_keys_anywhere(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_personal_keys_anywhere(v) for v in value)
    if isinstance(value, str) and value.strip()[:1] in ("{", "["):
        try:
            return _personal_keys_anywhere(json.loads(value))
        except (ValueError, RecursionError):
            return False
    return False


pii_keys = st.sampled_from(["buyer_nick", "receiver_mobile", "consigneeInfo", "post_tel", "id_card_num", "tid", "num", "sku_id"])
pii_json = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(pii_keys | st.text(max_size=8), children, max_size=4)
        | st.dictionaries(pii_keys, children, max_size=3).map(lambda d: " " + json.dumps(d, ensure_ascii=False))
    ),
    max_leaves=20,
)


@settings(max_examples=max(EXAMPLES // 2, 1), deadline=None, suppress_health_check=list(HealthCheck))
@given(doc=pii_json)
def test_redaction_removes_personal_keys_at_any_depth(doc: Any) -> None:
    stripped = json.loads(redact_payload(json.dumps(doc, ensure_ascii=False).encode()))
    assert not _personal_keys_anywhere(stripped)
