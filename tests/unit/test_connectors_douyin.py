"""Douyin: push messages and order.orderDetail responses -> canonical updates."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from connectors import base, douyin
from connectors.base import Rejected, redact_payload, status_line
from connectors.simulated import SimOrder, example_order
from stockstream.core.model import LineStatus, LineUpdate, OrderUpdate

SHOP = "4463798"
DETAIL = {"kind": "detail", "shop": SHOP}
PUSH = {"kind": "push"}


def dumps(doc: object) -> bytes:
    return json.dumps(doc, ensure_ascii=False).encode()


def expected_detail(order: SimOrder) -> OrderUpdate:
    lines = tuple(
        LineUpdate(
            line_id=line.line_id,
            platform_sku_id=line.sku_id,
            merchant_code=line.merchant_code,
            quantity=line.quantity,
            status=order.line_status(line),
            shipped=order.line_shipped(line),
            listing_id=line.listing_id,
            shipped_ms=order.shipped_ms if order.line_shipped(line) else None,  # consign / ship time
        )
        for line in order.lines
    )
    return OrderUpdate("douyin", SHOP, order.order_id, order.modified_ms, lines, snapshot=True)


def only(outcome: object) -> OrderUpdate:
    assert isinstance(outcome, tuple) and len(outcome) == 1, outcome
    return outcome[0]


def rejected(outcome: object, code: str) -> Rejected:
    assert isinstance(outcome, Rejected), outcome
    assert outcome.reason_code == code, outcome
    return outcome


ORDERS = [
    example_order("douyin", LineStatus.CREATED),
    example_order("douyin", LineStatus.PAID),
    example_order("douyin", LineStatus.SHIPPED),
    example_order("douyin", LineStatus.FINISHED),
    example_order("douyin", LineStatus.CLOSED, paid=False),
    example_order("douyin", LineStatus.CLOSED, shipped=True),
]


@pytest.mark.parametrize("order", ORDERS, ids=lambda o: f"{o.status.name}-shipped{o.any_shipped}")
def test_detail_round_trip(order: SimOrder) -> None:
    payload = dumps(douyin.order_detail_response(order))
    assert douyin.parse(payload, DETAIL) == (expected_detail(order),)
    assert douyin.parse(redact_payload(payload), DETAIL) == (expected_detail(order),)


def test_detail_part_shipped() -> None:
    order = example_order("douyin", LineStatus.SHIPPED)
    order = replace(order, lines=(order.lines[0], replace(order.lines[1], status=LineStatus.PAID, shipped=False)))
    doc = douyin.order_detail_response(order)
    assert doc["data"]["shop_order_detail"]["order_status"] == 101
    assert douyin.parse(dumps(doc), DETAIL) == (expected_detail(order),)


@pytest.mark.parametrize(
    "code, status",
    [(1, LineStatus.CREATED), (105, LineStatus.PAID), (2, LineStatus.PAID), (101, LineStatus.SHIPPED),
     (3, LineStatus.SHIPPED), (4, LineStatus.CLOSED), (5, LineStatus.FINISHED)],
)
def test_order_status_codes(code: int, status: LineStatus) -> None:
    doc = douyin.order_detail_response(example_order("douyin", LineStatus.PAID))
    detail = doc["data"]["shop_order_detail"]
    detail["order_status"] = code
    for sku_order in detail["sku_order_list"]:
        del sku_order["order_status"]  # the parent's status applies
    assert {l.status for l in only(douyin.parse(dumps(doc), DETAIL)).lines} == {status}


def test_detail_big_ids_and_shop_from_payload() -> None:
    doc = douyin.order_detail_response(example_order("douyin", LineStatus.PAID))
    raw = dumps(doc)
    assert b'"product_id": 3539925204033339668' in raw  # a JSON number beyond 2**53
    update = only(douyin.parse(raw, {"kind": "detail"}))
    assert update.shop_id == SHOP
    assert update.lines[0].listing_id == "3539925204033339668"
    assert update.lines[0].platform_sku_id == "1750000000000000001"


def test_detail_without_child_ids_is_keyed_by_sku() -> None:
    order = example_order("douyin", LineStatus.PAID)
    doc = douyin.order_detail_response(order)
    for sku_order in doc["data"]["shop_order_detail"]["sku_order_list"]:
        del sku_order["order_id"]
    update = only(douyin.parse(dumps(doc), DETAIL))
    assert [l.line_id for l in update.lines] == [l.sku_id for l in order.lines]


def test_detail_out_sku_id_is_the_fallback_merchant_code() -> None:
    doc = douyin.order_detail_response(example_order("douyin", LineStatus.PAID))
    sku_order = doc["data"]["shop_order_detail"]["sku_order_list"][0]
    sku_order.update(code="", out_sku_id="OUT-9")
    assert only(douyin.parse(dumps(doc), DETAIL)).lines[0].merchant_code == "OUT-9"


# -- push ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "tag, order, status, shipped",
    [
        ("100", example_order("douyin", LineStatus.CREATED), LineStatus.CREATED, False),
        ("101", example_order("douyin", LineStatus.PAID), LineStatus.PAID, False),
        ("102", example_order("douyin", LineStatus.SHIPPED), LineStatus.SHIPPED, True),
        ("103", example_order("douyin", LineStatus.FINISHED), LineStatus.FINISHED, True),
        ("108", example_order("douyin", LineStatus.SHIPPED), LineStatus.SHIPPED, True),
    ],
)
def test_push_trade_tags(tag: str, order: SimOrder, status: LineStatus, shipped: bool) -> None:
    msg = douyin.push_message(order, tag, "7000000000000000001")
    expected = OrderUpdate(
        "douyin",
        SHOP,
        order.order_id,
        order.modified_ms,
        tuple(status_line(line.line_id, status, shipped) for line in order.lines),
        message_id="7000000000000000001",
    )
    assert douyin.parse(dumps(msg), PUSH) == (expected,)
    assert douyin.parse(redact_payload(dumps(msg)), PUSH) == (expected,)


@pytest.mark.parametrize("shipped", [False, True])
def test_push_refund_success_closes_one_sub_order(shipped: bool) -> None:
    order = example_order("douyin", LineStatus.SHIPPED if shipped else LineStatus.PAID)
    msg = douyin.push_message(order, "206", "m1", [order.lines[1]])
    update = only(douyin.parse(dumps(msg), PUSH))
    assert update.lines == (status_line(order.lines[1].line_id, LineStatus.CLOSED, shipped),)


@pytest.mark.parametrize("shipped", [False, True])
def test_push_cancelled_leaves_the_close_to_the_order_detail(shipped: bool) -> None:
    # "106" comes for a close before shipment and after it alike, without a ship time: read as a
    # release, one pushed ahead of its "102" lost the shipment. The detail fetched on it decides.
    order = example_order("douyin", LineStatus.CLOSED, paid=True, shipped=shipped)
    assert douyin.parse(dumps(douyin.push_message(order, "106", "m1")), PUSH) == ()
    detail = only(douyin.parse(dumps(douyin.order_detail_response(order)), DETAIL))
    assert {(line.status, line.shipped) for line in detail.lines} == {(LineStatus.CLOSED, shipped)}


@pytest.mark.parametrize("tag", ["200", "201", "207"])
def test_push_refund_steps_without_stock_meaning(tag: str) -> None:
    order = example_order("douyin", LineStatus.PAID)
    assert douyin.parse(dumps(douyin.push_message(order, tag, "m1", [order.lines[0]])), PUSH) == ()


def test_push_body_array_and_event_sign() -> None:
    order = example_order("douyin", LineStatus.PAID)
    body = douyin.push_body([douyin.push_message(order, "100", "m1"), douyin.push_message(order, "101", "m2")])
    assert douyin.verify_event_sign("ddkey", body, "ddsecret", douyin.event_sign("ddkey", body, "ddsecret"))
    updates = douyin.parse(body, {})  # recognised as push without kind
    assert isinstance(updates, tuple) and [u.message_id for u in updates] == ["m1", "m2"]
    rejected(douyin.parse(b"[]", PUSH), base.WRONG_SHAPE)
    bad = json.loads(body)
    bad[1]["tag"] = "999"
    rejected(douyin.parse(dumps(bad), PUSH), base.UNKNOWN_STATUS)


def test_push_big_p_id_stays_exact() -> None:
    raw = (
        b'{"tag":"101","msg_id":"7000000000000000001","data":"{\\"p_id\\":6920000000000000123,'
        b'\\"s_ids\\":[6920000000000000124],\\"shop_id\\":4463798,\\"order_status\\":2,\\"pay_time\\":1731254460}"}'
    )
    update = only(douyin.parse(raw, PUSH))
    assert update.order_id == "6920000000000000123"
    assert update.lines[0].line_id == "6920000000000000124"
    assert update.modified_ms == 1731254460000


def test_push_without_sub_ids_applies_to_whole_order() -> None:
    order = example_order("douyin", LineStatus.PAID)
    msg = douyin.push_message(order, "101", "m1")
    data = json.loads(msg["data"])
    del data["s_ids"]
    msg["data"] = json.dumps(data)
    update = only(douyin.parse(dumps(msg), PUSH))
    assert update.lines == () and (update.status, update.shipped) == (LineStatus.PAID, False)


def test_push_rejections() -> None:
    order = example_order("douyin", LineStatus.PAID)
    good = douyin.push_message(order, "101", "m1")
    data = json.loads(good["data"])

    def with_data(**changes: object) -> bytes:
        return dumps(dict(good, data=json.dumps({**data, **changes})))

    rejected(douyin.parse(dumps(dict(good, tag="104")), PUSH), base.UNKNOWN_STATUS)
    rejected(douyin.parse(dumps(dict(good, tag=None)), PUSH), base.MISSING_FIELD)
    rejected(douyin.parse(dumps(dict(good, tag=[101])), PUSH), base.WRONG_TYPE)
    rejected(douyin.parse(dumps(dict(good, data="{")), PUSH), base.BAD_JSON)
    rejected(douyin.parse(dumps(dict(good, msg_id="")), PUSH), base.MISSING_FIELD)
    rejected(douyin.parse(with_data(p_id=None), PUSH), base.MISSING_FIELD)
    rejected(douyin.parse(with_data(p_id=-1), PUSH), base.BAD_ID)
    rejected(douyin.parse(with_data(s_ids="1,2"), PUSH), base.WRONG_SHAPE)
    rejected(douyin.parse(with_data(s_ids=[1, 1]), PUSH), base.DUPLICATE_LINE)
    rejected(douyin.parse(with_data(pay_time=None, create_time=None), PUSH), base.MISSING_FIELD)
    rejected(douyin.parse(with_data(pay_time=-5), PUSH), base.BAD_TIME)
    rejected(douyin.parse(with_data(pay_time="soon"), PUSH), base.BAD_TIME)
    rejected(douyin.parse(with_data(shop_id=None), PUSH), base.MISSING_SHOP)
    refund = douyin.push_message(order, "206", "m2", [order.lines[0]])
    refund_data = json.loads(refund["data"])
    del refund_data["s_id"]
    rejected(douyin.parse(dumps(dict(refund, data=json.dumps(refund_data))), PUSH), base.MISSING_FIELD)


@pytest.mark.parametrize(
    "mutate, code",
    [
        (lambda d: d.update(order_status=7), base.UNKNOWN_STATUS),
        (lambda d: d.update(order_status="paid"), base.WRONG_TYPE),
        (lambda d: d.update(update_time="2024-11-11 00:00:00"), base.BAD_TIME),
        (lambda d: d.pop("order_id"), base.MISSING_FIELD),
        (lambda d: d.update(sku_order_list=[]), base.WRONG_SHAPE),
        (lambda d: d["sku_order_list"][0].update(item_num=0), base.BAD_QUANTITY),
        (lambda d: d["sku_order_list"][0].update(item_num=-4), base.BAD_QUANTITY),
        (lambda d: d["sku_order_list"][0].update(item_num=True), base.BAD_QUANTITY),
        (lambda d: d["sku_order_list"][0].update(order_status=42), base.UNKNOWN_STATUS),
        (lambda d: d["sku_order_list"][1].update(order_id=d["sku_order_list"][0]["order_id"]), base.DUPLICATE_LINE),
        (lambda d: d["sku_order_list"][0].pop("sku_id"), base.MISSING_FIELD),
    ],
)
def test_detail_rejections(mutate, code: str) -> None:  # type: ignore[no-untyped-def]
    doc = douyin.order_detail_response(example_order("douyin", LineStatus.PAID))
    mutate(doc["data"]["shop_order_detail"])
    rejected(douyin.parse(dumps(doc), DETAIL), code)


def test_detail_error_responses() -> None:
    err = douyin.error_response(50002, "系统繁忙", "isp.service-busy", "系统繁忙，请稍后再试")
    rejected(douyin.parse(dumps(err), DETAIL), base.PLATFORM_ERROR)
    rejected(douyin.parse(dumps(err), {}), base.PLATFORM_ERROR)
    rejected(douyin.parse(dumps({"code": 10000, "data": []}), DETAIL), base.WRONG_SHAPE)


def test_ship_time_dates_the_shipment() -> None:
    order = example_order("douyin", LineStatus.SHIPPED)
    doc = douyin.order_detail_response(order)
    detail = doc["data"]["shop_order_detail"]
    assert [l.shipped_ms for l in only(douyin.parse(dumps(doc), DETAIL)).lines] == [order.shipped_ms] * 2
    # without a per-sku ship_time, the order's (its first shipment) dates a one-line order only
    for sku_order in detail["sku_order_list"]:
        del sku_order["ship_time"]
    assert [l.shipped_ms for l in only(douyin.parse(dumps(doc), DETAIL)).lines] == [None, None]
    detail["sku_order_list"] = detail["sku_order_list"][:1]
    assert [l.shipped_ms for l in only(douyin.parse(dumps(doc), DETAIL)).lines] == [order.shipped_ms]
    # a push stating a ship time carries it
    msg = douyin.push_message(order, "102", "7000000000000000009")
    data = json.loads(msg["data"])
    data["ship_time"] = order.shipped_ms // 1000 - 60
    msg["data"] = json.dumps(data)
    assert {l.shipped_ms for l in only(douyin.parse(dumps(msg), PUSH)).lines} == {order.shipped_ms - 60_000}
    del data["s_ids"]
    msg["data"] = json.dumps(data)
    assert only(douyin.parse(dumps(msg), PUSH)).shipped_ms == order.shipped_ms - 60_000
