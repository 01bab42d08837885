"""Douyin shop (抖店) simulator: order pushes to a callback URL, and the open API
(`/order/orderDetail`, `/sku/syncStock`, `/sku/detail`).

Models:
  - Push: every order change becomes one message `{"tag","msg_id","data"}` (tag per status, 206
    "refund success" per line for a single-line refund); messages are POSTed to the app's callback
    URL as a JSON array (up to `push_batch` per POST) with headers `app-id` and
    `event-sign = md5(app_key + raw_body + app_secret)`. Only an answer of exactly
    `{"code":0,"msg":"success"}` counts; anything else (other JSON, HTTP error, timeout after
    `push_timeout_s`, connection refused) is retried every `retry_interval_s` until it succeeds
    (Douyin's real retry schedule is unconfirmed). `duplicate_rate` pushes a message a second
    time later, `max_delay_s` holds pushes back, `reorder` sends ready messages in random order.
  - API: POST `/{method with '.' -> '/'}` with query app_key, method, access_token, timestamp
    (unix seconds), v=2, sign_method (md5 | hmac-sha256), sign; body = param_json, signed as the
    exact bytes received. Responses `{code, msg, sub_code, sub_msg, log_id, data}`, success
    10000. `sku.syncStock` overwrites (`incremental=false`) or adds (`incremental=true`, which
    needs an `idempotent_id`; a repeated id is not applied twice).
  - Throttling: code 50002 (system busy) for the rate limit and `throttle_rate`; `fail_rate`
    answers 20000 (service unavailable).

Unconfirmed: codes other than 10000 / 40004 / 50002 (30001 signature or app, 30002 token,
31001 timestamp, 20000 unavailable here), the timestamp tolerance (10 minutes here), and the retry
schedule. Leaves out: push registration / tag subscription, message encryption, data for tags
beyond the order fields the parsers read, and stock per warehouse (`stock_num` is the total).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import uuid
from typing import Any, Optional, Sequence

import aiohttp
from aiohttp import web

from connectors import base, douyin
from connectors.simulated import SimLine, SimOrder
from connectors.simulators.base_api import Delivery, DeliveryQueue, Knobs, PlatformSim, SimShop
from stockstream.core.model import LineStatus

TAG_OF_STATUS = {
    LineStatus.CREATED: "100",
    LineStatus.PAID: "101",
    LineStatus.SHIPPED: "102",
    LineStatus.FINISHED: "103",
    LineStatus.CLOSED: "106",
}
LINE_REFUND_TAG = "206"

# Codes (unconfirmed except 10000, 40004, 50002; keep connectors/adapters/douyin.py in step).
CODE_UNAVAILABLE = 20000
CODE_AUTH = 30001
CODE_TOKEN = 30002
CODE_TIMESTAMP = 31001
CODE_PARAM = 40004
CODE_BUSY = 50002


class DouyinError(Exception):
    def __init__(self, code: int, msg: str, sub_code: str = "", sub_msg: str = "") -> None:
        super().__init__(code, msg, sub_code)
        self.code, self.msg, self.sub_code, self.sub_msg = code, msg, sub_code, sub_msg


class DouyinSim(PlatformSim):
    platform = "douyin"

    def __init__(
        self,
        shops: Sequence[SimShop],
        *,
        callback_url: str = "",
        push_batch: int = 1,
        retry_interval_s: float = 1.0,
        push_timeout_s: float = 5.0,
        push_concurrency: int = 4,
        knobs: Optional[Knobs] = None,
        seed: int = 0,
        **knob_values: Any,
    ) -> None:
        super().__init__(shops, knobs=knobs, seed=seed, **knob_values)
        self.callbacks: dict[str, str] = {s.app_key: callback_url for s in shops}
        self.push_batch = push_batch
        self.retry_interval_s = retry_interval_s
        self.push_timeout_s = push_timeout_s
        self.push_concurrency = push_concurrency
        self.queues: dict[str, DeliveryQueue] = {}
        self._msg_ids = itertools.count(7_300_000_000_000_000_001)
        self._idempotent_ids: set[str] = set()
        self._http: Optional[aiohttp.ClientSession] = None
        self._wake = asyncio.Event()
        self.app.router.add_post("/{category}/{name}", self._api)

    def set_callback(self, url: str, app_key: Optional[str] = None) -> None:
        """Where pushes go (for every app, or one app). Empty: pushes wait."""
        for key in self.callbacks if app_key is None else [app_key]:
            self.callbacks[key] = url
        self._wake.set()

    def queue(self, app_key: str) -> DeliveryQueue:
        q = self.queues.get(app_key)
        if q is None:
            q = self.queues[app_key] = DeliveryQueue(self.knobs, self.rng)
        return q

    def pending(self) -> int:
        return sum(q.pending() for q in self.queues.values())

    def stat_values(self) -> dict[str, int]:
        out = dict(self.stats)
        out["pending"] = self.pending()
        out["duplicated"] = sum(q.duplicated for q in self.queues.values())
        out["redelivered"] = sum(q.redelivered for q in self.queues.values())
        return out

    # ---------------------------------------------------------------- orders -> pushes

    def _new_ids(self, seq: int, n_lines: int) -> tuple[str, list[str]]:
        pid = 6920000000000000000 + seq * 100  # child order ids follow the parent's
        return str(pid), [str(pid + 1 + i) for i in range(n_lines)]

    def _on_change(self, old: Optional[SimOrder], new: SimOrder, changed: list[SimLine]) -> None:
        shop = self.shops[new.shop_id]
        if old is None or old.status != new.status:
            messages = [(TAG_OF_STATUS[new.status], changed)]
        else:
            messages = [(LINE_REFUND_TAG, [line]) for line in changed]
        for tag, lines in messages:
            msg_id = str(next(self._msg_ids))
            self.queue(shop.app_key).put(msg_id, douyin.push_message(new, tag, msg_id, lines), shop.shop_id)
            self.record_event(msg_id, new, tag)
        self._wake.set()

    # ---------------------------------------------------------------- push loop

    async def _on_start(self) -> None:
        self._http = aiohttp.ClientSession()
        self._tasks.append(asyncio.create_task(self._push_loop()))

    async def _on_stop(self) -> None:
        if self._http is not None:
            await self._http.close()

    async def _push_loop(self) -> None:
        limit = asyncio.Semaphore(self.push_concurrency)
        inflight: set[asyncio.Task] = set()
        while True:
            self._wake.clear()
            for app_key, q in self.queues.items():
                url = self.callbacks.get(app_key)
                if not url:
                    continue
                while True:
                    batch = q.take(self.push_batch, self.push_timeout_s + self.retry_interval_s + 1)
                    if not batch:
                        break
                    await limit.acquire()
                    task = asyncio.create_task(self._push(app_key, url, q, batch))
                    inflight.add(task)
                    task.add_done_callback(lambda t: (inflight.discard(t), limit.release()))
            waits = [w for w in (q.next_visible_in() for q in self.queues.values()) if w is not None]
            timeout = min(waits) if waits else None
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=max(timeout, 0.01) if timeout is not None else None)
            except asyncio.TimeoutError:
                pass

    async def _push(self, app_key: str, url: str, q: DeliveryQueue, batch: list[Delivery]) -> None:
        secret = self.secret_of(app_key) or ""
        body = douyin.push_body([d.payload for d in batch])
        headers = {"app-id": app_key, "event-sign": douyin.event_sign(app_key, body, secret), "Content-Type": "application/json"}
        ok = False
        self.stats["push_attempts"] += 1
        try:
            assert self._http is not None
            async with self._http.post(url, data=body, headers=headers, timeout=aiohttp.ClientTimeout(total=self.push_timeout_s)) as r:
                answer = await r.text()
                ok = r.status == 200 and _is_success(answer)
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError):
            ok = False
        if ok:
            self.stats["push_ok"] += 1
            for d in batch:
                q.ack_entry(d)
        else:
            self.stats["push_failed"] += 1
            for d in batch:
                q.retry_later(d, self.retry_interval_s)
        self._wake.set()

    # ---------------------------------------------------------------- API

    async def _api(self, request: web.Request) -> web.Response:
        body = await request.read()
        log_id = uuid.uuid4().hex[:24]
        try:
            data = self._handle(request, body)
            out = {"code": douyin.SUCCESS_CODE, "msg": "success", "sub_code": "", "sub_msg": "", "log_id": log_id, "data": data}
        except DouyinError as e:
            self.stats[f"error_{e.code}"] += 1
            out = douyin.error_response(e.code, e.msg, e.sub_code, e.sub_msg, log_id)
        return web.json_response(out, dumps=base.dumps_json)

    def _handle(self, request: web.Request, body: bytes) -> dict[str, Any]:
        q = request.query
        for name in ("app_key", "method", "access_token", "timestamp", "v", "sign"):
            if not q.get(name):
                raise DouyinError(CODE_AUTH, "缺少公共参数", "isv.missing-parameter", f"{name} is required")
        method = q["method"]
        if request.path != "/" + method.replace(".", "/"):
            raise DouyinError(CODE_PARAM, "method与路径不一致", "isv.parameter-invalid", "method does not match the path")
        secret = self.secret_of(q["app_key"])
        if secret is None:
            raise DouyinError(CODE_AUTH, "app_key无效", "isv.app-key-invalid")
        try:
            ts_ms = int(q["timestamp"]) * 1000
        except ValueError:
            raise DouyinError(CODE_TIMESTAMP, "timestamp无效", "isv.timestamp-invalid") from None
        if not self.timestamp_ok(ts_ms):
            raise DouyinError(CODE_TIMESTAMP, "timestamp已过期", "isv.timestamp-invalid")
        try:
            param_json = body.decode("utf-8")
        except UnicodeDecodeError:
            raise DouyinError(CODE_PARAM, "param_json不是UTF-8", "isv.parameter-invalid") from None
        sign_method = q.get("sign_method", "md5")
        signed = {"app_key": q["app_key"], "method": method, "param_json": param_json, "timestamp": q["timestamp"], "v": q["v"], "sign_method": sign_method}
        if sign_method not in ("md5", "hmac-sha256") or douyin.sign(signed, secret) != q["sign"]:
            self.stats["bad_signature"] += 1
            raise DouyinError(CODE_AUTH, "签名错误", "isv.sign-invalid")
        shop = self.shop_by_token(q["access_token"])
        if shop is None or shop.app_key != q["app_key"]:
            raise DouyinError(CODE_TOKEN, "access_token无效", "isv.access-token-invalid")
        fault = self.fault(q["app_key"])
        if fault in ("limit", "throttle"):
            raise DouyinError(CODE_BUSY, "系统繁忙", "isp.system-busy", "请稍后重试")
        if fault == "fail":
            raise DouyinError(CODE_UNAVAILABLE, "服务暂不可用", "isp.service-unavailable")
        try:
            params = json.loads(param_json) if param_json.strip() else {}
        except ValueError:
            raise DouyinError(CODE_PARAM, "param_json格式错误", "isv.parameter-invalid") from None
        if not isinstance(params, dict):
            raise DouyinError(CODE_PARAM, "param_json格式错误", "isv.parameter-invalid")
        self.stats[method] += 1
        if method == "order.orderDetail":
            return self._order_detail(shop, params)
        if method == "sku.syncStock":
            return self._sync_stock(shop, params)
        if method == "sku.detail":
            return self._sku_detail(shop, params)
        raise DouyinError(CODE_PARAM, "方法不存在", "isv.method-not-exist", method)

    def _order_detail(self, shop: SimShop, p: dict[str, Any]) -> dict[str, Any]:
        order_id = str(p.get("shop_order_id") or "")
        order = self.orders.get(order_id)
        if order is None or order.shop_id != shop.shop_id:
            raise DouyinError(CODE_PARAM, "订单不存在", "isv.parameter-invalid:order", f"order {order_id} not found")
        return douyin.order_detail_response(order)["data"]

    def _resolve_sku(self, shop: SimShop, p: dict[str, Any]) -> str:
        sku = str(p.get("sku_id") or "")
        if not sku:
            code = p.get("code") or p.get("out_sku_id")
            matches = [s for (sid, s), info in self.skus.items() if sid == shop.shop_id and code and info.merchant_code == str(code)]
            sku = matches[0] if len(matches) == 1 else ""
        if not sku or (shop.shop_id, sku) not in self.stock:
            raise DouyinError(CODE_PARAM, "参数错误", "isv.parameter-invalid:5", "sku not found")
        product = p.get("product_id")
        if product not in (None, "", 0) and str(product) != self.skus[(shop.shop_id, sku)].listing_id:
            raise DouyinError(CODE_PARAM, "参数错误", "isv.parameter-invalid:5", "sku is not on that product")
        return sku

    def _sync_stock(self, shop: SimShop, p: dict[str, Any]) -> dict[str, Any]:
        sku = self._resolve_sku(shop, p)
        try:
            quantity = int(p.get("stock_num"))  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise DouyinError(CODE_PARAM, "参数错误", "isv.parameter-invalid:stock_num") from None
        incremental = bool(p.get("incremental", False))
        if incremental:
            idem = str(p.get("idempotent_id") or "")
            if not idem:
                raise DouyinError(CODE_PARAM, "参数错误", "isv.parameter-invalid:idempotent_id", "incremental needs idempotent_id")
            if idem in self._idempotent_ids:
                return {}
            self._idempotent_ids.add(idem)
        elif quantity < 0:
            raise DouyinError(CODE_PARAM, "参数错误", "isv.parameter-invalid:stock_num")
        try:
            self.write_stock(shop.shop_id, sku, quantity, incremental=incremental, method="sku.syncStock")
        except ValueError:
            raise DouyinError(CODE_PARAM, "库存不足", "isv.parameter-invalid:stock_num") from None
        return {}

    def _sku_detail(self, shop: SimShop, p: dict[str, Any]) -> dict[str, Any]:
        sku = self._resolve_sku(shop, p)
        info = self.skus[(shop.shop_id, sku)]
        return {
            "id": int(sku) if sku.isdigit() else sku,
            "product_id": int(info.listing_id) if info.listing_id.isdigit() else info.listing_id,
            "code": info.merchant_code,
            "stock_num": self.stock[(shop.shop_id, sku)],
        }


def _is_success(text: str) -> bool:
    try:
        doc = json.loads(text)
    except ValueError:
        return False
    return isinstance(doc, dict) and doc.get("code") == 0 and doc.get("msg") == "success"

