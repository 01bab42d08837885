"""JD: polled `jingdong.pop.order.search` orders -> canonical snapshots."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from connectors import base, jd
from connectors.base import Rejected, redact_payload
from connectors.simulated import SimOrder, example_order
from stockstream.core.model import LineStatus, LineUpdate, OrderUpdate

SHOP = "10086001"
ORDER = {"kind": "order", "shop": SHOP}


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
    return OrderUpdate("jd", SHOP, order.order_id, order.modified_ms, lines, snapshot=True)


def rejected(outcome: object, code: str) -> Rejected:
    assert isinstance(outcome, Rejected), outcome
    assert outcome.reason_code == code, outcome
    return outcome


ORDERS = [
    example_order("jd", LineStatus.PAID),
    example_order("jd", LineStatus.SHIPPED),
    example_order("jd", LineStatus.FINISHED),
    example_order("jd", LineStatus.CLOSED),
    example_order("jd", LineStatus.CLOSED, shipped=True),  # refused on delivery: has a waybill
]


@pytest.mark.parametrize("order", ORDERS, ids=lambda o: f"{o.status.name}-shipped{o.any_shipped}")
def test_order_round_trip(order: SimOrder) -> None:
    payload = dumps(jd.search_order(order))
    assert jd.parse(payload, ORDER) == (expected(order),)
    assert jd.parse(redact_payload(payload), ORDER) == (expected(order),)


@pytest.mark.parametrize(
    "state, status, shipped",
    [
        ("WAIT_SELLER_STOCK_OUT", LineStatus.PAID, False),
        ("WAIT_GOODS_RECEIVE_CONFIRM", LineStatus.SHIPPED, True),
        ("FINISHED_L", LineStatus.FINISHED, True),
        ("TRADE_CANCELED", LineStatus.CLOSED, False),
        # frozen pending a cancellation decision / held: units still owed, stay reserved
        ("LOCKED", LineStatus.PAID, False),
        ("PAUSE", LineStatus.PAID, False),
    ],
)
def test_state_table(state: str, status: LineStatus, shipped: bool) -> None:
    doc = jd.search_order(example_order("jd", LineStatus.PAID), state=state)
    (update,) = jd.parse(dumps(doc), ORDER)  # type: ignore[misc]
    assert {(l.status, l.shipped) for l in update.lines} == {(status, shipped)}


def test_search_response_gives_every_order_and_shop_from_vender_id() -> None:
    orders = [example_order("jd", LineStatus.PAID, seq=1), example_order("jd", LineStatus.SHIPPED, seq=2)]
    resp = jd.search_response([jd.search_order(o) for o in orders])
    assert jd.parse(dumps(resp), {"kind": "search"}) == tuple(expected(o) for o in orders)
    assert jd.parse(dumps(resp), {}) == tuple(expected(o) for o in orders)  # recognised without kind
    assert jd.parse(dumps(jd.search_response([])), {"kind": "search"}) == ()


def test_numbers_as_strings_or_numbers() -> None:
    doc = jd.search_order(example_order("jd", LineStatus.PAID))
    for item in doc["itemInfoList"]:
        item["skuId"] = int(item["skuId"])
        item["itemTotal"] = int(item["itemTotal"])
    doc["orderId"] = int(doc["orderId"])
    assert jd.parse(dumps(doc), ORDER) == (expected(example_order("jd", LineStatus.PAID)),)


def test_same_sku_twice_is_summed() -> None:
    order = example_order("jd", LineStatus.PAID)
    doc = jd.search_order(order)
    doc["itemInfoList"].append(dict(doc["itemInfoList"][0], itemTotal="3", jdPrice="0.00"))
    (update,) = jd.parse(dumps(doc), ORDER)  # type: ignore[misc]
    assert [(l.line_id, l.quantity) for l in update.lines] == [
        (order.lines[0].sku_id, order.lines[0].quantity + 3),
        (order.lines[1].sku_id, order.lines[1].quantity),
    ]


def test_modified_falls_back_to_order_start_time() -> None:
    order = example_order("jd", LineStatus.PAID)
    doc = jd.search_order(order)
    del doc["modified"]
    (update,) = jd.parse(dumps(doc), ORDER)  # type: ignore[misc]
    assert update.modified_ms == order.created_ms


def test_builders_refuse_what_jd_cannot_show() -> None:
    with pytest.raises(ValueError):
        jd.search_order(example_order("jd", LineStatus.CREATED))
    order = example_order("jd", LineStatus.PAID)
    mixed = replace(order, lines=(order.lines[0], replace(order.lines[1], status=LineStatus.CLOSED)))
    with pytest.raises(ValueError):
        jd.search_order(mixed)


@pytest.mark.parametrize(
    "mutate, code",
    [
        (lambda o: o.pop("orderId"), base.MISSING_FIELD),
        (lambda o: o.update(orderId=["1"]), base.WRONG_TYPE),
        (lambda o: o.update(orderState="WAIT_SELLER_DELIVERY_X"), base.UNKNOWN_STATUS),
        (lambda o: o.update(orderState=1), base.WRONG_TYPE),
        (lambda o: o.update(modified="yesterday"), base.BAD_TIME),
        (lambda o: o.update(itemInfoList=[]), base.WRONG_SHAPE),
        (lambda o: o.update(itemInfoList={"skuId": "1"}), base.WRONG_SHAPE),
        (lambda o: o["itemInfoList"][0].update(itemTotal="-1"), base.BAD_QUANTITY),
        (lambda o: o["itemInfoList"][0].update(itemTotal="0"), base.BAD_QUANTITY),
        (lambda o: o["itemInfoList"][0].update(itemTotal="1.5"), base.BAD_QUANTITY),
        (lambda o: o["itemInfoList"][0].update(itemTotal=None), base.MISSING_FIELD),
        (lambda o: o["itemInfoList"][0].pop("skuId"), base.MISSING_FIELD),
        (lambda o: o["itemInfoList"][0].update(outerSkuId={"a": 1}), base.WRONG_TYPE),
    ],
)
def test_rejections(mutate, code: str) -> None:  # type: ignore[no-untyped-def]
    doc = jd.search_order(example_order("jd", LineStatus.PAID))
    mutate(doc)
    rejected(jd.parse(dumps(doc), ORDER), code)


def test_error_shapes() -> None:
    rejected(jd.parse(dumps(jd.error_response("21", "签名无效", "invalid sign")), {"kind": "search"}), base.PLATFORM_ERROR)
    resp = jd.search_response([])
    resp[jd.SEARCH_RESPONSE_KEY]["searchorderinfo_result"]["apiResult"]["success"] = False
    rejected(jd.parse(dumps(resp), {"kind": "search"}), base.PLATFORM_ERROR)
    doc = jd.search_order(example_order("jd", LineStatus.PAID))
    del doc["venderId"]
    rejected(jd.parse(dumps(doc), {"kind": "order"}), base.MISSING_SHOP)
