"""Pinduoduo: WebSocket frames and pdd.order.information.get responses -> canonical updates."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from connectors import base, pdd
from connectors.base import Rejected, redact_payload, order_status_update
from connectors.simulated import SimOrder, example_order
from stockstream.core.model import LineStatus, LineUpdate, OrderUpdate

SHOP = "987654321"
ORDER = {"kind": "order", "shop": SHOP}
FRAME = {"kind": "frame"}


def dumps(doc: object) -> bytes:
    return json.dumps(doc, ensure_ascii=False).encode()


def expected(order: SimOrder) -> OrderUpdate:
    lines = tuple(
        LineUpdate(
            line_id=line.sku_id,
            platform_sku_id=line.sku_id,
            merchant_code=line.merchant_code,
            quantity=line.quantity,
            status=order.status,
            shipped=order.line_shipped(line),
            listing_id=line.listing_id,
        )
        for line in order.lines
    )
    # shipping_time: one shipment per order, for every line
    shipped_ms = order.shipped_ms if order.any_shipped else None
    return OrderUpdate("pdd", SHOP, order.order_id, order.modified_ms, lines, snapshot=True, shipped_ms=shipped_ms)


def only(outcome: object) -> OrderUpdate:
    assert isinstance(outcome, tuple) and len(outcome) == 1, outcome
    return outcome[0]


def rejected(outcome: object, code: str) -> Rejected:
    assert isinstance(outcome, Rejected), outcome
    assert outcome.reason_code == code, outcome
    return outcome


ORDERS = [
    example_order("pdd", LineStatus.PAID),
    example_order("pdd", LineStatus.SHIPPED),
    example_order("pdd", LineStatus.FINISHED),
    example_order("pdd", LineStatus.CLOSED),
    example_order("pdd", LineStatus.CLOSED, shipped=True),
]


@pytest.mark.parametrize("order", ORDERS, ids=lambda o: f"{o.status.name}-shipped{o.any_shipped}")
def test_order_info_round_trip(order: SimOrder) -> None:
    payload = dumps(pdd.order_information_response(order))
    assert pdd.parse(payload, ORDER) == (expected(order),)
    assert pdd.parse(redact_payload(payload), ORDER) == (expected(order),)


@pytest.mark.parametrize(
    "order_status, refund_status, status, shipped",
    [
        (1, 1, LineStatus.PAID, False),
        (2, 1, LineStatus.SHIPPED, True),
        (3, 1, LineStatus.FINISHED, True),
        # after-sale under way / refunding: the sale still stands, stock stays committed
        (1, 2, LineStatus.PAID, False),
        (1, 3, LineStatus.PAID, False),
        (2, 2, LineStatus.SHIPPED, True),
        (3, 3, LineStatus.FINISHED, True),
        # refunded: closed; shipped if it had left
        (1, 4, LineStatus.CLOSED, False),
        (2, 4, LineStatus.CLOSED, True),
        (3, 4, LineStatus.CLOSED, True),
    ],
)
def test_status_combinations(order_status: int, refund_status: int, status: LineStatus, shipped: bool) -> None:
    doc = pdd.order_information_response(example_order("pdd", LineStatus.PAID))
    info = doc["order_info_get_response"]["order_info"]
    info.update(order_status=order_status, refund_status=refund_status)
    assert {(l.status, l.shipped) for l in only(pdd.parse(dumps(doc), ORDER)).lines} == {(status, shipped)}


def test_refunded_before_ship_status_but_with_shipping_time_counts_as_shipped() -> None:
    doc = pdd.order_information_response(example_order("pdd", LineStatus.PAID))
    doc["order_info_get_response"]["order_info"].update(refund_status=4, shipping_time="2024-11-11 09:00:00")
    assert only(pdd.parse(dumps(doc), ORDER)).lines[0].shipped is True


def test_updated_at_as_unix_seconds() -> None:
    order = example_order("pdd", LineStatus.PAID)
    doc = pdd.order_information_response(order)
    doc["order_info_get_response"]["order_info"]["updated_at"] = order.modified_ms // 1000
    assert only(pdd.parse(dumps(doc), ORDER)).modified_ms == order.modified_ms


def test_goods_level_merchant_code_fallback_and_sku_merge() -> None:
    order = example_order("pdd", LineStatus.PAID)
    doc = pdd.order_information_response(order)
    items = doc["order_info_get_response"]["order_info"]["item_list"]
    items[0].update(outer_id="", outer_goods_id="GOODS-1")
    items.append(dict(items[1], goods_count=5))
    update = only(pdd.parse(dumps(doc), ORDER))
    assert update.lines[0].merchant_code == "GOODS-1"
    assert update.lines[1].quantity == order.lines[1].quantity + 5


def test_builders_refuse_what_pdd_cannot_show() -> None:
    with pytest.raises(ValueError):
        pdd.order_information_response(example_order("pdd", LineStatus.CREATED))
    order = example_order("pdd", LineStatus.PAID)
    with pytest.raises(ValueError):
        pdd.order_information_response(replace(order, lines=(order.lines[0], replace(order.lines[1], status=LineStatus.SHIPPED))))


# -- frames -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "message_type, status, shipped",
    [
        ("pdd_trade_TradeConfirmed", LineStatus.PAID, False),
        ("pdd_trade_TradeSellerShip", LineStatus.SHIPPED, True),
        ("pdd_trade_TradeSuccess", LineStatus.FINISHED, True),
    ],
)
def test_trade_frames(message_type: str, status: LineStatus, shipped: bool) -> None:
    order = example_order("pdd", status)
    frame = pdd.ws_frame(order, message_type, 1001)
    update = order_status_update("pdd", SHOP, order.order_id, order.modified_ms, status, shipped, "1001")
    assert pdd.parse(dumps(frame), FRAME) == (update,)
    assert pdd.parse(dumps(frame), {}) == (update,)  # recognised without kind, shop from mallID
    assert pdd.parse(redact_payload(dumps(frame)), FRAME) == (update,)


@pytest.mark.parametrize("message_type", ["pdd_refund_RefundCreated", "pdd_refund_RefundAgreeAgreement", "pdd_refund_RefundClosed"])
def test_refund_frames_are_notifications_only(message_type: str) -> None:
    order = example_order("pdd", LineStatus.PAID)
    assert pdd.parse(dumps(pdd.ws_frame(order, message_type, 1002)), FRAME) == ()


def test_frame_time_in_seconds_is_recognised() -> None:
    order = example_order("pdd", LineStatus.PAID)
    frame = pdd.ws_frame(order, "pdd_trade_TradeConfirmed", 1, time_ms=order.modified_ms)
    frame["time"] = order.modified_ms // 1000
    assert only(pdd.parse(dumps(frame), FRAME)).modified_ms == order.modified_ms


def test_frame_rejections() -> None:
    order = example_order("pdd", LineStatus.PAID)
    good = pdd.ws_frame(order, "pdd_trade_TradeConfirmed", 1)
    rejected(pdd.parse(dumps(pdd.ack_frame(1, order.modified_ms)), FRAME), base.WRONG_SHAPE)
    rejected(pdd.parse(dumps(dict(good, commandType="Heartbeat")), FRAME), base.WRONG_SHAPE)
    rejected(pdd.parse(dumps(dict(good, message={**good["message"], "type": "pdd_chat_Msg"})), FRAME), base.UNKNOWN_STATUS)
    rejected(pdd.parse(dumps(dict(good, message={**good["message"], "content": "{}"})), FRAME), base.MISSING_FIELD)
    rejected(pdd.parse(dumps(dict(good, message={**good["message"], "content": "tid=1"})), FRAME), base.BAD_JSON)
    rejected(pdd.parse(dumps(dict(good, message="x")), FRAME), base.WRONG_SHAPE)
    rejected(pdd.parse(dumps(dict(good, time="now", sendTime=None)), FRAME), base.BAD_TIME)
    rejected(pdd.parse(dumps(dict(good, time=10**15)), FRAME), base.BAD_TIME)
    no_mall = dict(good, message={**good["message"], "mallID": None, "content": json.dumps({"tid": order.order_id})})
    rejected(pdd.parse(dumps(no_mall), FRAME), base.MISSING_SHOP)


@pytest.mark.parametrize(
    "mutate, code",
    [
        (lambda i: i.update(order_status=4), base.UNKNOWN_STATUS),
        (lambda i: i.update(refund_status=0), base.UNKNOWN_STATUS),
        (lambda i: i.update(order_status=None), base.MISSING_FIELD),
        (lambda i: i.update(refund_status="refunded"), base.WRONG_TYPE),
        (lambda i: i.update(order_sn=""), base.MISSING_FIELD),
        (lambda i: i.update(updated_at="11/11/2024"), base.BAD_TIME),
        (lambda i: i.update(item_list=[]), base.WRONG_SHAPE),
        (lambda i: i["item_list"][0].update(goods_count=0), base.BAD_QUANTITY),
        (lambda i: i["item_list"][0].update(goods_count=-1), base.BAD_QUANTITY),
        (lambda i: i["item_list"][0].update(goods_count="1e3"), base.BAD_QUANTITY),
        (lambda i: i["item_list"][0].update(sku_id=None), base.MISSING_FIELD),
        (lambda i: i["item_list"][0].update(sku_id=1.0), base.WRONG_TYPE),
    ],
)
def test_order_rejections(mutate, code: str) -> None:  # type: ignore[no-untyped-def]
    doc = pdd.order_information_response(example_order("pdd", LineStatus.PAID))
    mutate(doc["order_info_get_response"]["order_info"])
    rejected(pdd.parse(dumps(doc), ORDER), code)


def test_error_response_and_missing_shop() -> None:
    err = pdd.error_response(52101, "当前接口您已被限流，请稍后重试", "52101", "限流")
    rejected(pdd.parse(dumps(err), ORDER), base.PLATFORM_ERROR)
    rejected(pdd.parse(dumps(pdd.order_information_response(example_order("pdd"))), {"kind": "order"}), base.MISSING_SHOP)


def test_shipping_time_dates_the_shipment_of_every_line() -> None:
    order = example_order("pdd", LineStatus.FINISHED)
    update = only(pdd.parse(dumps(pdd.order_information_response(order)), ORDER))
    assert update.shipped_ms == order.shipped_ms and {l.shipped_ms for l in update.lines} == {None}
    doc = pdd.order_information_response(order)
    doc["order_info_get_response"]["order_info"]["shipping_time"] = "soon"
    assert only(pdd.parse(dumps(doc), ORDER)).shipped_ms is None  # unreadable: the snapshot's time dates it
    frame = only(pdd.parse(dumps(pdd.ws_frame(order, "pdd_trade_TradeSuccess", 7)), FRAME))
    assert frame.shipped and frame.shipped_ms is None  # frames state no ship time
