"""JD.com (JOS): signing, parsing of polled orders, and payload builders for the simulator.

JD is poll-only (push topics unconfirmed): `jingdong.pop.order.search` by time window. Each order
is a full snapshot; lines are keyed by skuId (JD orders have no line ids).

Raw-record kinds (`kind` header):
  order   one element of `orderInfoList` (what the poller writes: one record per order)
  search  a whole `jingdong.pop.order.search` response (every order in it)

JD sends most numbers as strings ("itemTotal": "2"); both forms are accepted.

States and stock:
  WAIT_SELLER_STOCK_OUT       paid, waiting to leave the warehouse -> PAID
  WAIT_GOODS_RECEIVE_CONFIRM  shipped -> SHIPPED
  FINISHED_L                  done -> FINISHED
  TRADE_CANCELED              cancelled -> CLOSED (shipped only with a waybill: rejected on delivery)
  LOCKED                      frozen while a cancellation/refund request before shipment is
                              decided; it ends cancelled or resumes. The units are still owed,
                              so stock stays reserved -> PAID. (Selling them again and then
                              having the lock lifted would oversell.)
  PAUSE                       held (risk review, presale, seller pause): still a live order that
                              may ship -> PAID for the same reason.
A LOCKED/PAUSE snapshot after shipment ranks below SHIPPED and is dropped as stale by the core.

Ship time: search results state none (`waybill` says only that the goods left), so updates carry
no `shipped_ms` and the core dates SHIP by the first shipped snapshot it applies; a shipped
snapshot that arrives later but is older re-dates it (SHIP_REDATE). Known limit: when no poll ever
sees WAIT_GOODS_RECEIVE_CONFIRM (the order moved on between two polls) the shipment stays dated at
the first later state; a stock count in between then takes the goods off twice (on_hand and ATS
understated, never overstated) until the next count.
"""

from __future__ import annotations

import hashlib
from typing import Any, Mapping, Optional

from stockstream.core.model import LineStatus, LineUpdate, OrderUpdate

from connectors import base
from connectors.base import PLATFORM_ERROR, UNKNOWN_STATUS, WRONG_SHAPE, WRONG_TYPE, RejectError
from connectors.simulated import SimOrder

PLATFORM = "jd"
KIND_ORDER = "order"
KIND_SEARCH = "search"
KINDS = (KIND_ORDER, KIND_SEARCH)
SEARCH_RESPONSE_KEY = "jingdong_pop_order_search_responce"  # sic: JOS spells it so

# --------------------------------------------------------------------------------------------
# Signing


def sign(params: Mapping[str, Any], secret: str) -> str:
    """JOS signature: params sorted by key (except `sign`), empty values skipped, key+value
    concatenated; UPPER(HEX(MD5(secret + concat + secret)))."""
    method = params.get("sign_method") or "md5"
    if method != "md5":
        raise ValueError(f"unsupported JOS sign_method {method!r}")
    concat = "".join(f"{k}{v}" for k, v in sorted(params.items()) if k != "sign" and v is not None and v != "")
    return hashlib.md5(f"{secret}{concat}{secret}".encode("utf-8")).hexdigest().upper()


def timestamp(epoch_ms: int) -> str:
    """JOS `timestamp`: yyyy-MM-dd HH:mm:ss.SSS+0800, e.g. 2021-05-07 09:20:39.683+0800."""
    return base.format_gmt8(epoch_ms, millis=True) + "+0800"


# --------------------------------------------------------------------------------------------
# Status mapping (see module docstring for LOCKED / PAUSE)

ORDER_STATE: dict[str, LineStatus] = {
    "WAIT_SELLER_STOCK_OUT": LineStatus.PAID,
    "WAIT_GOODS_RECEIVE_CONFIRM": LineStatus.SHIPPED,
    "FINISHED_L": LineStatus.FINISHED,
    "TRADE_CANCELED": LineStatus.CLOSED,
    "LOCKED": LineStatus.PAID,
    "PAUSE": LineStatus.PAID,
}

# --------------------------------------------------------------------------------------------
# Parsing


def parse(payload: bytes, headers: Mapping[str, str] = base.EMPTY_HEADERS) -> base.ParseOutcome:
    return base.guarded(_parse_doc, payload, headers)


def _detect(doc: Any) -> Optional[str]:
    if isinstance(doc, dict):
        if "orderId" in doc:
            return KIND_ORDER
        if SEARCH_RESPONSE_KEY in doc or "error_response" in doc:
            return KIND_SEARCH
    return None


def _parse_doc(doc: Any, headers: Any) -> tuple[OrderUpdate, ...]:
    kind = base.select_kind(headers, doc, KINDS, _detect)
    if kind == KIND_ORDER:
        return (_parse_order(doc, headers, "order"),)
    return _parse_search(doc, headers)


def _raise_error_response(resp: Mapping[str, Any]) -> None:
    if "error_response" in resp:
        err = resp["error_response"]
        err = err if isinstance(err, dict) else {}
        raise RejectError(PLATFORM_ERROR, f"JOS error {err.get('code')!r} {str(err.get('en_desc'))[:80]!r}")


def _parse_search(doc: Any, headers: Any) -> tuple[OrderUpdate, ...]:
    resp = base.obj(doc, "response")
    _raise_error_response(resp)
    body = base.obj(base.required(resp, SEARCH_RESPONSE_KEY, "response"), SEARCH_RESPONSE_KEY)
    result = base.obj(base.required(body, "searchorderinfo_result", SEARCH_RESPONSE_KEY), "searchorderinfo_result")
    api = result.get("apiResult")
    if isinstance(api, dict) and api.get("success") is False:
        raise RejectError(PLATFORM_ERROR, f"JOS apiResult {api.get('code')!r} {str(api.get('englishErrCode'))[:80]!r}")
    orders = base.array(result.get("orderInfoList", []), "searchorderinfo_result.orderInfoList")
    return tuple(_parse_order(o, headers, f"orderInfoList[{i}]") for i, o in enumerate(orders))


def _parse_order(raw: Any, headers: Any, where: str) -> OrderUpdate:
    o = base.obj(raw, where)
    order_id = base.id_str(base.required(o, "orderId", where), f"{where}.orderId")
    state = base.required(o, "orderState", where)
    if not isinstance(state, str):
        raise RejectError(WRONG_TYPE, f"{where}.orderState must be a string")
    status = ORDER_STATE.get(state)
    if status is None:
        raise RejectError(UNKNOWN_STATUS, f"{where}: unknown JD orderState {state[:40]!r}")
    modified_ms = base.gmt8_ms(base.required_any(o, ("modified", "orderStartTime"), where), f"{where}.modified")
    shop = base.shop_of(headers, o.get("venderId"), f"{where}.venderId")
    # A cancelled order with a waybill had left the warehouse (refused on delivery).
    waybill = o.get("waybill")
    shipped = status in (LineStatus.SHIPPED, LineStatus.FINISHED) or (
        status == LineStatus.CLOSED and isinstance(waybill, str) and bool(waybill.strip())
    )
    items = base.array(base.required(o, "itemInfoList", where), f"{where}.itemInfoList")
    if not items:
        raise RejectError(WRONG_SHAPE, f"{where}.itemInfoList is empty")
    lines = []
    for i, raw_item in enumerate(items):
        iw = f"{where}.itemInfoList[{i}]"
        item = base.obj(raw_item, iw)
        sku = base.id_str(base.required(item, "skuId", iw), f"{iw}.skuId")
        lines.append(
            LineUpdate(
                line_id=sku,
                platform_sku_id=sku,
                merchant_code=base.code_str(item.get("outerSkuId"), f"{iw}.outerSkuId"),
                quantity=base.quantity(base.required(item, "itemTotal", iw), f"{iw}.itemTotal"),
                status=status,
                shipped=shipped,
                listing_id=base.opt_id_str(item.get("wareId"), f"{iw}.wareId"),
            )
        )
    return OrderUpdate(
        PLATFORM,
        shop,
        order_id,
        modified_ms,
        base.merge_sku_lines(lines, f"{where}.itemInfoList"),
        message_id=base.header(headers, base.RawHeader.MESSAGE_ID),
        snapshot=True,
    )



# --------------------------------------------------------------------------------------------
# Builders (simulator / traffic generator)

_STATE_OUT = {
    LineStatus.PAID: "WAIT_SELLER_STOCK_OUT",
    LineStatus.SHIPPED: "WAIT_GOODS_RECEIVE_CONFIRM",
    LineStatus.FINISHED: "FINISHED_L",
    LineStatus.CLOSED: "TRADE_CANCELED",
}


def order_state(order: SimOrder) -> str:
    """JD has one state per order and sellers never see unpaid orders: both are refused."""
    if order.status == LineStatus.CREATED:
        raise ValueError("JD orders reach the seller only once paid")
    if any(order.line_status(line) != order.status for line in order.lines):
        raise ValueError("JD orders have one state for all lines")
    return _STATE_OUT[order.status]


def search_order(order: SimOrder, state: Optional[str] = None) -> dict[str, Any]:
    """One `orderInfoList` element, buyer personal data included as JOS returns it.
    `state` overrides the rendered state (LOCKED, PAUSE have no canonical source)."""
    b = order.buyer
    doc: dict[str, Any] = {
        "orderId": order.order_id,
        "venderId": order.shop_id,
        "orderType": "22",
        "payType": "4-在线支付",
        "orderTotalPrice": "199.00",
        "orderState": state or order_state(order),
        "orderStartTime": base.format_gmt8(order.created_ms),
        "modified": base.format_gmt8(order.modified_ms),
        "pin": b.nick,
        "open_id_buyer": b.open_uid,
        "xid_buyer": "o*AAQzWJ5b7yYfF3kX",
        "orderRemark": f"请放门口，{b.phone}",
        "consigneeInfo": {
            "fullname": b.name,
            "telephone": b.phone,
            "mobile": b.phone,
            "fullAddress": f"{b.province}{b.city}{b.district}{b.address}",
            "province": b.province,
            "city": b.city,
            "county": b.district,
            "town": b.town,
        },
        "invoiceEasyInfo": {"invoiceTitle": b.name, "invoiceConsigneePhone": b.phone, "invoiceConsigneeEmail": b.email},
        "itemInfoList": [
            {
                "skuId": line.sku_id,
                "outerSkuId": line.merchant_code,
                "wareId": line.listing_id,
                "itemTotal": str(line.quantity),
                "skuName": line.title,
                "jdPrice": "199.00",
            }
            for line in order.lines
        ],
    }
    if order.paid_ms is not None:
        doc["paymentConfirmTime"] = base.format_gmt8(order.paid_ms)
    if order.any_shipped:
        doc["waybill"] = f"JDVA{order.order_id[-11:].rjust(11, '0')}"
    return doc


def search_response(orders: list[dict[str, Any]], total: Optional[int] = None) -> dict[str, Any]:
    """A `jingdong.pop.order.search` response around `search_order` elements."""
    return {
        SEARCH_RESPONSE_KEY: {
            "code": "0",
            "searchorderinfo_result": {
                "apiResult": {"success": True, "code": "0", "chineseErrCode": "成功", "englishErrCode": "success", "numberCode": 10100000},
                "orderInfoList": orders,
                "orderTotal": len(orders) if total is None else total,
            },
        }
    }


def error_response(code: str, zh_desc: str, en_desc: str) -> dict[str, Any]:
    return {"error_response": {"code": code, "zh_desc": zh_desc, "en_desc": en_desc}}
