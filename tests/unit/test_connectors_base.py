"""Shared connector machinery: PII stripping, raw records, headers, field readers, registry."""

from __future__ import annotations

import json

import pytest

from connectors import base, douyin, jd, pdd, tmall
from connectors.base import RawHeader, is_personal_key, raw_record, redact_payload, strip_personal_data
from connectors.registry import PLATFORMS, get_connector
from connectors.simulated import SimBuyer, example_order
from stockstream.core.model import LineStatus
from stockstream.topics import PLATFORMS as TOPIC_PLATFORMS

BUYER = SimBuyer()


def _all_payloads() -> list[tuple[str, bytes]]:
    """Every payload kind the builders produce, at a lifecycle point where PII is present."""
    t = example_order("tmall", LineStatus.SHIPPED)
    j = example_order("jd", LineStatus.SHIPPED)
    d = example_order("douyin", LineStatus.SHIPPED)
    p = example_order("pdd", LineStatus.SHIPPED)
    docs = {
        "tmall fullinfo": tmall.fullinfo_response(t),
        "tmall tmc trade": tmall.tmc_message(t, "taobao_trade_TradeSellerShip", 1, t.lines[0]),
        "tmall tmc refund": tmall.tmc_message(t, "taobao_refund_RefundCreated", 2, t.lines[0]),
        "jd order": jd.search_order(j),
        "jd search": jd.search_response([jd.search_order(j)]),
        "douyin detail": douyin.order_detail_response(d),
        "douyin push": douyin.push_message(d, "102", "m1"),
        "pdd order": pdd.order_information_response(p),
        "pdd frame": pdd.ws_frame(p, "pdd_trade_TradeSellerShip", 1),
    }
    return [(name, json.dumps(doc, ensure_ascii=False).encode()) for name, doc in docs.items()]


def _leaks(raw: bytes) -> list[str]:
    text = raw.decode()
    found = []
    for value in BUYER.personal_strings():
        escaped = json.dumps(value)[1:-1]  # \uXXXX form, and the form inside nested JSON strings
        if value in text or escaped in text or json.dumps(escaped)[1:-1] in text:
            found.append(value)
    return found


@pytest.mark.parametrize("name, raw", _all_payloads(), ids=[n for n, _ in _all_payloads()])
def test_no_personal_data_survives_redaction(name: str, raw: bytes) -> None:
    if name not in ("pdd frame", "douyin push"):  # these carry no PII to begin with
        assert _leaks(raw), "the builder should put buyer data in, or the test proves nothing"
    stripped = redact_payload(raw)
    assert _leaks(stripped) == []
    json.loads(stripped)  # still JSON


def test_buyer_free_text_and_masked_values_go_too() -> None:
    raw = json.dumps(douyin.order_detail_response(example_order("douyin", LineStatus.PAID)), ensure_ascii=False).encode()
    text = redact_payload(raw).decode()
    for key in ("buyer_words", "mask_post_tel", "mask_post_receiver", "encrypt_post_tel", "post_addr", "doudian_open_id", "user_id_info"):
        assert f'"{key}"' not in text


@pytest.mark.parametrize(
    "key",
    [
        "buyer_nick", "buyer_open_uid", "buyer_email", "buyer_message", "receiver_name", "receiver_mobile",
        "receiver_phone", "receiver_state", "receiver_city", "receiver_district", "receiver_address", "receiver_zip",
        "oaid", "pin", "open_id_buyer", "xid_buyer", "consigneeInfo", "orderRemark", "invoiceEasyInfo",
        "post_receiver", "post_tel", "post_addr", "mask_post_tel", "encrypt_post_receiver", "doudian_open_id",
        "buyer_words", "user_id_info", "receiver_name_mask", "address", "province", "city", "town",
        "buyer_memo", "id_card_num", "id_card_name", "user_nick", "telephone", "mobile", "email",
    ],
)
def test_personal_keys(key: str) -> None:
    assert is_personal_key(key)


@pytest.mark.parametrize(
    "key",
    [
        "tid", "tid_str", "oid", "num_iid", "sku_id", "outer_sku_id", "outer_iid", "num", "status", "modified",
        "consign_time", "refund_phase", "pub_time", "user_id", "topic", "content", "orderId", "orderState",
        "orderStartTime", "itemInfoList", "skuId", "outerSkuId", "wareId", "itemTotal", "venderId", "waybill",
        "tag", "msg_id", "data", "p_id", "s_ids", "s_id", "shop_id", "order_status", "update_time", "ship_time",
        "aftersale_type", "shop_order_detail", "sku_order_list", "order_id", "code", "out_sku_id", "product_id",
        "item_num", "commandType", "message", "mallID", "mall_id", "order_sn", "refund_status", "updated_at",
        "shipping_time", "item_list", "goods_id", "outer_id", "outer_goods_id", "goods_count", "id", "type",
    ],
)
def test_stock_keys_are_kept(key: str) -> None:
    assert not is_personal_key(key)


def test_strip_keeps_unrelated_strings_and_big_ints_exact() -> None:
    doc = {"tid": 3725362658812595205, "note": "{not json}", "list": [{"receiver_name": "x", "num": 1}]}
    assert strip_personal_data(doc) == {"tid": 3725362658812595205, "note": "{not json}", "list": [{"num": 1}]}
    raw = b'{"tid":3725362658812595205,"content":"{\\"buyer_nick\\":\\"a\\",\\"oid\\":3725362658812595206}"}'
    out = redact_payload(raw)
    assert b"3725362658812595205" in out and b"3725362658812595206" in out and b"buyer_nick" not in out


def test_redact_leaves_clean_payloads_byte_identical() -> None:
    raw = b'{ "tag": "101",  "msg_id": "1" }'
    assert redact_payload(raw) == raw


def test_redact_refuses_what_it_cannot_inspect() -> None:
    for bad in (b"\xff", b"{", b"[" * 100_000):
        with pytest.raises(ValueError):
            redact_payload(bad)


def test_raw_record() -> None:
    order = example_order("tmall", LineStatus.PAID)
    payload = json.dumps(tmall.fullinfo_response(order), ensure_ascii=False).encode()
    rec = raw_record(platform="tmall", shop="s1", kind="fullinfo", key=order.order_id, payload=payload,
                     received_at_ms=1731254400123, message_id="m-1")
    assert rec.key == order.order_id
    assert _leaks(rec.value) == []
    assert rec.headers == {
        RawHeader.PLATFORM: "tmall", RawHeader.SHOP: "s1", RawHeader.KIND: "fullinfo",
        RawHeader.RECEIVED_AT: "1731254400123", RawHeader.MESSAGE_ID: "m-1",
    }
    assert ("kind", b"fullinfo") in rec.kafka_headers()
    # what the raw topic holds parses with the headers it carries
    assert tmall.parse(rec.value, rec.headers)[0].shop_id == "s1"  # type: ignore[index]


def test_header_reader_tolerates_bytes_and_junk() -> None:
    assert base.header({"kind": b"tmc"}, "kind") == "tmc"
    assert base.header({"kind": b"\xff"}, "kind") is None
    assert base.header({"kind": 5}, "kind") is None
    assert base.header(None, "kind") is None
    assert base.header(["kind"], "kind") is None
    assert tmall.parse(b"{}", ["junk"]).reason_code == base.WRONG_SHAPE  # type: ignore[arg-type,union-attr]


def test_time_helpers() -> None:
    assert base.gmt8_ms("2024-11-11 00:00:00", "t") == 1731254400000
    assert base.gmt8_ms("2021-05-07 09:20:39.683", "t") == 1620350439683
    assert base.format_gmt8(1731254400000) == "2024-11-11 00:00:00"
    assert base.format_gmt8(1620350439683, millis=True) == "2021-05-07 09:20:39.683"
    assert base.unix_s_ms("1731254400", "t") == 1731254400000
    for bad in ("2024-11-11T00:00:00", "2024-11-11 24:00:00", " 2024-11-11 00:00:00", "1999-12-31 23:59:59"):
        with pytest.raises(base.RejectError):
            base.gmt8_ms(bad, "t")


def test_id_reader() -> None:
    assert base.id_str(3725362658812595205, "x") == "3725362658812595205"
    assert base.id_str("241111-339507978993455", "x") == "241111-339507978993455"
    for bad in (True, 1.0, -1, "", " 1", "a\nb", "x" * 129, None, [1]):
        with pytest.raises(base.RejectError):
            base.id_str(bad, "x")


def test_registry() -> None:
    assert PLATFORMS == TOPIC_PLATFORMS
    for platform in PLATFORMS:
        connector = get_connector(platform)
        assert connector.platform == platform
        assert callable(connector.parse) and callable(connector.sign)
    with pytest.raises(KeyError):
        get_connector("amazon")


def test_parse_never_raises_on_non_bytes() -> None:
    for platform in PLATFORMS:
        for junk in (None, "text", 12, object()):
            outcome = get_connector(platform).parse(junk)  # type: ignore[arg-type]
            assert isinstance(outcome, base.Rejected) and outcome.reason_code == base.WRONG_TYPE
