"""Pinduoduo simulator: the message WebSocket and the `/api/router` gateway
(`pdd.order.information.get`, `pdd.goods.quantity.update`, `pdd.goods.detail.get`).

Models:
  - WebSocket `/message/{client_id}/{ts_ms}/{sign}` with sign = base64(md5_hex_lower(client_id +
    ts_ms + secret)) (`connectors.pdd.ws_signature`); a bad signature, unknown client or a
    timestamp outside the tolerance is refused with HTTP 401 and PDD's error shape before the
    upgrade. Every order change of a paid order becomes one `Common` frame (type per status;
    a refund is `pdd_refund_RefundAgreeAgreement`, whose stock meaning the client learns from the
    order's refund_status); a frame not acknowledged (`{"id", "commandType":"Ack"}`) within
    `ack_timeout_s` is sent again, and frames in flight on a connection that dies are sent again
    on the next one. The client sends `{"commandType":"HeartBeat","time":..}`; the server answers
    in kind and closes a connection silent for `heartbeat_timeout_s`. `disconnect_all()` drops
    every connection (tests of reconnects). Knobs: duplicates, delays, reordering of frames.
  - Gateway: params type, client_id, access_token, timestamp (unix s, 10 min tolerance),
    data_type, version, sign = UPPER(MD5(secret + sorted key+value + secret)) over every
    parameter including business ones; errors `{"error_response":{error_code, error_msg,
    sub_code, sub_msg, request_id}}`. Throttling: 52101 for the per-app rate limit, 70031 (too
    frequent) for `throttle_rate`; `fail_rate` answers 52102 / 52103 (temporarily unavailable).
  - Stock: `pdd.goods.quantity.update` (goods_id + sku_id or outer_id, update_type 1 full / 2
    incremental); `pdd.goods.detail.get` lists a goods' SKU quantities.

Unconfirmed: the WebSocket heartbeat and handshake-error details, the codes for bad signature
(10016), bad timestamp (10017), unknown client (10011), unknown order / goods (10000); 10019 is
the reference's token code. Leaves out: unpaid orders (PDD sellers never see them), partial
refunds (one state per order), message types beyond the six the parser knows.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
import uuid
from typing import Any, Optional, Sequence

from aiohttp import WSMsgType, web

from connectors import base, pdd
from connectors.simulated import SimLine, SimOrder
from connectors.simulators.base_api import Delivery, DeliveryQueue, Knobs, PlatformSim, SimShop, now_ms, request_params
from stockstream.core.model import LineStatus

TYPE_OF_STATUS = {
    LineStatus.PAID: "pdd_trade_TradeConfirmed",
    LineStatus.SHIPPED: "pdd_trade_TradeSellerShip",
    LineStatus.FINISHED: "pdd_trade_TradeSuccess",
    LineStatus.CLOSED: "pdd_refund_RefundAgreeAgreement",
}

CODE_INVALID_PARAM = 10000
CODE_UNKNOWN_CLIENT = 10011
CODE_SIGN = 10016
CODE_TIMESTAMP = 10017
CODE_TOKEN = 10019
CODE_THROTTLED = 52101
CODE_UNAVAILABLE = (52102, 52103)
CODE_TOO_FREQUENT = 70031


class PddError(Exception):
    def __init__(self, code: int, msg: str, sub_code: str = "", sub_msg: str = "") -> None:
        super().__init__(code, msg)
        self.code, self.msg, self.sub_code, self.sub_msg = code, msg, sub_code, sub_msg


class PddSim(PlatformSim):
    platform = "pdd"

    def __init__(
        self,
        shops: Sequence[SimShop],
        *,
        ack_timeout_s: float = 5.0,
        heartbeat_timeout_s: float = 30.0,
        knobs: Optional[Knobs] = None,
        seed: int = 0,
        **knob_values: Any,
    ) -> None:
        super().__init__(shops, knobs=knobs, seed=seed, **knob_values)
        self.ack_timeout_s = ack_timeout_s
        self.heartbeat_timeout_s = heartbeat_timeout_s
        self.queues: dict[str, DeliveryQueue] = {}
        self._frame_ids = itertools.count(100_000_001)
        self._sockets: set[web.WebSocketResponse] = set()
        self.app.router.add_get("/message/{client_id}/{ts_ms}/{sign}", self._websocket)
        self.app.router.add_route("*", "/api/router", self._gateway)

    def queue(self, client_id: str) -> DeliveryQueue:
        q = self.queues.get(client_id)
        if q is None:
            q = self.queues[client_id] = DeliveryQueue(self.knobs, self.rng)
        return q

    def pending(self) -> int:
        return sum(q.pending() for q in self.queues.values())

    def stat_values(self) -> dict[str, int]:
        out = dict(self.stats)
        out["pending"] = self.pending()
        out["connections"] = len(self._sockets)
        out["duplicated"] = sum(q.duplicated for q in self.queues.values())
        out["redelivered"] = sum(q.redelivered for q in self.queues.values())
        return out

    async def disconnect_all(self) -> None:
        for ws in list(self._sockets):
            await ws.close(code=1001, message=b"server going away")

    async def _on_stop(self) -> None:
        await self.disconnect_all()

    # ---------------------------------------------------------------- orders -> frames

    def _new_ids(self, seq: int, n_lines: int) -> tuple[str, list[str]]:
        return f"241111-{339507978993455 + seq}", ["" for _ in range(n_lines)]

    def create_order(self, shop_id: str, lines: Sequence[Any], status: Any = "PAID", **kw: Any) -> SimOrder:
        lines = [dict(line, line_id=str(line["sku_id"])) if isinstance(line, dict) else line for line in lines]
        return super().create_order(shop_id, lines, status, **kw)

    def _check_lines(self, lines: Sequence[SimLine]) -> None:
        if len({line.sku_id for line in lines}) != len(lines):
            raise ValueError("a PDD order lists each SKU once")

    def _check_partial_allowed(self) -> None:
        raise ValueError("PDD orders have one state for all lines")

    def _on_change(self, old: Optional[SimOrder], new: SimOrder, changed: list[SimLine]) -> None:
        if new.paid_ms is None or new.status not in TYPE_OF_STATUS:
            return  # unpaid orders are invisible to PDD sellers
        message_type = TYPE_OF_STATUS[new.status]
        frame_id = next(self._frame_ids)
        shop = self.shops[new.shop_id]
        self.queue(shop.app_key).put(str(frame_id), pdd.ws_frame(new, message_type, frame_id, now_ms()), shop.shop_id)
        self.record_event(str(frame_id), new, message_type)

    # ---------------------------------------------------------------- WebSocket

    async def _websocket(self, request: web.Request) -> web.StreamResponse:
        client_id = request.match_info["client_id"]
        secret = self.secret_of(client_id)
        try:
            ts_ms = int(request.match_info["ts_ms"])
        except ValueError:
            ts_ms = 0
        if secret is None:
            return _ws_refusal(CODE_UNKNOWN_CLIENT, "client_id不存在")
        if not self.timestamp_ok(ts_ms):
            return _ws_refusal(CODE_TIMESTAMP, "timestamp已过期")
        if request.match_info["sign"] != pdd.ws_signature(client_id, ts_ms, secret):
            self.stats["bad_signature"] += 1
            return _ws_refusal(CODE_SIGN, "签名错误")
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self._sockets.add(ws)
        self.stats["ws_connections"] += 1
        q = self.queue(client_id)
        sent: dict[str, list[Delivery]] = {}  # frame id -> deliveries awaiting an Ack
        last_heard = time.monotonic()
        sender = asyncio.create_task(self._send_frames(ws, q, sent))
        try:
            while True:
                remaining = self.heartbeat_timeout_s - (time.monotonic() - last_heard)
                if remaining <= 0:
                    self.stats["ws_heartbeat_timeouts"] += 1
                    break
                try:
                    msg = await ws.receive(timeout=remaining)
                except asyncio.TimeoutError:
                    continue
                if msg.type != WSMsgType.TEXT:
                    break
                last_heard = time.monotonic()
                try:
                    frame = json.loads(msg.data)
                except ValueError:
                    continue
                command = frame.get("commandType") if isinstance(frame, dict) else None
                if command == "Ack":
                    waiting = sent.get(str(frame.get("id"))) or []
                    if waiting:
                        q.ack_entry(waiting.pop(0))
                        self.stats["acks"] += 1
                elif command == "HeartBeat":
                    self.stats["heartbeats"] += 1
                    await ws.send_json({"commandType": "HeartBeat", "time": now_ms(), "sendTime": now_ms()})
        finally:
            sender.cancel()
            try:
                await sender
            except (asyncio.CancelledError, Exception):
                pass
            q.release([e for entries in sent.values() for e in entries])  # in flight on a dead connection: again
            self._sockets.discard(ws)
            if not ws.closed:
                await ws.close()
        return ws

    async def _send_frames(self, ws: web.WebSocketResponse, q: DeliveryQueue, sent: dict[str, list[Delivery]]) -> None:
        while not ws.closed:
            q.changed.clear()
            for entry in q.take(50, self.ack_timeout_s):
                waiting = sent.setdefault(entry.message_id, [])
                if not any(e is entry for e in waiting):
                    waiting.append(entry)
                frame = dict(entry.payload, sendTime=now_ms())
                await ws.send_str(base.dumps_json(frame))
                self.stats["frames_sent"] += 1
            wait = q.next_visible_in()
            try:
                await asyncio.wait_for(q.changed.wait(), timeout=max(wait, 0.01) if wait is not None else None)
            except asyncio.TimeoutError:
                pass

    # ---------------------------------------------------------------- gateway

    async def _gateway(self, request: web.Request) -> web.Response:
        form = await request.post() if request.method == "POST" else {}
        params = request_params(request.query, form)
        request_id = uuid.uuid4().hex[:17]
        try:
            body = self._handle(params)
            body[next(iter(body))]["request_id"] = request_id
        except PddError as e:
            self.stats[f"error_{e.code}"] += 1
            body = pdd.error_response(e.code, e.msg, e.sub_code, e.sub_msg, request_id)
        return web.json_response(body, dumps=base.dumps_json)

    def _handle(self, params: dict[str, str]) -> dict[str, Any]:
        for name in ("type", "client_id", "timestamp", "sign"):
            if not params.get(name):
                raise PddError(CODE_INVALID_PARAM, "公共参数错误", "missing_parameter", f"{name} is required")
        secret = self.secret_of(params["client_id"])
        if secret is None:
            raise PddError(CODE_UNKNOWN_CLIENT, "client_id不存在")
        try:
            ts_ms = int(params["timestamp"]) * 1000
        except ValueError:
            raise PddError(CODE_TIMESTAMP, "timestamp格式错误") from None
        if not self.timestamp_ok(ts_ms):
            raise PddError(CODE_TIMESTAMP, "timestamp已过期")
        if pdd.sign(params, secret) != params["sign"]:
            self.stats["bad_signature"] += 1
            raise PddError(CODE_SIGN, "签名错误", "sign_invalid")
        shop = self.shop_by_token(params.get("access_token", ""))
        if shop is None or shop.app_key != params["client_id"]:
            raise PddError(CODE_TOKEN, "access_token已过期", "token_expired")
        fault = self.fault(params["client_id"])
        if fault == "limit":
            raise PddError(CODE_THROTTLED, "接口调用频率超限", "rate_limited", "请稍后重试")
        if fault == "throttle":
            raise PddError(CODE_TOO_FREQUENT, "调用太频繁", "too_frequent", "请稍后重试")
        if fault == "fail":
            raise PddError(self.rng.choice(CODE_UNAVAILABLE), "服务暂时不可用", "service_unavailable")
        method = params["type"]
        self.stats[method] += 1
        if method == "pdd.order.information.get":
            order = self.orders.get(params.get("order_sn", ""))
            if order is None or order.shop_id != shop.shop_id or order.paid_ms is None:
                raise PddError(CODE_INVALID_PARAM, "订单不存在", "order_not_exist")
            return pdd.order_information_response(order)
        if method == "pdd.goods.quantity.update":
            return self._quantity_update(shop, params)
        if method == "pdd.goods.detail.get":
            return self._goods_detail(shop, params)
        raise PddError(CODE_INVALID_PARAM, "接口不存在", "method_not_exist", method)

    def _goods_skus(self, shop: SimShop, goods_id: str) -> list[str]:
        return sorted(sku for (s, sku), info in self.skus.items() if s == shop.shop_id and info.listing_id == goods_id)

    def _quantity_update(self, shop: SimShop, p: dict[str, str]) -> dict[str, Any]:
        goods_id = p.get("goods_id", "")
        skus = self._goods_skus(shop, goods_id)
        if not goods_id or not skus:
            raise PddError(CODE_INVALID_PARAM, "商品不存在", "goods_not_exist")
        if p.get("sku_id"):
            sku = p["sku_id"] if p["sku_id"] in skus else None
        else:
            matches = [s for s in skus if self.skus[(shop.shop_id, s)].merchant_code == p.get("outer_id")]
            sku = matches[0] if len(matches) == 1 else None
        if sku is None:
            raise PddError(CODE_INVALID_PARAM, "sku不存在", "sku_not_exist")
        update_type = p.get("update_type", "1") or "1"
        try:
            quantity = int(p.get("quantity", ""))
        except ValueError:
            raise PddError(CODE_INVALID_PARAM, "quantity错误", "invalid_quantity") from None
        if update_type not in ("1", "2") or (update_type == "1" and quantity < 0):
            raise PddError(CODE_INVALID_PARAM, "参数错误", "invalid_update_type")
        try:
            self.write_stock(shop.shop_id, sku, quantity, incremental=update_type == "2", method="pdd.goods.quantity.update")
        except ValueError:
            raise PddError(CODE_INVALID_PARAM, "库存不足", "invalid_quantity") from None
        return {"goods_quantity_update_response": {"is_success": True}}

    def _goods_detail(self, shop: SimShop, p: dict[str, str]) -> dict[str, Any]:
        goods_id = p.get("goods_id", "")
        skus = self._goods_skus(shop, goods_id)
        if not skus:
            raise PddError(CODE_INVALID_PARAM, "商品不存在", "goods_not_exist")
        return {
            "goods_detail_get_response": {
                "goods_id": int(goods_id) if goods_id.isdigit() else goods_id,
                "sku_list": [
                    {"sku_id": int(s) if s.isdigit() else s, "quantity": self.stock[(shop.shop_id, s)], "outer_id": self.skus[(shop.shop_id, s)].merchant_code}
                    for s in skus
                ],
            }
        }


def _ws_refusal(code: int, msg: str) -> web.Response:
    return web.json_response(pdd.error_response(code, msg, request_id=uuid.uuid4().hex[:17]), status=401, dumps=base.dumps_json)
