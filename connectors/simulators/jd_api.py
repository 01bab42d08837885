"""JD.com JOS gateway simulator: `/routerjson` with `jingdong.pop.order.search`,
`jingdong.stock.write.updateSkuStock` and a stock read (`jingdong.stock.read.findSkuStock`).

Models:
  - JOS system parameters (method, app_key, access_token, timestamp `yyyy-MM-dd HH:mm:ss.SSS+0800`,
    v, sign_method, `360buy_param_json`) and the md5 signature of `connectors.jd.sign` (empty
    values skipped); errors as `{"error_response":{"code":"..","zh_desc":..,"en_desc":..}}`.
  - Order search by modified-time window (`start_date` / `end_date`, Beijing time, both ends
    inclusive), optional `order_state` filter (comma list), `page` (1-based) and `page_size`
    (<= 100), sorted by modified time then order id; `orderTotal` is the count in the window.
    Sellers only see paid orders (an order closed before payment never shows up).
  - Late writes: with `max_delay_s` an order version becomes searchable up to that long after
    it happened, carrying its earlier `modified` time, so a poller whose windows do not overlap
    by more than that misses it. `duplicate_rate` lists an order twice on a page; `reorder`
    shuffles each page (paging stays consistent).
  - Every order version is a `SimEvent` (event id `orderId@modified:state`).
  - Stock: `updateSkuStock` (absolute, per shop); the stock read returns `skuStocks`.

Unconfirmed (the reference gives the error shape, not the codes): the numeric codes below, the
throttle code in particular, and the stock-read method's response shape.
Leaves out: order detail (`jingdong.pop.order.get`), pagination limits beyond page_size, store
(warehouse) ids in stock writes (`storeId` accepted and ignored), LOCKED / PAUSE states.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any, Optional, Sequence

from aiohttp import web

from connectors import base, jd
from connectors.simulated import SimLine, SimOrder
from connectors.simulators.base_api import Knobs, PlatformSim, SimShop, request_params

# Codes (unconfirmed; keep connectors/adapters/jd.py in step).
CODE_MISSING_PARAM = "5"
CODE_INVALID_PARAM = "6"
CODE_INVALID_TIMESTAMP = "8"
CODE_INVALID_SIGN = "14"
CODE_INVALID_TOKEN = "19"
CODE_INVALID_APP_KEY = "15"
CODE_INVALID_METHOD = "22"
CODE_UNAVAILABLE = "66"  # service temporarily unavailable: retry
CODE_THROTTLED = "67"  # call frequency limited


class JosError(Exception):
    def __init__(self, code: str, zh: str, en: str) -> None:
        super().__init__(code, en)
        self.code, self.zh, self.en = code, zh, en


def response_key(method: str) -> str:
    """jingdong.pop.order.search -> jingdong_pop_order_search_responce (sic)."""
    return method.replace(".", "_") + "_responce"


class JdSim(PlatformSim):
    platform = "jd"

    def __init__(self, shops: Sequence[SimShop], *, max_page_size: int = 100, knobs: Optional[Knobs] = None, seed: int = 0, **knob_values: Any) -> None:
        super().__init__(shops, knobs=knobs, seed=seed, **knob_values)
        self.max_page_size = max_page_size
        # order id -> versions [(searchable from, monotonic), snapshot]
        self.versions: dict[str, list[tuple[float, SimOrder]]] = {}
        self.app.router.add_route("*", "/routerjson", self._gateway)

    # ---------------------------------------------------------------- orders

    def _new_ids(self, seq: int, n_lines: int) -> tuple[str, list[str]]:
        return str(301234567890 + seq), ["" for _ in range(n_lines)]  # lines are keyed by skuId

    def _check_lines(self, lines: Sequence[SimLine]) -> None:
        if len({line.sku_id for line in lines}) != len(lines):
            raise ValueError("a JD order lists each SKU once")

    def _check_partial_allowed(self) -> None:
        raise ValueError("JD orders have one state for all lines")

    def create_order(self, shop_id: str, lines: Sequence[Any], status: Any = "PAID", **kw: Any) -> SimOrder:
        lines = [dict(line, line_id=str(line["sku_id"])) if isinstance(line, dict) else line for line in lines]
        return super().create_order(shop_id, lines, status, **kw)

    def _on_change(self, old: Optional[SimOrder], new: SimOrder, changed: list[SimLine]) -> None:
        delay = self.rng.uniform(0, self.knobs.max_delay_s) if self.knobs.max_delay_s > 0 else 0.0
        self.versions.setdefault(new.order_id, []).append((time.monotonic() + delay, new))
        if new.paid_ms is not None:
            self.record_event(f"{new.order_id}@{new.modified_ms}:{jd.order_state(new)}", new, jd.order_state(new))

    def visible(self, order_id: str) -> Optional[SimOrder]:
        """The latest version search can see now."""
        now = time.monotonic()
        seen = [o for at, o in self.versions.get(order_id, []) if at <= now]
        return seen[-1] if seen else None

    # ---------------------------------------------------------------- gateway

    async def _gateway(self, request: web.Request) -> web.Response:
        form = await request.post() if request.method == "POST" else {}
        params = request_params(request.query, form)
        try:
            body = self._handle(params)
        except JosError as e:
            self.stats[f"error_{e.code}"] += 1
            body = jd.error_response(e.code, e.zh, e.en)
        return web.json_response(body, dumps=base.dumps_json)

    def _handle(self, params: dict[str, str]) -> dict[str, Any]:
        for name in ("method", "app_key", "timestamp", "v", "sign"):
            if not params.get(name):
                raise JosError(CODE_MISSING_PARAM, f"缺少参数{name}", f"missing parameter {name}")
        secret = self.secret_of(params["app_key"])
        if secret is None:
            raise JosError(CODE_INVALID_APP_KEY, "无效的app_key", "invalid app_key")
        ts = params["timestamp"]
        try:
            if not ts.endswith("+0800"):
                raise base.RejectError(base.BAD_TIME, "zone")
            ts_ms = base.gmt8_ms(ts[:-5], "timestamp")
        except base.RejectError:
            raise JosError(CODE_INVALID_TIMESTAMP, "时间戳格式错误", "timestamp must be yyyy-MM-dd HH:mm:ss.SSS+0800") from None
        if not self.timestamp_ok(ts_ms):
            raise JosError(CODE_INVALID_TIMESTAMP, "时间戳已过期", "timestamp out of range")
        if params.get("sign_method", "md5") != "md5" or jd.sign(params, secret) != params["sign"]:
            self.stats["bad_signature"] += 1
            raise JosError(CODE_INVALID_SIGN, "无效签名", "invalid signature")
        shop = self.shop_by_token(params.get("access_token", ""))
        if shop is None or shop.app_key != params["app_key"]:
            raise JosError(CODE_INVALID_TOKEN, "无效的access_token", "invalid access_token")
        fault = self.fault(params["app_key"])
        if fault in ("limit", "throttle"):
            raise JosError(CODE_THROTTLED, "调用频率超限", "call frequency limited, retry later")
        if fault == "fail":
            raise JosError(CODE_UNAVAILABLE, "服务暂时不可用", "service temporarily unavailable")
        try:
            business = json.loads(params.get("360buy_param_json") or "{}")
        except ValueError:
            raise JosError(CODE_INVALID_PARAM, "360buy_param_json格式错误", "360buy_param_json is not JSON") from None
        if not isinstance(business, dict):
            raise JosError(CODE_INVALID_PARAM, "360buy_param_json格式错误", "360buy_param_json is not an object")
        method = params["method"]
        self.stats[method] += 1
        if method == "jingdong.pop.order.search":
            return self._search(shop, business)
        if method == "jingdong.stock.write.updateSkuStock":
            return self._update_stock(shop, business)
        if method == "jingdong.stock.read.findSkuStock":
            return self._read_stock(shop, business)
        raise JosError(CODE_INVALID_METHOD, "无效的方法", f"invalid method {method}")

    # ---------------------------------------------------------------- search

    def _search(self, shop: SimShop, p: dict[str, Any]) -> dict[str, Any]:
        try:
            start = base.gmt8_ms(p.get("start_date"), "start_date")
            end = base.gmt8_ms(p.get("end_date"), "end_date")
        except base.RejectError as exc:
            raise JosError(CODE_INVALID_PARAM, "时间格式错误", exc.reason) from None
        try:
            page = int(p.get("page", 1))
            page_size = int(p.get("page_size", 20))
        except (TypeError, ValueError):
            raise JosError(CODE_INVALID_PARAM, "分页参数错误", "page / page_size must be integers") from None
        if page < 1 or not 1 <= page_size <= self.max_page_size:
            raise JosError(CODE_INVALID_PARAM, "分页参数错误", f"page >= 1, page_size 1..{self.max_page_size}")
        states = {s for s in str(p.get("order_state") or "").split(",") if s}
        found = []
        for order_id in self.versions:
            order = self.visible(order_id)
            if order is None or order.shop_id != shop.shop_id or order.paid_ms is None:
                continue
            if not start <= order.modified_ms <= end:
                continue
            if states and jd.order_state(order) not in states:
                continue
            found.append(order)
        found.sort(key=lambda o: (o.modified_ms, o.order_id))
        page_orders = found[(page - 1) * page_size : page * page_size]
        rendered = [jd.search_order(o) for o in page_orders]
        for doc in list(rendered):
            if self.rng.random() < self.knobs.duplicate_rate:
                rendered.append(doc)
        if self.knobs.reorder:
            self.rng.shuffle(rendered)
        return jd.search_response(rendered, total=len(found))

    # ---------------------------------------------------------------- stock

    def _sku(self, shop: SimShop, p: dict[str, Any]) -> str:
        sku = str(p.get("skuId") or "")
        if not sku:
            raise JosError(CODE_MISSING_PARAM, "缺少参数skuId", "missing parameter skuId")
        if (shop.shop_id, sku) not in self.stock:
            raise JosError(CODE_INVALID_PARAM, "商品不存在", f"skuId {sku} does not exist")
        return sku

    def _update_stock(self, shop: SimShop, p: dict[str, Any]) -> dict[str, Any]:
        sku = self._sku(shop, p)
        try:
            quantity = int(p.get("stockNum"))  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise JosError(CODE_INVALID_PARAM, "库存数错误", "stockNum must be an integer") from None
        if quantity < 0:
            raise JosError(CODE_INVALID_PARAM, "库存数错误", "stockNum must not be negative")
        self.write_stock(shop.shop_id, sku, quantity, incremental=False, method="jingdong.stock.write.updateSkuStock")
        return {response_key("jingdong.stock.write.updateSkuStock"): {"code": "0", "success": True, "request_id": uuid.uuid4().hex[:16]}}

    def _read_stock(self, shop: SimShop, p: dict[str, Any]) -> dict[str, Any]:
        sku = self._sku(shop, p)
        return {
            response_key("jingdong.stock.read.findSkuStock"): {
                "code": "0",
                "skuStocks": [{"skuId": int(sku) if sku.isdigit() else sku, "stockNum": self.stock[(shop.shop_id, sku)]}],
            }
        }
