"""Taobao / Tmall (TOP API): signing, parsing, and payload builders for the simulator.

Raw-record kinds (`kind` header):
  tmc       one TMC message envelope {id, topic, pub_time, pub_app_key, user_id, user_nick,
            content (JSON string with tid, oid, status, ...; our simulator adds the line fields
            num_iid, sku_id, outer_sku_id, num, modified when it has them)}
  fullinfo  a `taobao.trade.fullinfo.get` response: a full snapshot of the trade

A TMC message concerns one sub-order (oid). Without line fields it is still a status change of
that line; SKU and quantity are then None. A message without oid is an order-level status
(`OrderUpdate.status`, no lines). Times are Beijing-time strings; `modified` wins over `pub_time`.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any, Mapping, Optional

from stockstream.core.model import LineStatus, LineUpdate, OrderUpdate

from connectors import base
from connectors.base import (
    MISSING_FIELD,
    PLATFORM_ERROR,
    UNKNOWN_STATUS,
    WRONG_SHAPE,
    WRONG_TYPE,
    RejectError,
)
from connectors.simulated import SimLine, SimOrder

PLATFORM = "tmall"
KIND_TMC = "tmc"
KIND_FULLINFO = "fullinfo"
KINDS = (KIND_TMC, KIND_FULLINFO)

# --------------------------------------------------------------------------------------------
# Signing


def sign(params: Mapping[str, Any], secret: str) -> str:
    """TOP signature: params sorted by key (except `sign`), key+value concatenated.
    md5: UPPER(HEX(MD5(secret + concat + secret))); hmac: UPPER(HEX(HMAC_MD5(secret, concat))).
    None values are not sent and so not signed; empty strings are signed as the reference says
    (the official SDKs skip them too, so callers should simply not send empty parameters)."""
    method = params.get("sign_method") or "md5"
    concat = "".join(f"{k}{v}" for k, v in sorted(params.items()) if k != "sign" and v is not None)
    if method == "md5":
        return hashlib.md5(f"{secret}{concat}{secret}".encode("utf-8")).hexdigest().upper()
    if method == "hmac":
        return hmac.new(secret.encode("utf-8"), concat.encode("utf-8"), hashlib.md5).hexdigest().upper()
    raise ValueError(f"unsupported TOP sign_method {method!r}")


def timestamp(epoch_ms: int) -> str:
    """TOP `timestamp`: yyyy-MM-dd HH:mm:ss in GMT+8 (10 minutes tolerance)."""
    return base.format_gmt8(epoch_ms)


# --------------------------------------------------------------------------------------------
# Status mapping

TRADE_STATUS: dict[str, LineStatus] = {
    "WAIT_BUYER_PAY": LineStatus.CREATED,
    # Two documented TOP states outside the reference, both before payment.
    "TRADE_NO_CREATE_PAY": LineStatus.CREATED,
    "PAY_PENDING": LineStatus.CREATED,
    "WAIT_SELLER_SEND_GOODS": LineStatus.PAID,
    # Trade-level "some sub-orders shipped": a message naming an oid under it is about a shipped
    # line; a sub-order's own status is never this value.
    "SELLER_CONSIGNED_PART": LineStatus.SHIPPED,
    "WAIT_BUYER_CONFIRM_GOODS": LineStatus.SHIPPED,
    "TRADE_BUYER_SIGNED": LineStatus.SHIPPED,  # documented TOP state: delivered, not confirmed
    "TRADE_FINISHED": LineStatus.FINISHED,
    "TRADE_CLOSED": LineStatus.CLOSED,  # refunded after payment: shipped or not, see _closed_shipped
    "TRADE_CLOSED_BY_TAOBAO": LineStatus.CLOSED,  # closed before payment: never shipped
}

# Topic -> (status when the content has none, line-specific). Line-specific topics close the
# named sub-order whatever the trade status says (the rest of the trade goes on).
# None: valid but no stock meaning (a refund request or its withdrawal does not move stock;
# the goods stay committed until the refund succeeds).
TOPICS: dict[str, Optional[tuple[LineStatus, bool]]] = {
    "taobao_trade_TradeCreate": (LineStatus.CREATED, False),
    "taobao_trade_TradeBuyerPay": (LineStatus.PAID, False),
    "taobao_trade_TradeSellerShip": (LineStatus.SHIPPED, False),
    "taobao_trade_TradeSuccess": (LineStatus.FINISHED, False),
    "taobao_trade_TradeClose": (LineStatus.CLOSED, False),
    "taobao_trade_TradePartlyRefund": (LineStatus.CLOSED, True),
    "taobao_refund_RefundSuccess": (LineStatus.CLOSED, True),
    "taobao_refund_RefundCreated": None,
    "taobao_refund_RefundClosed": None,
}


def _trade_status(value: Any, where: str) -> tuple[str, LineStatus]:
    if not isinstance(value, str):
        raise RejectError(WRONG_TYPE, f"{where}: status must be a string")
    status = TRADE_STATUS.get(value)
    if status is None:
        raise RejectError(UNKNOWN_STATUS, f"{where}: unknown Taobao status {value[:40]!r}")
    return value, status


def lacks_line_fields(content: Mapping[str, Any]) -> bool:
    """Whether a TMC message's content misses what the parser needs to know a line's stock
    meaning on its own: oid, a SKU (sku_id or num_iid) and num (TOP's own messages carry none)."""
    missing = lambda k: content.get(k) in (None, "")  # noqa: E731
    return missing("oid") or missing("num") or (missing("sku_id") and missing("num_iid"))


def _has_time(d: Mapping[str, Any], key: str) -> bool:
    value = d.get(key)
    return isinstance(value, str) and bool(value.strip())


def _consign_ms(d: Mapping[str, Any], key: str = "consign_time") -> Optional[int]:
    """The consign time as epoch ms (dates the SHIP movement); None when absent or unreadable (the
    core then dates the shipment by the message's own time)."""
    if not _has_time(d, key):
        return None
    try:
        return base.gmt8_ms(d[key], key)
    except RejectError:
        return None


def _shipped(raw_status: str, status: LineStatus, evidence: bool) -> bool:
    if status in (LineStatus.SHIPPED, LineStatus.FINISHED):
        return True
    # TRADE_CLOSED covers refunds before and after shipment; only a consign time tells them apart.
    return status == LineStatus.CLOSED and raw_status != "TRADE_CLOSED_BY_TAOBAO" and evidence


# --------------------------------------------------------------------------------------------
# Parsing


def parse(payload: bytes, headers: Mapping[str, str] = base.EMPTY_HEADERS) -> base.ParseOutcome:
    return base.guarded(_parse_doc, payload, headers)


def _detect(doc: Any) -> Optional[str]:
    if isinstance(doc, dict):
        if "topic" in doc and "content" in doc:
            return KIND_TMC
        if "trade_fullinfo_get_response" in doc or "error_response" in doc:
            return KIND_FULLINFO
    return None


def _parse_doc(doc: Any, headers: Any) -> tuple[OrderUpdate, ...]:
    kind = base.select_kind(headers, doc, KINDS, _detect)
    return _parse_tmc(doc, headers) if kind == KIND_TMC else _parse_fullinfo(doc, headers)


def _line_fields(d: Mapping[str, Any], where: str) -> dict[str, Any]:
    """SKU-less items carry stock on the item itself, so num_iid stands in for the SKU id."""
    listing = base.opt_id_str(d.get("num_iid"), f"{where}.num_iid")
    sku = base.opt_id_str(d.get("sku_id"), f"{where}.sku_id") or listing
    code = base.code_str(d.get("outer_sku_id"), f"{where}.outer_sku_id") or base.code_str(
        d.get("outer_iid"), f"{where}.outer_iid"
    )
    return {"platform_sku_id": sku, "merchant_code": code, "listing_id": listing}


def _parse_tmc(doc: Any, headers: Any) -> tuple[OrderUpdate, ...]:
    env = base.obj(doc, "message")
    topic = base.required(env, "topic", "message")
    if not isinstance(topic, str):
        raise RejectError(WRONG_TYPE, "message.topic must be a string")
    if topic not in TOPICS:
        raise RejectError(UNKNOWN_STATUS, f"unknown TMC topic {topic[:60]!r}")
    message_id = base.id_str(base.required(env, "id", "message"), "message.id")
    content = base.nested_json(base.required(env, "content", "message"), "message.content")
    tid = base.id_str(base.required_any(content, ("tid", "tid_str"), "content"), "content.tid")
    shop = base.shop_of(headers, env.get("user_id"), "message.user_id")
    time_value = content.get("modified") or env.get("pub_time")
    if time_value is None:
        raise RejectError(MISSING_FIELD, "neither content.modified nor message.pub_time")
    modified_ms = base.gmt8_ms(time_value, "content.modified" if content.get("modified") else "message.pub_time")

    action = TOPICS[topic]
    if action is None:
        return ()
    default_status, line_specific = action
    raw_status = ""
    if line_specific:
        status = default_status
    elif content.get("status") not in (None, ""):
        raw_status, status = _trade_status(content["status"], "content.status")
    else:
        status = default_status
    evidence = _has_time(content, "consign_time") or content.get("refund_phase") == "aftersale"
    shipped = _shipped(raw_status, status, evidence)

    oid = base.opt_id_str(content.get("oid"), "content.oid")
    if oid is None and line_specific:
        raise RejectError(MISSING_FIELD, f"content.oid missing: {topic} concerns one sub-order")
    if status == LineStatus.CLOSED and not shipped and raw_status != "TRADE_CLOSED_BY_TAOBAO" and lacks_line_fields(content):
        # A close that cannot say whether the goods left (TRADE_CLOSED covers refunds before and
        # after shipment; no consign time, no line): read as a release, one delivered ahead of
        # its TradeSellerShip lost the shipment for good. The fullinfo snapshot the adapter
        # fetches for every message without line fields decides.
        return ()
    if oid is None:
        return (base.order_status_update(PLATFORM, shop, tid, modified_ms, status, shipped, message_id),)
    # A message about one sub-order carries that sub-order's consign time. (Oid-less messages are
    # left to their own time: a trade's consign time is its *first* shipment, early for the rest.)
    line = LineUpdate(
        line_id=oid,
        quantity=base.opt_quantity(content.get("num"), "content.num"),
        status=status,
        shipped=shipped,
        shipped_ms=_consign_ms(content) if shipped else None,
        **_line_fields(content, "content"),
    )
    return (OrderUpdate(PLATFORM, shop, tid, modified_ms, (line,), message_id=message_id),)


def _parse_fullinfo(doc: Any, headers: Any) -> tuple[OrderUpdate, ...]:
    resp = base.obj(doc, "response")
    if "error_response" in resp:
        err = resp["error_response"]
        err = err if isinstance(err, dict) else {}
        raise RejectError(PLATFORM_ERROR, f"TOP error {err.get('code')!r} {err.get('sub_code')!r}")
    body = base.obj(base.required(resp, "trade_fullinfo_get_response", "response"), "trade_fullinfo_get_response")
    trade = base.obj(base.required(body, "trade", "trade_fullinfo_get_response"), "trade")
    tid = base.id_str(base.required_any(trade, ("tid", "tid_str"), "trade"), "trade.tid")
    trade_raw, trade_status = _trade_status(base.required(trade, "status", "trade"), "trade.status")
    modified_ms = base.gmt8_ms(base.required(trade, "modified", "trade"), "trade.modified")
    shop = base.shop_of(headers, None, "trade")

    orders = base.required(trade, "orders", "trade")
    if isinstance(orders, dict):  # TOP JSON wraps lists: {"orders": {"order": [...]}}
        orders = base.required(orders, "order", "trade.orders")
    orders = base.array(orders, "trade.orders")
    if not orders:
        raise RejectError(WRONG_SHAPE, "trade.orders is empty")
    lines = []
    for i, raw in enumerate(orders):
        where = f"trade.orders[{i}]"
        o = base.obj(raw, where)
        if o.get("status") in (None, ""):
            raw_status, status = trade_raw, trade_status
        else:
            raw_status, status = _trade_status(o["status"], f"{where}.status")
        # A line's own consign_time is the evidence. The trade's says only that *some* line
        # shipped, so it stands in only for a single-line trade.
        if "consign_time" in o:
            evidence = _has_time(o, "consign_time")
            consign_ms = _consign_ms(o)
        else:
            evidence = len(orders) == 1 and _has_time(trade, "consign_time")
            consign_ms = _consign_ms(trade) if len(orders) == 1 else None
        shipped = _shipped(raw_status, status, evidence)
        fields = _line_fields(o, where)
        if fields["platform_sku_id"] is None:
            raise RejectError(MISSING_FIELD, f"{where}: neither sku_id nor num_iid")
        lines.append(
            LineUpdate(
                line_id=base.id_str(base.required(o, "oid", where), f"{where}.oid"),
                quantity=base.quantity(base.required(o, "num", where), f"{where}.num"),
                status=status,
                shipped=shipped,
                shipped_ms=consign_ms if shipped else None,
                **fields,
            )
        )
    return (
        OrderUpdate(
            PLATFORM,
            shop,
            tid,
            modified_ms,
            base.unique_lines(lines, "trade.orders"),
            message_id=base.header(headers, base.RawHeader.MESSAGE_ID),
            snapshot=True,
        ),
    )



# --------------------------------------------------------------------------------------------
# Builders (simulator / traffic generator)

_LINE_STATUS_OUT = {
    LineStatus.CREATED: "WAIT_BUYER_PAY",
    LineStatus.PAID: "WAIT_SELLER_SEND_GOODS",
    LineStatus.SHIPPED: "WAIT_BUYER_CONFIRM_GOODS",
    LineStatus.FINISHED: "TRADE_FINISHED",
}


def line_status(order: SimOrder, line: SimLine) -> str:
    status = order.line_status(line)
    if status == LineStatus.CLOSED:
        return "TRADE_CLOSED" if order.paid else "TRADE_CLOSED_BY_TAOBAO"
    return _LINE_STATUS_OUT[status]


def trade_status(order: SimOrder) -> str:
    """The trade's status from its lines: the least advanced open line, or SELLER_CONSIGNED_PART
    while some lines are shipped and others wait."""
    open_statuses = {order.line_status(line) for line in order.lines} - {LineStatus.CLOSED}
    if not open_statuses:
        return "TRADE_CLOSED" if order.paid else "TRADE_CLOSED_BY_TAOBAO"
    if LineStatus.PAID in open_statuses and LineStatus.SHIPPED in open_statuses:
        return "SELLER_CONSIGNED_PART"
    return _LINE_STATUS_OUT[min(open_statuses)]


def _num(value: str) -> Any:
    """TOP sends ids as JSON numbers; big ones stay exact for parsers that keep integers exact."""
    return int(value) if value.isdigit() else value


def _sub_order(order: SimOrder, line: SimLine) -> dict[str, Any]:
    sub: dict[str, Any] = {
        "oid": _num(line.line_id),
        "oid_str": line.line_id,
        "num_iid": _num(line.listing_id),
        "sku_id": line.sku_id,
        "outer_sku_id": line.merchant_code,
        "title": line.title,
        "num": line.quantity,
        "status": line_status(order, line),
        "refund_status": "SUCCESS" if order.line_status(line) == LineStatus.CLOSED and order.paid else "NO_REFUND",
        "price": "199.00",
    }
    if order.line_shipped_ms(line) is not None:
        sub["consign_time"] = base.format_gmt8(order.line_shipped_ms(line))
    return sub


def fullinfo_response(order: SimOrder, request_id: str = "16b2zx8v1k3ls") -> dict[str, Any]:
    """A `taobao.trade.fullinfo.get` response, buyer personal data included as TOP returns it."""
    b = order.buyer
    trade: dict[str, Any] = {
        "tid": _num(order.order_id),
        "tid_str": order.order_id,
        "status": trade_status(order),
        "type": "fixed",
        "created": base.format_gmt8(order.created_ms),
        "modified": base.format_gmt8(order.modified_ms),
        "buyer_nick": b.nick,
        "buyer_open_uid": b.open_uid,
        "buyer_email": b.email,
        "buyer_message": f"请尽快发货，电话 {b.phone}",
        "receiver_name": b.name,
        "receiver_mobile": b.phone,
        "receiver_phone": b.phone,
        "receiver_state": b.province,
        "receiver_city": b.city,
        "receiver_district": b.district,
        "receiver_town": b.town,
        "receiver_address": b.address,
        "receiver_zip": b.zip,
        "receiver_country": "",
        "oaid": "1Ab2Cd3Ef4Gh5Ij6Kl7Mn8Op",
        "orders": {"order": [_sub_order(order, line) for line in order.lines]},
    }
    if order.paid_ms is not None:
        trade["pay_time"] = base.format_gmt8(order.paid_ms)
    if order.any_shipped and order.shipped_ms is not None:
        trade["consign_time"] = base.format_gmt8(order.shipped_ms)
    return {"trade_fullinfo_get_response": {"trade": trade, "request_id": request_id}}


def tmc_message(
    order: SimOrder,
    topic: str,
    message_id: int | str,
    line: Optional[SimLine] = None,
    *,
    pub_ms: Optional[int] = None,
    with_line_fields: bool = True,
    seller_user_id: Optional[str] = None,
) -> dict[str, Any]:
    """One TMC message about `order`. `line` None: a trade-level message without oid."""
    if topic not in TOPICS:
        raise ValueError(f"unknown TMC topic {topic}")
    b = order.buyer
    content: dict[str, Any] = {"tid": _num(order.order_id), "buyer_nick": b.nick, "buyer_open_uid": b.open_uid, "seller_nick": "官方旗舰店"}
    if topic.startswith("taobao_refund_"):
        if line is None:
            raise ValueError("refund messages concern one sub-order")
        content.update(
            refund_id=_num(f"{order.order_id[-6:]}{line.line_id[-6:]}"),
            refund_fee="199.00",
            # aftersale: the trade had succeeded before the refund, so the goods had shipped
            refund_phase="aftersale" if order.status == LineStatus.FINISHED else "onsale",
            bill_type="refund_bill",
        )
    else:
        content.update(status=trade_status(order), type="guarantee_trade", payment="199.00")
    if line is not None:
        content["oid"] = _num(line.line_id)
        if with_line_fields:
            content.update(
                num_iid=_num(line.listing_id),
                sku_id=line.sku_id,
                outer_sku_id=line.merchant_code,
                num=line.quantity,
            )
        if order.line_shipped_ms(line) is not None:
            content["consign_time"] = base.format_gmt8(order.line_shipped_ms(line))
    content["modified"] = base.format_gmt8(order.modified_ms)
    return {
        "id": _num(str(message_id)),
        "topic": topic,
        "pub_time": base.format_gmt8(pub_ms if pub_ms is not None else order.modified_ms),
        "pub_app_key": "12345678",
        "user_id": _num(seller_user_id or order.shop_id),
        "user_nick": "官方旗舰店",
        "content": base.dumps_json(content),
    }


def tmc_consume_response(messages: list[dict[str, Any]]) -> dict[str, Any]:
    """`taobao.tmc.messages.consume` response wrapping messages (empty: no messages field)."""
    body: dict[str, Any] = {}
    if messages:
        body["messages"] = {"tmc_message": messages}
    return {"tmc_messages_consume_response": body}


def error_response(code: int, msg: str, sub_code: str = "", sub_msg: str = "", request_id: str = "rqid") -> dict[str, Any]:
    """TOP error shape, e.g. code 7 with sub_code accesscontrol.limited-by-app-access-count."""
    err: dict[str, Any] = {"code": code, "msg": msg, "request_id": request_id}
    if sub_code:
        err["sub_code"] = sub_code
    if sub_msg:
        err["sub_msg"] = sub_msg
    return {"error_response": err}
