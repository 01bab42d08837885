"""Pinduoduo: signing (API and WebSocket URL), parsing, and payload builders for the simulator.

Raw-record kinds (`kind` header):
  frame  one WebSocket message frame {id, commandType:"Common", time, sendTime,
         message:{type, mallID, content}}; content names the order (tid = order_sn) only
  order  a `pdd.order.information.get` response: a full snapshot of the order

Frames are notifications: they name the order but not its lines, so trade frames become an
order-level status (`OrderUpdate.status`, no lines). Refund frames carry no stock meaning by
themselves: neither "created" nor "agreed" says the money went back (an agreement on a return-refund still
waits for the goods), so the poller should fetch the order on every refund frame; its
refund_status 4 closes the order. Sellers only ever see paid orders: nothing maps to CREATED.

Lines are keyed by sku_id (PDD orders have no line ids).
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any, Mapping, Optional

from stockstream.core.model import LineStatus, LineUpdate, OrderUpdate

from connectors import base
from connectors.base import PLATFORM_ERROR, UNKNOWN_STATUS, WRONG_SHAPE, WRONG_TYPE, RejectError
from connectors.simulated import SimOrder

PLATFORM = "pdd"
KIND_FRAME = "frame"
KIND_ORDER = "order"
KINDS = (KIND_FRAME, KIND_ORDER)
ORDER_RESPONSE_KEY = "order_info_get_response"

# --------------------------------------------------------------------------------------------
# Signing


def sign(params: Mapping[str, Any], secret: str) -> str:
    """UPPER(HEX(MD5(client_secret + sorted key+value concat + client_secret))), `sign` excluded."""
    concat = "".join(f"{k}{v}" for k, v in sorted(params.items()) if k != "sign" and v is not None)
    return hashlib.md5(f"{secret}{concat}{secret}".encode("utf-8")).hexdigest().upper()


def timestamp(epoch_ms: int) -> str:
    """PDD `timestamp`: unix seconds (10 minutes tolerance)."""
    return str(epoch_ms // 1000)


def ws_signature(client_id: str, ts_ms: int, client_secret: str) -> str:
    """base64(md5_hex_lower(client_id + ts_ms + secret)). Base64 of hex digits never yields
    '+' or '/', so it is safe as a path segment as is."""
    digest = hashlib.md5(f"{client_id}{ts_ms}{client_secret}".encode("utf-8")).hexdigest()
    return base64.b64encode(digest.encode("ascii")).decode("ascii")


def ws_path(client_id: str, ts_ms: int, client_secret: str) -> str:
    return f"/message/{client_id}/{ts_ms}/{ws_signature(client_id, ts_ms, client_secret)}"


# --------------------------------------------------------------------------------------------
# Status mapping

ORDER_STATUS: dict[int, LineStatus] = {1: LineStatus.PAID, 2: LineStatus.SHIPPED, 3: LineStatus.FINISHED}
# 1 no after-sale, 2 after-sale in progress, 3 refunding, 4 refunded. Only 4 moves stock: until
# the money is back the sale can still stand.
REFUND_STATUSES = frozenset({1, 2, 3, 4})
REFUNDED = 4

# Frame type -> (status, shipped); None: no stock meaning (see module docstring).
MESSAGE_TYPES: dict[str, Optional[tuple[LineStatus, bool]]] = {
    "pdd_trade_TradeConfirmed": (LineStatus.PAID, False),  # paid and confirmed: to ship
    "pdd_trade_TradeSellerShip": (LineStatus.SHIPPED, True),
    "pdd_trade_TradeSuccess": (LineStatus.FINISHED, True),
    "pdd_refund_RefundCreated": None,
    "pdd_refund_RefundAgreeAgreement": None,
    "pdd_refund_RefundClosed": None,
}


def order_line_status(order_status: int, refund_status: int, shipping_time_set: bool, where: str) -> tuple[LineStatus, bool]:
    """The combined meaning of order_status and refund_status."""
    if order_status not in ORDER_STATUS:
        raise RejectError(UNKNOWN_STATUS, f"{where}: unknown PDD order_status {order_status}")
    if refund_status not in REFUND_STATUSES:
        raise RejectError(UNKNOWN_STATUS, f"{where}: unknown PDD refund_status {refund_status}")
    shipped = order_status in (2, 3) or shipping_time_set
    if refund_status == REFUNDED:
        return LineStatus.CLOSED, shipped
    return ORDER_STATUS[order_status], shipped


# --------------------------------------------------------------------------------------------
# Parsing


def parse(payload: bytes, headers: Mapping[str, str] = base.EMPTY_HEADERS) -> base.ParseOutcome:
    return base.guarded(_parse_doc, payload, headers)


def _detect(doc: Any) -> Optional[str]:
    if isinstance(doc, dict):
        if "commandType" in doc or "message" in doc:
            return KIND_FRAME
        if ORDER_RESPONSE_KEY in doc or "error_response" in doc:
            return KIND_ORDER
    return None


def _parse_doc(doc: Any, headers: Any) -> tuple[OrderUpdate, ...]:
    kind = base.select_kind(headers, doc, KINDS, _detect)
    return _parse_frame(doc, headers) if kind == KIND_FRAME else (_parse_order(doc, headers),)


def _frame_time_ms(value: Any, where: str) -> int:
    # Frame times are epoch ms (unconfirmed); a seconds value is recognised by its size, since
    # no ms timestamp after 1973 is below 1e11.
    try:
        n = base.integer(value, where)
    except RejectError as exc:
        raise RejectError(base.BAD_TIME, exc.reason) from None
    return base.epoch_ms(n * 1000 if 0 < n < 10**11 else n, where)


def _parse_frame(doc: Any, headers: Any) -> tuple[OrderUpdate, ...]:
    frame = base.obj(doc, "frame")
    command = frame.get("commandType")
    if command != "Common":
        raise RejectError(WRONG_SHAPE, f"frame.commandType {str(command)[:20]!r} is not an order message")
    frame_id = base.id_str(base.required(frame, "id", "frame"), "frame.id")
    msg = base.obj(base.required(frame, "message", "frame"), "frame.message")
    mtype = base.required(msg, "type", "frame.message")
    if not isinstance(mtype, str):
        raise RejectError(WRONG_TYPE, "frame.message.type must be a string")
    if mtype not in MESSAGE_TYPES:
        raise RejectError(UNKNOWN_STATUS, f"unknown PDD message type {mtype[:60]!r}")
    content = base.nested_json(base.required(msg, "content", "frame.message"), "frame.message.content")
    order_sn = base.id_str(base.required(content, "tid", "content"), "content.tid")
    shop = base.shop_of(headers, base.first_present(msg, "mallID") or content.get("mall_id"), "frame.message.mallID")
    time_ms = _frame_time_ms(base.required_any(frame, ("time", "sendTime"), "frame"), "frame.time")
    action = MESSAGE_TYPES[mtype]
    if action is None:
        return ()
    status, shipped = action
    return (base.order_status_update(PLATFORM, shop, order_sn, time_ms, status, shipped, frame_id),)


def _updated_ms(value: Any, where: str) -> int:
    if isinstance(value, str) and not value.isdigit():
        return base.gmt8_ms(value, where)  # "yyyy-MM-dd HH:mm:ss", Beijing time
    return base.unix_s_ms(value, where)


def _parse_order(doc: Any, headers: Any) -> OrderUpdate:
    resp = base.obj(doc, "response")
    if "error_response" in resp:
        err = resp["error_response"]
        err = err if isinstance(err, dict) else {}
        raise RejectError(PLATFORM_ERROR, f"PDD error {err.get('error_code')!r} {str(err.get('sub_code'))[:60]!r}")
    body = base.obj(base.required(resp, ORDER_RESPONSE_KEY, "response"), ORDER_RESPONSE_KEY)
    info = base.obj(base.required(body, "order_info", ORDER_RESPONSE_KEY), "order_info")
    w = "order_info"
    order_sn = base.id_str(base.required(info, "order_sn", w), f"{w}.order_sn")
    shipping_time = info.get("shipping_time")
    status, shipped = order_line_status(
        base.integer(base.required(info, "order_status", w), f"{w}.order_status"),
        base.integer(base.required(info, "refund_status", w), f"{w}.refund_status"),
        isinstance(shipping_time, str) and bool(shipping_time.strip()),
        w,
    )
    modified_ms = _updated_ms(base.required(info, "updated_at", w), f"{w}.updated_at")
    # One shipment per order: shipping_time dates the SHIP of every line (frames carry none).
    ship_ms = _shipping_ms(shipping_time) if shipped else None
    shop = base.shop_of(headers, None, w)
    items = base.array(base.required(info, "item_list", w), f"{w}.item_list")
    if not items:
        raise RejectError(WRONG_SHAPE, f"{w}.item_list is empty")
    lines = []
    for i, raw in enumerate(items):
        iw = f"{w}.item_list[{i}]"
        item = base.obj(raw, iw)
        sku = base.id_str(base.required(item, "sku_id", iw), f"{iw}.sku_id")
        lines.append(
            LineUpdate(
                line_id=sku,
                platform_sku_id=sku,
                # SKU-less goods carry the seller's code on the goods, not the SKU
                merchant_code=base.code_str(item.get("outer_id"), f"{iw}.outer_id")
                or base.code_str(item.get("outer_goods_id"), f"{iw}.outer_goods_id"),
                quantity=base.quantity(base.required(item, "goods_count", iw), f"{iw}.goods_count"),
                status=status,
                shipped=shipped,
                listing_id=base.opt_id_str(item.get("goods_id"), f"{iw}.goods_id"),
            )
        )
    return OrderUpdate(
        PLATFORM,
        shop,
        order_sn,
        modified_ms,
        base.merge_sku_lines(lines, f"{w}.item_list"),
        message_id=base.header(headers, base.RawHeader.MESSAGE_ID),
        snapshot=True,
        shipped_ms=ship_ms,
    )


def _shipping_ms(value: Any) -> Optional[int]:
    """shipping_time as epoch ms; None when absent or unreadable (the snapshot's time dates it)."""
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        return _updated_ms(value.strip(), "order_info.shipping_time")
    except RejectError:
        return None



# --------------------------------------------------------------------------------------------
# Builders (simulator / traffic generator)

_ORDER_STATUS_OUT = {LineStatus.PAID: 1, LineStatus.SHIPPED: 2, LineStatus.FINISHED: 3}


def status_codes(order: SimOrder) -> tuple[int, int]:
    """(order_status, refund_status) for a simulated order. PDD has one state per order and no
    unpaid orders: both are refused."""
    if order.status == LineStatus.CREATED:
        raise ValueError("PDD orders reach the seller only once paid")
    if any(order.line_status(line) != order.status for line in order.lines):
        raise ValueError("PDD orders have one state for all lines")
    if order.status == LineStatus.CLOSED:
        return (2 if order.any_shipped else 1), REFUNDED
    return _ORDER_STATUS_OUT[order.status], 1


def _num(value: str) -> Any:
    return int(value) if value.isdigit() else value


def ws_frame(order: SimOrder, message_type: str, frame_id: int, time_ms: Optional[int] = None) -> dict[str, Any]:
    if message_type not in MESSAGE_TYPES:
        raise ValueError(f"unknown PDD message type {message_type}")
    t = order.modified_ms if time_ms is None else time_ms
    content: dict[str, Any] = {"tid": order.order_id, "mall_id": _num(order.shop_id)}
    if message_type.startswith("pdd_refund_"):
        content.update(refund_id=int(order.order_id.replace("-", "")[-9:]), bill_type=1, refund_fee=1990)
    return {
        "id": frame_id,
        "commandType": "Common",
        "time": t,
        "sendTime": t,
        "message": {"type": message_type, "mallID": _num(order.shop_id), "content": base.dumps_json(content)},
    }


def ack_frame(frame_id: int, time_ms: int) -> dict[str, Any]:
    """What the client sends back; unacked frames are redelivered."""
    return {"id": frame_id, "commandType": "Ack", "time": time_ms, "sendTime": time_ms}


def order_information_response(order: SimOrder, refund_status: Optional[int] = None, request_id: str = "17311111111110001") -> dict[str, Any]:
    """A `pdd.order.information.get` response, buyer personal data included as PDD returns it.
    `refund_status` overrides the rendered one (2/3: an after-sale under way)."""
    b = order.buyer
    order_status, rendered_refund = status_codes(order)
    info: dict[str, Any] = {
        "order_sn": order.order_id,
        "order_status": order_status,
        "refund_status": rendered_refund if refund_status is None else refund_status,
        "confirm_status": 1,
        "created_time": base.format_gmt8(order.created_ms),
        "confirm_time": base.format_gmt8(order.paid_ms if order.paid_ms is not None else order.created_ms),
        "updated_at": base.format_gmt8(order.modified_ms),
        "receiver_name": b.name,
        "receiver_phone": b.phone,
        "receiver_address": f"{b.province}{b.city}{b.district}{b.address}",
        "receiver_name_mask": b.name[0] + "**",
        "receiver_phone_mask": b.phone[:3] + "****" + b.phone[-4:],
        "address": b.address,
        "country": "中国",
        "province": b.province,
        "city": b.city,
        "town": b.district,
        "buyer_memo": f"电话{b.phone}",
        "id_card_num": b.id_card,
        "id_card_name": b.name,
        "item_list": [
            {
                "goods_id": _num(line.listing_id),
                "sku_id": _num(line.sku_id),
                "outer_id": line.merchant_code,
                "outer_goods_id": "",
                "goods_name": line.title,
                "goods_count": line.quantity,
                "goods_price": 199.0,
            }
            for line in order.lines
        ],
    }
    if order.any_shipped and order.shipped_ms is not None:
        info["shipping_time"] = base.format_gmt8(order.shipped_ms)
    return {ORDER_RESPONSE_KEY: {"order_info": info, "request_id": request_id}}


def error_response(error_code: int, error_msg: str, sub_code: str = "", sub_msg: str = "", request_id: str = "17311111111110001") -> dict[str, Any]:
    """e.g. 52101 throttled, 52102/52103 temporarily unavailable, 70031 too frequent, 10019 token expired."""
    return {
        "error_response": {
            "error_code": error_code,
            "error_msg": error_msg,
            "sub_code": sub_code,
            "sub_msg": sub_msg,
            "request_id": request_id,
        }
    }
