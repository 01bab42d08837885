"""Douyin shop (抖店): signing, push verification, parsing, and payload builders for the simulator.

Raw-record kinds (`kind` header):
  push    one push message {tag, msg_id, data (JSON string)}; the callback's whole body (a JSON
          array of messages) is accepted too. Verify `event-sign` over the raw body *before*
          splitting or stripping it: the signature covers the exact bytes.
  detail  an `order.orderDetail` response {code, msg, sub_code, sub_msg, log_id, data}

Lines are keyed by the child order id (sku_order_list[].order_id), because that is what pushes
name (s_ids / s_id); a detail whose sku orders lack child ids is keyed by sku_id instead.
Times are unix seconds.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import replace
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

PLATFORM = "douyin"
KIND_PUSH = "push"
KIND_DETAIL = "detail"
KINDS = (KIND_PUSH, KIND_DETAIL)
SUCCESS_CODE = 10000
PUSH_ACK = {"code": 0, "msg": "success"}  # anything else makes Douyin retry

# --------------------------------------------------------------------------------------------
# Signing


def param_json(business: Mapping[str, Any]) -> str:
    """The request body and the signed `param_json`: keys sorted at every level, compact, no
    HTML or non-ASCII escaping. Must be exactly the bytes sent."""
    return json.dumps(business, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def sign_string(params: Mapping[str, Any], secret: str) -> str:
    return (
        f"{secret}app_key{params['app_key']}method{params['method']}param_json{params['param_json']}"
        f"timestamp{params['timestamp']}v{params.get('v', '2')}{secret}"
    )


def sign(params: Mapping[str, Any], secret: str) -> str:
    """params: app_key, method, param_json, timestamp, v (2), sign_method (hmac-sha256 | md5).
    hmac-sha256: lowercase hex HMAC_SHA256(secret, string); md5: lowercase hex MD5(string)."""
    method = params.get("sign_method") or "md5"
    text = sign_string(params, secret).encode("utf-8")
    if method == "hmac-sha256":
        return hmac.new(secret.encode("utf-8"), text, hashlib.sha256).hexdigest()
    if method == "md5":
        return hashlib.md5(text).hexdigest()
    raise ValueError(f"unsupported Douyin sign_method {method!r}")


def timestamp(epoch_ms: int) -> str:
    """Douyin `timestamp`: unix seconds as a decimal string (what the official SDKs send;
    the reference leaves the format open)."""
    return str(epoch_ms // 1000)


def event_sign(app_key: str, raw_body: bytes, app_secret: str) -> str:
    """Push `event-sign` header: lowercase hex md5(app_key + raw_body + app_secret)."""
    return hashlib.md5(app_key.encode("utf-8") + raw_body + app_secret.encode("utf-8")).hexdigest()


def verify_event_sign(app_key: str, raw_body: bytes, app_secret: str, header_value: Optional[str]) -> bool:
    if not header_value:
        return False
    return hmac.compare_digest(event_sign(app_key, raw_body, app_secret), header_value.strip().lower())


# --------------------------------------------------------------------------------------------
# Status mapping

ORDER_STATUS: dict[int, LineStatus] = {
    1: LineStatus.CREATED,  # unpaid
    105: LineStatus.PAID,  # paid
    2: LineStatus.PAID,  # to ship (备货中)
    101: LineStatus.SHIPPED,  # part shipped: a sku order without its own status is taken as shipped
    3: LineStatus.SHIPPED,
    4: LineStatus.CLOSED,  # cancelled; shipped only if it has a ship_time
    5: LineStatus.FINISHED,
}

# Tag -> (status, shipped). None: no stock meaning. Refund requests and agreements leave the
# goods committed (an agreement may still end without refund, and returns come back through the
# warehouse); only "refund success" closes the sub-order. "106 cancelled" (order_status 4) is
# sent for a close before shipment and for one after it alike, and its data has no ship time: on
# its own it cannot say whether to release the reserve or ship it (read as a release, a close
# delivered ahead of its "102 shipped" push lost the shipment for good: ATS too high by the
# order's quantity). The order detail the adapter fetches on every push (ship_time) decides.
TAGS: dict[str, Optional[tuple[LineStatus, bool]]] = {
    "100": (LineStatus.CREATED, False),
    "101": (LineStatus.PAID, False),
    "102": (LineStatus.SHIPPED, True),
    "103": (LineStatus.FINISHED, True),
    "106": None,
    "108": (LineStatus.SHIPPED, True),  # s_ids name the sub-orders shipped (unconfirmed)
    "200": None,
    "201": None,
    "206": (LineStatus.CLOSED, False),  # shipped from aftersale_type, see _refund_shipped
    "207": None,
}
_PUSH_TIME_KEYS = ("update_time", "create_time", "pay_time", "ship_time", "complete_time", "cancel_time", "apply_time")
# aftersale_type codes (unconfirmed): 0 return + refund, 1 refund only after shipment,
# 2 refund only before shipment.
_AFTERSALE_SHIPPED = {0: True, 1: True, 2: False}


def _order_status(value: Any, where: str) -> LineStatus:
    code = base.integer(value, where)
    status = ORDER_STATUS.get(code)
    if status is None:
        raise RejectError(UNKNOWN_STATUS, f"{where}: unknown Douyin order_status {code}")
    return status


# --------------------------------------------------------------------------------------------
# Parsing


def parse(payload: bytes, headers: Mapping[str, str] = base.EMPTY_HEADERS) -> base.ParseOutcome:
    return base.guarded(_parse_doc, payload, headers)


def _detect(doc: Any) -> Optional[str]:
    if isinstance(doc, list) or (isinstance(doc, dict) and "tag" in doc and "msg_id" in doc):
        return KIND_PUSH
    if isinstance(doc, dict) and "code" in doc and ("data" in doc or "sub_code" in doc):
        return KIND_DETAIL
    return None


def _parse_doc(doc: Any, headers: Any) -> tuple[OrderUpdate, ...]:
    kind = base.select_kind(headers, doc, KINDS, _detect)
    if kind == KIND_DETAIL:
        return (_parse_detail(doc, headers),)
    if isinstance(doc, list):
        if not doc:
            raise RejectError(WRONG_SHAPE, "empty push body")
        return tuple(u for i, m in enumerate(doc) for u in _parse_message(m, headers, f"push[{i}]"))
    return _parse_message(doc, headers, "push")


def _sub_ids(data: Mapping[str, Any], where: str) -> list[str]:
    if data.get("s_ids") not in (None, ""):
        ids = [base.id_str(v, f"{where}.s_ids[{i}]") for i, v in enumerate(base.array(data["s_ids"], f"{where}.s_ids"))]
        if len(set(ids)) != len(ids):
            raise RejectError(base.DUPLICATE_LINE, f"{where}.s_ids repeats an id")
        return ids
    if data.get("s_id") not in (None, ""):
        return [base.id_str(data["s_id"], f"{where}.s_id")]
    return []


def _parse_message(raw: Any, headers: Any, where: str) -> tuple[OrderUpdate, ...]:
    m = base.obj(raw, where)
    tag = base.required(m, "tag", where)
    if isinstance(tag, bool) or not isinstance(tag, (str, int)):
        raise RejectError(WRONG_TYPE, f"{where}.tag must be a string")
    tag = str(tag)
    if tag not in TAGS:
        raise RejectError(UNKNOWN_STATUS, f"{where}: unknown Douyin tag {tag[:20]!r}")
    msg_id = base.id_str(base.required(m, "msg_id", where), f"{where}.msg_id")
    data = base.nested_json(base.required(m, "data", where), f"{where}.data")
    dw = f"{where}.data"
    order_id = base.id_str(base.required(data, "p_id", dw), f"{dw}.p_id")
    shop = base.shop_of(headers, data.get("shop_id"), f"{dw}.shop_id")
    times = [base.unix_s_ms(data[k], f"{dw}.{k}") for k in _PUSH_TIME_KEYS if data.get(k) not in (None, "", 0)]
    if not times:
        raise RejectError(MISSING_FIELD, f"{dw}: no time field ({', '.join(_PUSH_TIME_KEYS)})")
    sub_ids = _sub_ids(data, dw)
    action = TAGS[tag]
    if action is None:
        return ()
    status, shipped = action
    if tag == "206":
        if not sub_ids:
            raise RejectError(MISSING_FIELD, f"{dw}.s_id missing: a refund concerns one sub-order")
        shipped = _refund_shipped(data, dw)
    ship_ms = _ship_time_ms(data, dw) if shipped else None
    if not sub_ids:
        update = base.order_status_update(PLATFORM, shop, order_id, max(times), status, shipped, msg_id)
        return (replace(update, shipped_ms=ship_ms) if ship_ms is not None else update,)
    lines = tuple(base.status_line(sid, status, shipped) for sid in sub_ids)
    if ship_ms is not None:
        lines = tuple(replace(line, shipped_ms=ship_ms) for line in lines)
    return (OrderUpdate(PLATFORM, shop, order_id, max(times), lines, message_id=msg_id),)


def _refund_shipped(data: Mapping[str, Any], where: str) -> bool:
    value = data.get("aftersale_type")
    if value is None or value == "":
        return False
    return _AFTERSALE_SHIPPED.get(base.integer(value, f"{where}.aftersale_type"), False)


def _ship_time_set(d: Mapping[str, Any], where: str) -> bool:
    value = d.get("ship_time")
    return value not in (None, "", 0, "0") and base.integer(value, f"{where}.ship_time") > 0


def _ship_time_ms(d: Mapping[str, Any], where: str) -> Optional[int]:
    """`ship_time` as epoch ms (dates the SHIP movement); None when unset or out of range (the
    message's own time then dates the shipment)."""
    if not _ship_time_set(d, where):
        return None
    try:
        return base.unix_s_ms(d["ship_time"], f"{where}.ship_time")
    except RejectError:
        return None


def _parse_detail(doc: Any, headers: Any) -> OrderUpdate:
    resp = base.obj(doc, "response")
    code = resp.get("code")
    if code != SUCCESS_CODE and code != str(SUCCESS_CODE):
        raise RejectError(PLATFORM_ERROR, f"Douyin code {str(code)[:20]!r} {str(resp.get('sub_code'))[:60]!r}")
    data = base.obj(base.required(resp, "data", "response"), "data")
    where = "data.shop_order_detail" if "shop_order_detail" in data else "data"
    detail = base.obj(data.get("shop_order_detail", data), where)
    order_id = base.id_str(base.required(detail, "order_id", where), f"{where}.order_id")
    order_status = _order_status(base.required(detail, "order_status", where), f"{where}.order_status")
    modified_ms = base.unix_s_ms(base.required(detail, "update_time", where), f"{where}.update_time")
    shop = base.shop_of(headers, detail.get("shop_id"), f"{where}.shop_id")
    order_shipped = _ship_time_set(detail, where)
    # The order's ship_time is its first shipment: it dates a line only in a one-line order.
    order_ship_ms = _ship_time_ms(detail, where)

    items = base.array(base.required(detail, "sku_order_list", where), f"{where}.sku_order_list")
    if not items:
        raise RejectError(WRONG_SHAPE, f"{where}.sku_order_list is empty")
    items = [base.obj(it, f"{where}.sku_order_list[{i}]") for i, it in enumerate(items)]
    by_child_id = all(it.get("order_id") not in (None, "") for it in items)
    lines = []
    for i, item in enumerate(items):
        iw = f"{where}.sku_order_list[{i}]"
        sku = base.id_str(base.required(item, "sku_id", iw), f"{iw}.sku_id")
        if item.get("order_status") in (None, ""):
            status = order_status
        else:
            status = _order_status(item["order_status"], f"{iw}.order_status")
        if "ship_time" in item:
            evidence, ship_ms = _ship_time_set(item, iw), _ship_time_ms(item, iw)
        else:
            evidence, ship_ms = order_shipped, order_ship_ms if len(items) == 1 else None
        shipped = status in (LineStatus.SHIPPED, LineStatus.FINISHED) or (status == LineStatus.CLOSED and evidence)
        code_value = base.code_str(item.get("code"), f"{iw}.code")
        if code_value is None and item.get("out_sku_id") not in (0, "0"):
            code_value = base.code_str(item.get("out_sku_id"), f"{iw}.out_sku_id")
        lines.append(
            LineUpdate(
                line_id=base.id_str(item["order_id"], f"{iw}.order_id") if by_child_id else sku,
                platform_sku_id=sku,
                merchant_code=code_value,
                quantity=base.quantity(base.required(item, "item_num", iw), f"{iw}.item_num"),
                status=status,
                shipped=shipped,
                listing_id=base.opt_id_str(item.get("product_id"), f"{iw}.product_id"),
                shipped_ms=ship_ms if shipped else None,
            )
        )
    merged = base.unique_lines(lines, where) if by_child_id else base.merge_sku_lines(lines, where)
    return OrderUpdate(
        PLATFORM,
        shop,
        order_id,
        modified_ms,
        merged,
        message_id=base.header(headers, base.RawHeader.MESSAGE_ID),
        snapshot=True,
    )



# --------------------------------------------------------------------------------------------
# Builders (simulator / traffic generator)

_STATUS_OUT = {
    LineStatus.CREATED: 1,
    LineStatus.PAID: 2,
    LineStatus.SHIPPED: 3,
    LineStatus.FINISHED: 5,
    LineStatus.CLOSED: 4,
}
_TAG_TIME_KEY = {"100": "create_time", "101": "pay_time", "106": "cancel_time", "200": "apply_time"}


def line_order_status(order: SimOrder, line: SimLine) -> int:
    return _STATUS_OUT[order.line_status(line)]


def order_status(order: SimOrder) -> int:
    open_statuses = {order.line_status(line) for line in order.lines} - {LineStatus.CLOSED}
    if not open_statuses:
        return 4
    if LineStatus.PAID in open_statuses and LineStatus.SHIPPED in open_statuses:
        return 101
    return _STATUS_OUT[min(open_statuses)]


def _num(value: str) -> Any:
    return int(value) if value.isdigit() else value


def push_message(order: SimOrder, tag: str, msg_id: str, lines: Optional[list[SimLine]] = None) -> dict[str, Any]:
    """One push message; `lines` defaults to every line (refund tags need exactly one)."""
    if tag not in TAGS:
        raise ValueError(f"unknown Douyin tag {tag}")
    lines = list(order.lines) if lines is None else lines
    data: dict[str, Any] = {"p_id": _num(order.order_id), "shop_id": _num(order.shop_id)}
    if tag.startswith("2"):
        if len(lines) != 1:
            raise ValueError("refund messages concern one sub-order")
        line = lines[0]
        data.update(
            s_id=_num(line.line_id),
            aftersale_id=_num(f"7{order.order_id[-9:]}{line.line_id[-6:]}"),
            aftersale_status=12 if tag == "206" else 6,
            aftersale_type=0 if order.line_shipped(line) else 2,
            refund_amount=19900,
        )
    else:
        data.update(s_ids=[_num(line.line_id) for line in lines], order_status=order_status(order), order_type=0, biz=2)
        data["create_time"] = order.created_ms // 1000
    data[_TAG_TIME_KEY.get(tag, "update_time")] = order.modified_ms // 1000
    return {"tag": tag, "msg_id": msg_id, "data": base.dumps_json(data)}


def push_body(messages: list[dict[str, Any]]) -> bytes:
    """The callback body: a JSON array of messages (sign it with `event_sign`)."""
    return base.dumps_bytes(messages)


def order_detail_response(order: SimOrder, log_id: str = "2024111100000101020304050607") -> dict[str, Any]:
    """An `order.orderDetail` response, buyer personal data included as Douyin returns it."""
    b = order.buyer
    ship_s = order.shipped_ms // 1000 if order.shipped_ms is not None else 0
    sku_orders = []
    for line in order.lines:
        sku_orders.append(
            {
                "order_id": line.line_id,
                "parent_order_id": order.order_id,
                "sku_id": _num(line.sku_id),
                "code": line.merchant_code,
                "out_sku_id": "",
                "product_id": _num(line.listing_id),
                "product_name": line.title,
                "item_num": line.quantity,
                "order_status": line_order_status(order, line),
                "ship_time": (order.line_shipped_ms(line) or 0) // 1000,
            }
        )
    detail: dict[str, Any] = {
        "order_id": order.order_id,
        "shop_id": _num(order.shop_id),
        "order_status": order_status(order),
        "create_time": order.created_ms // 1000,
        "pay_time": order.paid_ms // 1000 if order.paid_ms is not None else 0,
        "update_time": order.modified_ms // 1000,
        "ship_time": ship_s if order.any_shipped else 0,
        "post_receiver": b.name,
        "post_tel": b.phone,
        "post_addr": {
            "province": {"name": b.province, "id": "33"},
            "city": {"name": b.city, "id": "330100"},
            "town": {"name": b.district, "id": "330106"},
            "street": {"name": b.town, "id": "330106004"},
            "detail": b.address,
        },
        "encrypt_post_receiver": "#Zm9vYmFy#1##",
        "encrypt_post_tel": "$Vt3Xq9LmZ0aB==$1$$",
        "mask_post_receiver": b.name[0] + "*",
        "mask_post_tel": b.phone[:3] + "****" + b.phone[-4:],
        "buyer_words": f"送到{b.address}，电话{b.phone}",
        "doudian_open_id": b.open_uid,
        "user_id_info": {"id_card_no": b.id_card, "id_card_name": b.name},
        "sku_order_list": sku_orders,
    }
    return {"code": SUCCESS_CODE, "msg": "success", "sub_code": "", "sub_msg": "", "log_id": log_id, "data": {"shop_order_detail": detail}}


def error_response(code: int, msg: str, sub_code: str = "", sub_msg: str = "", log_id: str = "20241111000000") -> dict[str, Any]:
    """e.g. 40004 / isv.parameter-invalid:5 (SKU not found), 50002 (system busy)."""
    return {"code": code, "msg": msg, "sub_code": sub_code, "sub_msg": sub_msg, "log_id": log_id, "data": {}}
