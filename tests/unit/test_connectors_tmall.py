"""Taobao / Tmall: TMC messages and trade.fullinfo.get snapshots -> canonical updates."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from connectors import base, tmall
from connectors.base import Rejected, redact_payload
from connectors.simulated import SimOrder, example_order
from stockstream.core.model import LineStatus, LineUpdate, OrderUpdate

SHOP = "2200754211234"
FULLINFO = {"shop": SHOP, "kind": "fullinfo"}
TMC = {"kind": "tmc"}


def dumps(doc: object) -> bytes:
    return json.dumps(doc, ensure_ascii=False).encode()


def expected_snapshot(order: SimOrder) -> OrderUpdate:
    """The oracle, written from the SimOrder alone."""
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
    return OrderUpdate("tmall", SHOP, order.order_id, order.modified_ms, lines, snapshot=True)


def only(outcome: object) -> OrderUpdate:
    assert isinstance(outcome, tuple) and len(outcome) == 1, outcome
    return outcome[0]


def rejected(outcome: object, code: str) -> Rejected:
    assert isinstance(outcome, Rejected), outcome
    assert outcome.reason_code == code, outcome
    return outcome


ORDERS = [
    example_order("tmall", LineStatus.CREATED),
    example_order("tmall", LineStatus.PAID),
    example_order("tmall", LineStatus.SHIPPED),
    example_order("tmall", LineStatus.FINISHED),
    example_order("tmall", LineStatus.CLOSED, paid=False),
    example_order("tmall", LineStatus.CLOSED, paid=True, shipped=False),
    example_order("tmall", LineStatus.CLOSED, paid=True, shipped=True),
]


@pytest.mark.parametrize("order", ORDERS, ids=lambda o: f"{o.status.name}-paid{o.paid}-shipped{o.any_shipped}")
def test_fullinfo_round_trip(order: SimOrder) -> None:
    payload = dumps(tmall.fullinfo_response(order))
    assert tmall.parse(payload, FULLINFO) == (expected_snapshot(order),)
    # PII stripping keeps everything stock needs
    assert tmall.parse(redact_payload(payload), FULLINFO) == (expected_snapshot(order),)


def test_fullinfo_partial_shipment_and_partial_refund() -> None:
    order = example_order("tmall", LineStatus.SHIPPED, n_lines=3)
    order = replace(
        order,
        lines=(
            order.lines[0],
            replace(order.lines[1], status=LineStatus.PAID, shipped=False),
            replace(order.lines[2], status=LineStatus.CLOSED, shipped=False),
        ),
    )
    doc = tmall.fullinfo_response(order)
    assert doc["trade_fullinfo_get_response"]["trade"]["status"] == "SELLER_CONSIGNED_PART"
    update = only(tmall.parse(dumps(doc), FULLINFO))
    assert [(l.status, l.shipped) for l in update.lines] == [
        (LineStatus.SHIPPED, True),
        (LineStatus.PAID, False),
        (LineStatus.CLOSED, False),
    ]
    assert update == expected_snapshot(order)


def test_tid_beyond_2_53_stays_exact() -> None:
    raw = (
        b'{"trade_fullinfo_get_response":{"trade":{"tid":3725362658812595205,"status":"WAIT_SELLER_SEND_GOODS",'
        b'"modified":"2024-11-11 00:01:00","orders":{"order":[{"oid":3725362658812595206,"num_iid":681234567890,'
        b'"sku_id":"5012345678901","outer_sku_id":"MC-001","num":1,"status":"WAIT_SELLER_SEND_GOODS"}]}}}}'
    )
    update = only(tmall.parse(raw, FULLINFO))
    assert update.order_id == "3725362658812595205"
    assert update.lines[0].line_id == "3725362658812595206"
    assert int(float(3725362658812595205)) != 3725362658812595205  # what a float-based parser would give
    assert update.modified_ms == 1731254460000  # 00:01:00 Beijing = 16:01:00 UTC the day before


# Hand-written (not from the builder) to pin the status table.
def _fullinfo(status: str, line_status: str | None = None, consign: dict | None = None) -> bytes:
    order = {"oid": 2, "num_iid": 10, "sku_id": "20", "num": 1, **(consign or {})}
    if line_status:
        order["status"] = line_status
    trade = {"tid": "1", "status": status, "modified": "2024-11-11 12:00:00", "orders": {"order": [order]}}
    return dumps({"trade_fullinfo_get_response": {"trade": trade}})


@pytest.mark.parametrize(
    "status, expected, shipped",
    [
        ("WAIT_BUYER_PAY", LineStatus.CREATED, False),
        ("TRADE_NO_CREATE_PAY", LineStatus.CREATED, False),
        ("PAY_PENDING", LineStatus.CREATED, False),
        ("WAIT_SELLER_SEND_GOODS", LineStatus.PAID, False),
        ("SELLER_CONSIGNED_PART", LineStatus.SHIPPED, True),
        ("WAIT_BUYER_CONFIRM_GOODS", LineStatus.SHIPPED, True),
        ("TRADE_BUYER_SIGNED", LineStatus.SHIPPED, True),
        ("TRADE_FINISHED", LineStatus.FINISHED, True),
        ("TRADE_CLOSED", LineStatus.CLOSED, False),
        ("TRADE_CLOSED_BY_TAOBAO", LineStatus.CLOSED, False),
    ],
)
def test_status_table(status: str, expected: LineStatus, shipped: bool) -> None:
    line = only(tmall.parse(_fullinfo(status), FULLINFO)).lines[0]
    assert (line.status, line.shipped) == (expected, shipped)


def test_line_status_wins_over_trade_status() -> None:
    line = only(tmall.parse(_fullinfo("SELLER_CONSIGNED_PART", "WAIT_SELLER_SEND_GOODS"), FULLINFO)).lines[0]
    assert (line.status, line.shipped) == (LineStatus.PAID, False)


def test_closed_after_shipment_uses_consign_time() -> None:
    shipped = only(tmall.parse(_fullinfo("TRADE_CLOSED", consign={"consign_time": "2024-11-11 08:00:00"}), FULLINFO))
    assert shipped.lines[0].shipped is True
    blank = only(tmall.parse(_fullinfo("TRADE_CLOSED", consign={"consign_time": ""}), FULLINFO))
    assert blank.lines[0].shipped is False
    # closed before payment never shipped, whatever the payload claims
    # the trade's consign_time speaks for a single-line trade only
    doc = json.loads(_fullinfo("TRADE_CLOSED"))
    trade = doc["trade_fullinfo_get_response"]["trade"]
    trade["consign_time"] = "2024-11-11 08:00:00"
    assert only(tmall.parse(dumps(doc), FULLINFO)).lines[0].shipped is True
    trade["orders"]["order"].append(dict(trade["orders"]["order"][0], oid=3))
    assert [l.shipped for l in only(tmall.parse(dumps(doc), FULLINFO)).lines] == [False, False]
    by_taobao = only(tmall.parse(_fullinfo("TRADE_CLOSED_BY_TAOBAO", consign={"consign_time": "2024-11-11 08:00:00"}), FULLINFO))
    assert by_taobao.lines[0].shipped is False


def test_sku_less_item_uses_num_iid() -> None:
    raw = _fullinfo("WAIT_SELLER_SEND_GOODS").replace(b'"sku_id": "20"', b'"sku_id": ""')
    line = only(tmall.parse(raw, FULLINFO)).lines[0]
    assert line.platform_sku_id == "10" and line.listing_id == "10"


def test_bare_orders_list_is_accepted() -> None:
    doc = json.loads(_fullinfo("WAIT_SELLER_SEND_GOODS"))
    trade = doc["trade_fullinfo_get_response"]["trade"]
    trade["orders"] = trade["orders"]["order"]
    assert only(tmall.parse(dumps(doc), FULLINFO)).lines[0].status == LineStatus.PAID


# -- TMC ----------------------------------------------------------------------------------------


def _tmc_expected(order: SimOrder, line_index: int, status: LineStatus, shipped: bool, message_id: str) -> OrderUpdate:
    line = order.lines[line_index]
    return OrderUpdate(
        "tmall",
        order.shop_id,
        order.order_id,
        order.modified_ms,
        (
            LineUpdate(
                line.line_id, line.sku_id, line.merchant_code, line.quantity, status, shipped, line.listing_id,
                shipped_ms=order.shipped_ms if shipped else None,  # content.consign_time
            ),
        ),
        message_id=message_id,
    )


@pytest.mark.parametrize(
    "topic, order, status, shipped",
    [
        ("taobao_trade_TradeCreate", example_order("tmall", LineStatus.CREATED), LineStatus.CREATED, False),
        ("taobao_trade_TradeBuyerPay", example_order("tmall", LineStatus.PAID), LineStatus.PAID, False),
        ("taobao_trade_TradeSellerShip", example_order("tmall", LineStatus.SHIPPED), LineStatus.SHIPPED, True),
        ("taobao_trade_TradeSuccess", example_order("tmall", LineStatus.FINISHED), LineStatus.FINISHED, True),
        ("taobao_trade_TradeClose", example_order("tmall", LineStatus.CLOSED, paid=False), LineStatus.CLOSED, False),
        ("taobao_trade_TradeClose", example_order("tmall", LineStatus.CLOSED, shipped=True), LineStatus.CLOSED, True),
        ("taobao_trade_TradePartlyRefund", example_order("tmall", LineStatus.PAID), LineStatus.CLOSED, False),
        ("taobao_refund_RefundSuccess", example_order("tmall", LineStatus.PAID), LineStatus.CLOSED, False),
        ("taobao_refund_RefundSuccess", example_order("tmall", LineStatus.FINISHED), LineStatus.CLOSED, True),
    ],
)
def test_tmc_topics(topic: str, order: SimOrder, status: LineStatus, shipped: bool) -> None:
    msg = tmall.tmc_message(order, topic, 2215004180128620412, order.lines[1])
    got = tmall.parse(dumps(msg), TMC)
    assert got == (_tmc_expected(order, 1, status, shipped, "2215004180128620412"),)
    assert tmall.parse(redact_payload(dumps(msg)), TMC) == got


@pytest.mark.parametrize("topic", ["taobao_refund_RefundCreated", "taobao_refund_RefundClosed"])
def test_tmc_refund_request_topics_carry_no_stock_meaning(topic: str) -> None:
    order = example_order("tmall", LineStatus.PAID)
    assert tmall.parse(dumps(tmall.tmc_message(order, topic, 1, order.lines[0])), TMC) == ()


def test_tmc_real_shape_without_line_fields_is_a_status_change() -> None:
    # what TOP itself sends: no SKU, no quantity
    content = {
        "buyer_nick": "tb_zhangwei88",
        "payment": "199.00",
        "oid": 3725362658812595206,
        "tid": 3725362658812595205,
        "type": "guarantee_trade",
        "seller_nick": "官方旗舰店",
        "status": "WAIT_BUYER_CONFIRM_GOODS",
    }
    msg = {
        "id": 2215004180128620412,
        "topic": "taobao_trade_TradeSellerShip",
        "pub_time": "2024-11-11 01:00:00",
        "pub_app_key": "12345678",
        "user_id": 2200754211234,
        "user_nick": "官方旗舰店",
        "content": json.dumps(content, ensure_ascii=False),
    }
    update = only(tmall.parse(dumps(msg), {}))  # no headers: kind recognised, shop from user_id
    assert update.shop_id == "2200754211234"
    assert update.order_id == "3725362658812595205"
    assert update.modified_ms == 1731258000000
    assert update.message_id == "2215004180128620412"
    assert update.snapshot is False
    assert update.lines == (base.status_line("3725362658812595206", LineStatus.SHIPPED, True),)
    assert update.lines[0].platform_sku_id is None and update.lines[0].quantity is None


def test_tmc_without_oid_applies_to_whole_order() -> None:
    order = example_order("tmall", LineStatus.PAID)
    msg = tmall.tmc_message(order, "taobao_trade_TradeBuyerPay", 7)
    update = only(tmall.parse(dumps(msg), TMC))
    assert update.lines == () and (update.status, update.shipped) == (LineStatus.PAID, False)
    assert update == base.order_status_update("tmall", update.shop_id, order.order_id, update.modified_ms, LineStatus.PAID, False, update.message_id)


def test_tmc_refund_without_oid_is_rejected() -> None:
    order = example_order("tmall", LineStatus.PAID)
    msg = tmall.tmc_message(order, "taobao_refund_RefundSuccess", 7, order.lines[0])
    content = json.loads(msg["content"])
    del content["oid"]
    msg["content"] = json.dumps(content)
    rejected(tmall.parse(dumps(msg), TMC), base.MISSING_FIELD)


def test_tmc_status_missing_falls_back_to_topic() -> None:
    order = example_order("tmall", LineStatus.PAID)
    msg = tmall.tmc_message(order, "taobao_trade_TradeBuyerPay", 7, order.lines[0])
    content = json.loads(msg["content"])
    del content["status"], content["modified"]
    msg["content"] = json.dumps(content)
    update = only(tmall.parse(dumps(msg), TMC))
    assert update.lines[0].status == LineStatus.PAID
    assert update.modified_ms == order.modified_ms  # from pub_time


def test_shop_header_wins_over_user_id() -> None:
    order = example_order("tmall", LineStatus.PAID)
    msg = tmall.tmc_message(order, "taobao_trade_TradeBuyerPay", 7, order.lines[0])
    assert only(tmall.parse(dumps(msg), {"kind": "tmc", "shop": "flagship"})).shop_id == "flagship"


def test_tmc_content_as_object_is_accepted() -> None:
    order = example_order("tmall", LineStatus.PAID)
    msg = tmall.tmc_message(order, "taobao_trade_TradeBuyerPay", 7, order.lines[0])
    msg["content"] = json.loads(msg["content"])
    assert only(tmall.parse(dumps(msg), TMC)).lines[0].quantity == order.lines[0].quantity


# -- rejections ---------------------------------------------------------------------------------


def _mutated_fullinfo(mutate) -> bytes:  # type: ignore[no-untyped-def]
    doc = tmall.fullinfo_response(example_order("tmall", LineStatus.PAID))
    mutate(doc["trade_fullinfo_get_response"]["trade"])
    return dumps(doc)


@pytest.mark.parametrize(
    "mutate, code",
    [
        (lambda t: (t.pop("tid"), t.pop("tid_str")), base.MISSING_FIELD),
        (lambda t: t.update(tid=True, tid_str=None), base.WRONG_TYPE),
        (lambda t: t.update(tid=1.5e18, tid_str=None), base.WRONG_TYPE),
        (lambda t: t.update(status="WAIT_SOMETHING"), base.UNKNOWN_STATUS),
        (lambda t: t.update(status=5), base.WRONG_TYPE),
        (lambda t: t.update(modified="2024/11/11 00:00"), base.BAD_TIME),
        (lambda t: t.update(modified="2024-02-30 00:00:00"), base.BAD_TIME),
        (lambda t: t.update(modified="1970-01-01 08:00:00"), base.BAD_TIME),
        (lambda t: t["orders"]["order"][0].update(num=-1), base.BAD_QUANTITY),
        (lambda t: t["orders"]["order"][0].update(num=0), base.BAD_QUANTITY),
        (lambda t: t["orders"]["order"][0].update(num="two"), base.BAD_QUANTITY),
        (lambda t: t["orders"]["order"][0].update(num=1.5), base.BAD_QUANTITY),
        (lambda t: t["orders"]["order"][0].pop("oid"), base.MISSING_FIELD),
        (lambda t: t["orders"]["order"][0].update(oid="a b"), base.BAD_ID),
        (lambda t: t["orders"]["order"][0].update(oid=-3), base.BAD_ID),
        (lambda t: t["orders"]["order"][0].update(sku_id="", num_iid=None), base.MISSING_FIELD),
        (lambda t: t["orders"]["order"][0].update(status="NOPE"), base.UNKNOWN_STATUS),
        (lambda t: t["orders"]["order"].append(dict(t["orders"]["order"][0])), base.DUPLICATE_LINE),
        (lambda t: t.update(orders={"order": []}), base.WRONG_SHAPE),
        (lambda t: t.update(orders="x"), base.WRONG_SHAPE),
        (lambda t: t["orders"]["order"].__setitem__(0, "x"), base.WRONG_SHAPE),
    ],
)
def test_fullinfo_rejections(mutate, code: str) -> None:  # type: ignore[no-untyped-def]
    rejected(tmall.parse(_mutated_fullinfo(mutate), FULLINFO), code)


def test_other_rejections() -> None:
    rejected(tmall.parse(b"{not json", FULLINFO), base.BAD_JSON)
    rejected(tmall.parse(b"\xff\xfe", FULLINFO), base.BAD_ENCODING)
    rejected(tmall.parse(b"NaN", FULLINFO), base.BAD_JSON)
    rejected(tmall.parse(b"[]", FULLINFO), base.WRONG_SHAPE)
    rejected(tmall.parse(b"{}", {}), base.WRONG_SHAPE)  # no kind header, unrecognisable
    rejected(tmall.parse(b"{}", {"kind": "orders"}), base.UNKNOWN_KIND)
    rejected(tmall.parse("{}", FULLINFO), base.WRONG_TYPE)  # type: ignore[arg-type]
    rejected(tmall.parse(b"[" * 100_000, FULLINFO), base.BAD_JSON)
    error = dumps(tmall.error_response(7, "App Call Limited", "accesscontrol.limited-by-app-access-count", "This ban will last for 1 more seconds"))
    assert "accesscontrol" in rejected(tmall.parse(error, FULLINFO), base.PLATFORM_ERROR).reason
    fullinfo_without_shop = dumps(tmall.fullinfo_response(example_order("tmall")))
    rejected(tmall.parse(fullinfo_without_shop, {"kind": "fullinfo"}), base.MISSING_SHOP)


def test_tmc_rejections() -> None:
    order = example_order("tmall", LineStatus.PAID)
    good = tmall.tmc_message(order, "taobao_trade_TradeBuyerPay", 7, order.lines[0])
    rejected(tmall.parse(dumps(dict(good, topic="taobao_item_ItemAdd")), TMC), base.UNKNOWN_STATUS)
    rejected(tmall.parse(dumps(dict(good, content="{broken")), TMC), base.BAD_JSON)
    rejected(tmall.parse(dumps(dict(good, content="[1]")), TMC), base.WRONG_SHAPE)
    rejected(tmall.parse(dumps(dict(good, id=None)), TMC), base.MISSING_FIELD)
    no_shop = {k: v for k, v in good.items() if k != "user_id"}
    rejected(tmall.parse(dumps(no_shop), TMC), base.MISSING_SHOP)
    content = json.loads(good["content"])
    rejected(tmall.parse(dumps(dict(good, content=json.dumps(dict(content, num=-2)))), TMC), base.BAD_QUANTITY)
    rejected(tmall.parse(dumps(dict(good, content=json.dumps(dict(content, status="PAID")))), TMC), base.UNKNOWN_STATUS)


def test_consign_time_dates_the_shipment() -> None:
    """consign_time becomes `shipped_ms` (the SHIP movement's time): a sub-order's own, or the
    trade's for a one-line trade; an unreadable one is no reason to reject the snapshot."""
    eight = base.gmt8_ms("2024-11-11 08:00:00", "t")
    line = only(tmall.parse(_fullinfo("TRADE_FINISHED", consign={"consign_time": "2024-11-11 08:00:00"}), FULLINFO)).lines[0]
    assert (line.shipped, line.shipped_ms) == (True, eight)
    line = only(tmall.parse(_fullinfo("WAIT_SELLER_SEND_GOODS", consign={"consign_time": "2024-11-11 08:00:00"}), FULLINFO)).lines[0]
    assert (line.shipped, line.shipped_ms) == (False, None)  # no shipped evidence: not read
    line = only(tmall.parse(_fullinfo("TRADE_FINISHED", consign={"consign_time": "yesterday"}), FULLINFO)).lines[0]
    assert (line.shipped, line.shipped_ms) == (True, None)
    doc = json.loads(_fullinfo("TRADE_FINISHED"))
    trade = doc["trade_fullinfo_get_response"]["trade"]
    trade["consign_time"] = "2024-11-11 08:00:00"
    assert only(tmall.parse(dumps(doc), FULLINFO)).lines[0].shipped_ms == eight
    trade["orders"]["order"].append(dict(trade["orders"]["order"][0], oid=3))
    # the trade's consign_time is its first shipment: it does not date the sub-orders of a larger trade
    assert [l.shipped_ms for l in only(tmall.parse(dumps(doc), FULLINFO)).lines] == [None, None]


def test_tmc_consign_time_dates_the_sub_order_only() -> None:
    order = example_order("tmall", LineStatus.FINISHED)
    line_msg = only(tmall.parse(dumps(tmall.tmc_message(order, "taobao_trade_TradeSuccess", 1, order.lines[0])), TMC))
    assert line_msg.lines[0].shipped_ms == order.shipped_ms
    trade_msg = only(tmall.parse(dumps(tmall.tmc_message(order, "taobao_trade_TradeSuccess", 2)), TMC))
    assert trade_msg.lines == () and trade_msg.shipped_ms is None


@pytest.mark.parametrize("shipped", [False, True])
def test_tmc_close_that_cannot_tell_whether_goods_left_leaves_it_to_the_fullinfo(shipped: bool) -> None:
    # TRADE_CLOSED covers refunds before and after shipment. Without a consign time or line
    # fields the message cannot say which: read as a release, one delivered ahead of its
    # TradeSellerShip lost the shipment. The fullinfo fetched for it decides.
    order = example_order("tmall", LineStatus.CLOSED, paid=True, shipped=shipped)
    trade_level = tmall.tmc_message(order, "taobao_trade_TradeClose", 7)
    assert tmall.parse(dumps(trade_level), TMC) == ()
    line_level = tmall.tmc_message(order, "taobao_trade_TradeClose", 8, order.lines[0], with_line_fields=False)
    content = json.loads(line_level["content"])
    content.pop("consign_time", None)
    line_level["content"] = json.dumps(content)
    assert tmall.parse(dumps(line_level), TMC) == ()
    snapshot = only(tmall.parse(dumps(tmall.fullinfo_response(order)), FULLINFO))
    assert {(line.status, line.shipped) for line in snapshot.lines} == {(LineStatus.CLOSED, shipped)}


def test_tmc_close_before_payment_or_with_consign_time_says_it_itself() -> None:
    unpaid = example_order("tmall", LineStatus.CLOSED, paid=False)
    update = only(tmall.parse(dumps(tmall.tmc_message(unpaid, "taobao_trade_TradeClose", 7)), TMC))
    assert (update.status, update.shipped) == (LineStatus.CLOSED, False)  # TRADE_CLOSED_BY_TAOBAO
    shipped = example_order("tmall", LineStatus.CLOSED, paid=True, shipped=True)
    message = tmall.tmc_message(shipped, "taobao_trade_TradeClose", 8, shipped.lines[0], with_line_fields=False)
    (line,) = only(tmall.parse(dumps(message), TMC)).lines
    assert (line.status, line.shipped) == (LineStatus.CLOSED, True)  # its consign time
