"""Taobao / Tmall TOP gateway simulator: `/router/rest` with TMC consume/confirm, trade fullinfo,
item / SKU stock writes and an item read for reconciliation.

Models:
  - TOP system parameters and signing (md5 and hmac, `connectors.tmall.sign`), the 10 minute
    timestamp tolerance (code 31), bad signature (25), bad app key (29), bad or foreign session
    (27), missing / invalid arguments (40 / 41), unknown method (22); every error in TOP's
    `error_response` shape with HTTP 200, as TOP answers.
  - Throttling with code 7: sub_code `accesscontrol.limited-by-app-access-count` when the per-app
    rate limit is exceeded, `accesscontrol.limited-by-api-access-count` for the random
    `throttle_rate`; sub_msg says how long the ban lasts. `fail_rate` answers code 15 with an
    `isp.*` sub_code (a transient remote error).
  - TMC per app key: every order change produces one message per affected sub-order (topic per
    status, `taobao_refund_RefundSuccess` for a single-line refund); `consume` hands out up to
    `quantity` (10..200) visible messages and hides them for `visibility_timeout_s`; what is not
    confirmed by then is delivered again. `bare_rate` of the messages carry only tid/oid/status
    (no num_iid / sku_id / num), as real TMC trade messages do, so a consumer has to fetch
    `taobao.trade.fullinfo.get`. Duplicates (`duplicate_rate`) are separate deliveries of the same
    message id, so a duplicate can arrive after the original was confirmed.
  - Stock writes: `taobao.item.quantity.update` (one SKU, or the item for SKU-less items; type 1
    full overwrite / 2 incremental) and `taobao.skus.quantity.update` (one item, up to 20 SKUs,
    all or nothing); `taobao.item.seller.get` returns the item's SKU quantities.

Leaves out: TMC groups (one default group per app), message retention (24 h), topic
subscription management, `taobao.trade.fullinfo.get` field selection, presale / locked stock
(库存占用), SELLER_CONSIGNED_PART (partial shipment), and the exact sub_codes of stock-write
parameter errors (unconfirmed; `isv.invalid-parameter:*` here).
"""

from __future__ import annotations

import itertools
import uuid
from typing import Any, Optional, Sequence

from aiohttp import web

from connectors import base, tmall
from connectors.simulated import SimLine, SimOrder
from connectors.simulators.base_api import DeliveryQueue, Knobs, PlatformSim, SimShop, now_ms, request_params
from connectors.simulators.tmall_traffic import TOPIC_OF_STATUS

REFUND_SUCCESS = "taobao_refund_RefundSuccess"
MAX_SKUS_PER_CALL = 20
_SESSION_METHODS = {
    "taobao.trade.fullinfo.get",
    "taobao.item.quantity.update",
    "taobao.skus.quantity.update",
    "taobao.item.seller.get",
}


class TopError(Exception):
    def __init__(self, code: int, msg: str, sub_code: str = "", sub_msg: str = "") -> None:
        super().__init__(code, msg, sub_code, sub_msg)
        self.code, self.msg, self.sub_code, self.sub_msg = code, msg, sub_code, sub_msg


def response_key(method: str) -> str:
    """taobao.tmc.messages.consume -> tmc_messages_consume_response."""
    return method.removeprefix("taobao.").replace(".", "_") + "_response"


class TmallSim(PlatformSim):
    platform = "tmall"

    def __init__(
        self,
        shops: Sequence[SimShop],
        *,
        visibility_timeout_s: float = 30.0,  # TMC's real redelivery interval is unconfirmed
        bare_rate: float = 0.0,
        ban_seconds: int = 1,
        knobs: Optional[Knobs] = None,
        seed: int = 0,
        **knob_values: Any,
    ) -> None:
        super().__init__(shops, knobs=knobs, seed=seed, **knob_values)
        self.visibility_timeout_s = visibility_timeout_s
        self.bare_rate = bare_rate
        self.ban_seconds = ban_seconds
        self.queues: dict[str, DeliveryQueue] = {}
        self._message_ids = itertools.count(7_000_000_000_000_000_001)  # beyond 2**53, as real ids
        self.app.router.add_route("*", "/router/rest", self._gateway)

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
        out["delivered"] = sum(q.delivered for q in self.queues.values())
        out["redelivered"] = sum(q.redelivered for q in self.queues.values())
        out["duplicated"] = sum(q.duplicated for q in self.queues.values())
        return out

    # ---------------------------------------------------------------- orders -> TMC messages

    def _new_ids(self, seq: int, n_lines: int) -> tuple[str, list[str]]:
        tid = 3725362658812595205 + seq * 1000  # tids exceed 2**53
        return str(tid), [str(tid + 1 + i) for i in range(n_lines)]

    def _on_change(self, old: Optional[SimOrder], new: SimOrder, changed: list[SimLine]) -> None:
        whole_order = old is None or old.status != new.status
        topic = TOPIC_OF_STATUS[new.status] if whole_order else REFUND_SUCCESS
        shop = self.shops[new.shop_id]
        for line in changed:
            message_id = next(self._message_ids)
            bare = self.rng.random() < self.bare_rate
            message = tmall.tmc_message(new, topic, message_id, line, pub_ms=now_ms(), with_line_fields=not bare)
            self.queue(shop.app_key).put(str(message_id), message, shop.shop_id)
            self.record_event(str(message_id), new, topic)

    # ---------------------------------------------------------------- gateway

    async def _gateway(self, request: web.Request) -> web.Response:
        form = await request.post() if request.method == "POST" else {}
        params = request_params(request.query, form)
        request_id = uuid.uuid4().hex[:13]
        try:
            body = self._handle(params)
        except TopError as e:
            self.stats[f"error_{e.code}"] += 1
            body = tmall.error_response(e.code, e.msg, e.sub_code, e.sub_msg, request_id)
        else:
            body.setdefault(response_key(params["method"]), {})["request_id"] = request_id
        return web.json_response(body, dumps=base.dumps_json)

    def _handle(self, params: dict[str, str]) -> dict[str, Any]:
        for name in ("method", "app_key", "timestamp", "v", "sign_method", "sign"):
            if not params.get(name):
                raise TopError(40, "Missing required arguments", f"isv.missing-parameter:{name}", f"{name} is required")
        app_key = params["app_key"]
        secret = self.secret_of(app_key)
        if secret is None:
            raise TopError(29, "Invalid app Key", "isv.appkey-not-exists")
        try:
            ts_ms = base.gmt8_ms(params["timestamp"], "timestamp")
        except base.RejectError:
            raise TopError(31, "Invalid timestamp", sub_msg="timestamp must be yyyy-MM-dd HH:mm:ss (GMT+8)") from None
        if not self.timestamp_ok(ts_ms):
            raise TopError(31, "Invalid timestamp", sub_msg="timestamp differs from server time by more than 10 minutes")
        if params["sign_method"] not in ("md5", "hmac") or tmall.sign(params, secret) != params["sign"]:
            self.stats["bad_signature"] += 1
            raise TopError(25, "Invalid signature")
        method = params["method"]
        shop = None
        if method in _SESSION_METHODS:
            shop = self.shop_by_token(params.get("session", ""))
            if shop is None or shop.app_key != app_key:
                raise TopError(27, "Invalid session", "invalid-sessionkey", "session is invalid or belongs to another app")
        fault = self.fault(app_key)
        if fault == "limit":
            raise TopError(
                7, "App Call Limited", "accesscontrol.limited-by-app-access-count",
                f"This ban will last for {self.ban_seconds} more seconds",
            )
        if fault == "throttle":
            raise TopError(
                7, "App Call Limited", "accesscontrol.limited-by-api-access-count",
                f"This ban will last for {self.ban_seconds} more seconds",
            )
        if fault == "fail":
            raise TopError(15, "Remote service error", "isp.top-remote-connection-timeout", "remote service timed out")
        self.stats[method] += 1
        if method == "taobao.tmc.messages.consume":
            return self._consume(app_key, params)
        if method == "taobao.tmc.messages.confirm":
            return self._confirm(app_key, params)
        assert shop is not None or method not in _SESSION_METHODS
        if method == "taobao.trade.fullinfo.get":
            return self._fullinfo(shop, params)  # type: ignore[arg-type]
        if method == "taobao.item.quantity.update":
            return self._item_quantity_update(shop, params)  # type: ignore[arg-type]
        if method == "taobao.skus.quantity.update":
            return self._skus_quantity_update(shop, params)  # type: ignore[arg-type]
        if method == "taobao.item.seller.get":
            return self._item_seller_get(shop, params)  # type: ignore[arg-type]
        raise TopError(22, "Invalid method", sub_msg=f"{method} does not exist")

    # ---------------------------------------------------------------- TMC

    def _consume(self, app_key: str, params: dict[str, str]) -> dict[str, Any]:
        quantity = _int_param(params, "quantity", 100)
        if not 10 <= quantity <= 200:
            raise TopError(41, "Invalid arguments", "isv.invalid-parameter:quantity", "quantity must be 10..200")
        taken = self.queue(app_key).take(quantity, self.visibility_timeout_s)
        return tmall.tmc_consume_response([d.payload for d in taken])

    def _confirm(self, app_key: str, params: dict[str, str]) -> dict[str, Any]:
        ids = [i for i in params.get("s_message_ids", "").split(",") if i]
        failed = {i for i in params.get("f_message_ids", "").split(",") if i}
        if not ids and not failed:
            raise TopError(40, "Missing required arguments", "isv.missing-parameter:s_message_ids")
        q = self.queue(app_key)
        q.ack(ids)
        if failed:  # handed back: visible again right away
            q.release_ids(failed)
        return {"tmc_messages_confirm_response": {"is_success": True}}

    # ---------------------------------------------------------------- trades

    def _fullinfo(self, shop: SimShop, params: dict[str, str]) -> dict[str, Any]:
        tid = params.get("tid")
        if not tid:
            raise TopError(40, "Missing required arguments", "isv.missing-parameter:tid")
        if not params.get("fields"):
            raise TopError(40, "Missing required arguments", "isv.missing-parameter:fields")
        order = self.orders.get(tid)
        if order is None or order.shop_id != shop.shop_id:
            raise TopError(15, "Remote service error", "isv.trade-not-exist", f"trade {tid} does not exist")
        return tmall.fullinfo_response(order)

    # ---------------------------------------------------------------- stock

    def _item_skus(self, shop: SimShop, num_iid: str) -> list[str]:
        return sorted(sku for (s, sku), info in self.skus.items() if s == shop.shop_id and info.listing_id == num_iid)

    def _item_json(self, shop: SimShop, num_iid: str, skus: Optional[list[str]] = None) -> dict[str, Any]:
        all_skus = self._item_skus(shop, num_iid)
        item: dict[str, Any] = {
            "num_iid": int(num_iid) if num_iid.isdigit() else num_iid,
            "num": sum(self.stock[(shop.shop_id, s)] for s in all_skus),
            "modified": base.format_gmt8(now_ms()),
        }
        listed = [s for s in (all_skus if skus is None else skus) if s != num_iid]
        if listed:
            item["skus"] = {
                "sku": [
                    {
                        "sku_id": int(s) if s.isdigit() else s,
                        "quantity": self.stock[(shop.shop_id, s)],
                        "outer_id": self.skus[(shop.shop_id, s)].merchant_code,
                    }
                    for s in listed
                ]
            }
        return item

    def _update_type(self, params: dict[str, str]) -> bool:
        """True for incremental (type 2)."""
        kind = params.get("type", "1") or "1"
        if kind not in ("1", "2"):
            raise TopError(41, "Invalid arguments", "isv.invalid-parameter:type", "type must be 1 or 2")
        return kind == "2"

    def _item_quantity_update(self, shop: SimShop, params: dict[str, str]) -> dict[str, Any]:
        num_iid = params.get("num_iid")
        if not num_iid:
            raise TopError(40, "Missing required arguments", "isv.missing-parameter:num_iid")
        incremental = self._update_type(params)
        quantity = _int_param(params, "quantity", None)
        skus = self._item_skus(shop, num_iid)
        if not skus:
            raise TopError(15, "Remote service error", "isv.item-not-exist", f"item {num_iid} does not exist")
        if params.get("sku_id"):
            sku = params["sku_id"]
            if sku not in skus:
                raise TopError(15, "Remote service error", "isv.invalid-parameter:sku_id", f"sku {sku} is not on item {num_iid}")
        elif params.get("outer_id"):
            matches = [s for s in skus if self.skus[(shop.shop_id, s)].merchant_code == params["outer_id"]]
            if len(matches) != 1:
                raise TopError(15, "Remote service error", "isv.invalid-parameter:outer_id", "outer_id matches no single sku")
            sku = matches[0]
        elif skus == [num_iid]:  # an item without SKUs: stock on the item itself
            sku = num_iid
        else:
            raise TopError(41, "Invalid arguments", "isv.invalid-parameter:sku_id", "item has SKUs: sku_id or outer_id required")
        if quantity is None or (quantity < 0 and not incremental):
            raise TopError(41, "Invalid arguments", "isv.invalid-parameter:quantity")
        try:
            self.write_stock(shop.shop_id, sku, quantity, incremental=incremental, method="taobao.item.quantity.update")
        except ValueError:
            raise TopError(15, "Remote service error", "isv.invalid-parameter:quantity", "stock would go negative") from None
        return {"item_quantity_update_response": {"item": self._item_json(shop, num_iid, [sku])}}

    def _skus_quantity_update(self, shop: SimShop, params: dict[str, str]) -> dict[str, Any]:
        num_iid = params.get("num_iid")
        if not num_iid:
            raise TopError(40, "Missing required arguments", "isv.missing-parameter:num_iid")
        incremental = self._update_type(params)
        raw = params.get("skuid_quantities") or params.get("outerid_quantities")
        if not raw:
            raise TopError(40, "Missing required arguments", "isv.missing-parameter:skuid_quantities")
        by_outer = not params.get("skuid_quantities")
        pairs: list[tuple[str, int]] = []
        for part in raw.split(";"):
            if not part:
                continue
            key, sep, qty = part.partition(":")
            try:
                pairs.append((key, int(qty)))
            except ValueError:
                raise TopError(41, "Invalid arguments", "isv.invalid-parameter:skuid_quantities", f"bad pair {part!r}") from None
        if not pairs or len(pairs) > MAX_SKUS_PER_CALL:
            raise TopError(41, "Invalid arguments", "isv.invalid-parameter:skuid_quantities", f"1..{MAX_SKUS_PER_CALL} SKUs per call")
        skus = self._item_skus(shop, num_iid)
        if not skus:
            raise TopError(15, "Remote service error", "isv.item-not-exist", f"item {num_iid} does not exist")
        resolved: list[tuple[str, int]] = []
        for key, qty in pairs:
            if by_outer:
                matches = [s for s in skus if self.skus[(shop.shop_id, s)].merchant_code == key]
                sku = matches[0] if len(matches) == 1 else None
            else:
                sku = key if key in skus else None
            if sku is None:
                raise TopError(15, "Remote service error", "isv.invalid-parameter:sku_id", f"sku {key} is not on item {num_iid}")
            level = self.stock[(shop.shop_id, sku)] + qty if incremental else qty
            if level < 0:
                raise TopError(41, "Invalid arguments", "isv.invalid-parameter:quantity", f"sku {key}: stock would be {level}")
            resolved.append((sku, qty))
        for sku, qty in resolved:  # all checked first: the call is all or nothing
            self.write_stock(shop.shop_id, sku, qty, incremental=incremental, method="taobao.skus.quantity.update")
        return {"skus_quantity_update_response": {"item": self._item_json(shop, num_iid, [s for s, _ in resolved])}}

    def _item_seller_get(self, shop: SimShop, params: dict[str, str]) -> dict[str, Any]:
        num_iid = params.get("num_iid")
        if not num_iid:
            raise TopError(40, "Missing required arguments", "isv.missing-parameter:num_iid")
        if not self._item_skus(shop, num_iid):
            raise TopError(15, "Remote service error", "isv.item-not-exist", f"item {num_iid} does not exist")
        return {"item_seller_get_response": {"item": self._item_json(shop, num_iid)}}


def _int_param(params: dict[str, str], name: str, default: Optional[int]) -> Optional[int]:
    value = params.get(name)
    if value in (None, ""):
        return default
    try:
        return int(value)
    except ValueError:
        raise TopError(41, "Invalid arguments", f"isv.invalid-parameter:{name}", f"{name} must be an integer") from None
