"""Pinduoduo adapter: message WebSocket client and `/api/router` stock writes.

Per client id (app): connect to `/message/{client_id}/{ts_ms}/{sign}` (signed URL, fresh
timestamp per attempt; connection attempts back off exponentially with jitter through tenacity,
and the backoff starts over after a connection was made), send `HeartBeat` frames every
`heartbeat_s`, and treat a connection silent for 3 heartbeats as dead. Each `Common` frame is
published as a `frame` raw record (key = order_sn from `content.tid`, `message-id` = frame id,
shop from `message.mallID`), then the order is fetched with `pdd.order.information.get` and
published as an `order` record, and only then is the frame acknowledged with an `Ack`. Frames not
acknowledged (crash, cut connection) come back from PDD; a frame id already in raw.pdd is acked
without a second write (`connectors.dedupe`), its order fetched again only if that did not make it.

`ShopCredentials.api_base_url` is the gateway origin (`https://gw-api.pinduoduo.com`; `/api/router`
is appended); the WebSocket origin is `ws_base_url`, by default the same host with ws:// / wss://.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any, AsyncIterator, Iterable, Optional, Sequence

import aiohttp
from tenacity import AsyncRetrying, retry_if_exception_type, wait_exponential_jitter

from connectors import base, metrics, pdd
from connectors.adapters.common import (
    AdapterBase,
    ApiError,
    PermanentApiError,
    Sink,
    ThrottledError,
    TransientApiError,
    check_http,
    now_ms,
    records_from,
    result_for_error,
    secret,
    sleep_unless_stopped,
    token,
    with_retries,
    with_throttle_waits,
    written,
)
from connectors.base import RawRecord, StockWrite, StockWriteResult
from connectors.dedupe import Seen
from connectors.publisher import RawPublisher
from stockstream.settings import ShopCredentials

log = logging.getLogger(__name__)

THROTTLE_CODES = {52101, 70031}
TRANSIENT_CODES = {52102, 52103}


class ConnectionLost(Exception):
    pass


def classify_error(err: Any) -> ApiError:
    err = err if isinstance(err, dict) else {}
    code = err.get("error_code")
    message = f"{err.get('error_msg', '')} {err.get('sub_msg', '')}".strip()
    sub_code = str(err.get("sub_code") or "")
    if code in THROTTLE_CODES:
        return ThrottledError(str(code), message, sub_code, retry_after_s=1.0)
    if code in TRANSIENT_CODES:
        return TransientApiError(str(code), message, sub_code)
    return PermanentApiError(str(code), message, sub_code)


def ws_origin(api_base_url: str) -> str:
    if api_base_url.startswith("https://"):
        return "wss://" + api_base_url[len("https://") :]
    if api_base_url.startswith("http://"):
        return "ws://" + api_base_url[len("http://") :]
    return api_base_url


class PddAdapter(AdapterBase):
    platform = pdd.PLATFORM
    followup_kinds = (pdd.KIND_ORDER,)
    # Unconfirmed codes (as the simulator): 10016 bad signature, 10017 bad / expired timestamp.
    signature_codes = frozenset({"10016"})
    timestamp_codes = frozenset({"10017"})

    def __init__(
        self,
        shops: Iterable[ShopCredentials],
        publisher: Optional[RawPublisher] = None,
        *,
        sink: Optional[Sink] = None,
        http: Optional[aiohttp.ClientSession] = None,
        ws_base_url: Optional[str] = None,
        heartbeat_s: float = 10.0,
        reconnect_max_s: float = 30.0,
        fetch_order: bool = True,
        request_timeout_s: float = 10.0,
        **options: Any,
    ) -> None:
        """`options`: `AdapterBase` settings, dedupe_window_s, dedupe_max_ids."""
        super().__init__(shops, publisher, sink=sink, http=http, request_timeout_s=request_timeout_s, **options)
        self.ws_base_url = ws_base_url
        self.heartbeat_s = heartbeat_s
        self.reconnect_max_s = reconnect_max_s
        self.fetch_order = fetch_order
        self.connected: dict[str, bool] = {}

    # ---------------------------------------------------------------- WebSocket

    async def run(self, stop: Optional[asyncio.Event] = None, sink: Optional[Sink] = None) -> None:
        """Hold one connection per app until `stop` is set or the task is cancelled."""
        await self.restore_delivered()
        await asyncio.gather(*(self._run_app(shops[0], stop, sink) for shops in self.book.apps().values()))

    def push(self, shop: Optional[ShopCredentials] = None) -> AsyncIterator[RawRecord]:
        """`Connector.push`: frames of the shop's app (every shop of the app) as records; a frame
        is acknowledged when the consumer asks for the record after its batch."""
        apps = [shops[0] for shops in self.book.apps().values() if shop is None or shops[0].app_key == shop.app_key]

        async def work(sink: Sink) -> None:
            await self.restore_delivered()
            await asyncio.gather(*(self._run_app(app, None, sink) for app in apps))

        return records_from(work)

    async def _run_app(self, app: ShopCredentials, stop: Optional[asyncio.Event], sink: Optional[Sink]) -> None:
        while stop is None or not stop.is_set():
            ws = await self._connect(app)
            self.connected[app.app_key] = True
            try:
                await self._consume(app, ws, stop, sink)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # unacked frames come back on the next connection
                self.counters["disconnects"] += 1
                log.info("pdd connection for %s lost: %s", app.app_key, exc)
            finally:
                self.connected[app.app_key] = False
                if not ws.closed:
                    await ws.close()
            await sleep_unless_stopped(0.05, stop)

    async def _connect(self, app: ShopCredentials) -> aiohttp.ClientWebSocketResponse:
        origin = (self.ws_base_url or ws_origin(app.api_base_url)).rstrip("/")
        async for attempt in AsyncRetrying(
            wait=wait_exponential_jitter(initial=0.1, max=self.reconnect_max_s),
            retry=retry_if_exception_type((aiohttp.ClientError, asyncio.TimeoutError, OSError)),
            before_sleep=lambda state: self.counters.update(["connect_failed"]),
        ):
            with attempt:
                url = origin + pdd.ws_path(app.app_key, now_ms(), secret(app))  # fresh timestamp each try
                try:
                    ws = await self.http.ws_connect(url, timeout=aiohttp.ClientWSTimeout(ws_close=5.0))
                except aiohttp.WSServerHandshakeError as exc:
                    if exc.status == 401:
                        self.counters["auth_failed"] += 1
                        # The refusal's body (PDD's error shape) is not exposed by the WebSocket
                        # client, so a skewed clock shows here as a signature refusal too; the
                        # gateway calls (order fetch, stock writes) tell the two apart.
                        self.reject(metrics.BAD_SIGNATURE)
                        log.error("pdd refused the WebSocket signature of %s", app.app_key)
                    raise
                self.counters["connects"] += 1
                return ws
        raise AssertionError("unreachable")

    async def _consume(self, app: ShopCredentials, ws: aiohttp.ClientWebSocketResponse, stop: Optional[asyncio.Event], sink: Optional[Sink]) -> None:
        heartbeats = asyncio.create_task(self._heartbeats(ws))
        stopper = asyncio.create_task(stop.wait()) if stop is not None else None
        try:
            while True:
                receive = asyncio.ensure_future(ws.receive(timeout=self.heartbeat_s * 3))
                waiting = {receive} | ({stopper} if stopper is not None else set())
                done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
                if receive not in done:
                    receive.cancel()
                    return
                msg = receive.result()
                if msg.type != aiohttp.WSMsgType.TEXT:
                    raise ConnectionLost(f"{msg.type.name} {msg.data!r}")
                try:
                    frame = json.loads(msg.data)
                except ValueError:
                    self.reject(metrics.MALFORMED)
                    continue
                if not isinstance(frame, dict):
                    continue
                if frame.get("commandType") == "Common":
                    await self._handle_frame(frame, sink)
                    await ws.send_str(base.dumps_json(pdd.ack_frame(frame["id"], now_ms())))
                    self.counters["acked"] += 1
        finally:
            heartbeats.cancel()
            if stopper is not None:
                stopper.cancel()

    async def _heartbeats(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        while not ws.closed:
            await ws.send_str(base.dumps_json({"commandType": "HeartBeat", "time": now_ms(), "sendTime": now_ms()}))
            await asyncio.sleep(self.heartbeat_s)

    async def _handle_frame(self, frame: dict[str, Any], sink: Optional[Sink]) -> None:
        message = frame.get("message") if isinstance(frame.get("message"), dict) else {}
        try:
            content = base.nested_json(message.get("content"), "content")
        except base.RejectError:
            content = {}
        order_sn = content.get("tid")
        mall = message.get("mallID") if message.get("mallID") not in (None, "") else content.get("mall_id")
        shop = self.book.get(mall)
        if shop is None:
            self.counters["unknown_shop"] += 1
        shop_id = shop.shop_id if shop is not None else str(mall or "")
        key = str(order_sn) if order_sn not in (None, "") else f"frame-{frame.get('id')}"
        frame_id = str(frame.get("id"))
        seen = self.seen(frame_id)
        if seen == Seen.NEW:
            record = base.raw_record(
                platform=self.platform, shop=shop_id, kind=pdd.KIND_FRAME, key=key,
                payload=base.dumps_bytes(frame), received_at_ms=now_ms(), message_id=frame_id,
            )
            await (sink or self.sink)(self.platform, [record])
            self.delivered.mark([frame_id], Seen.WRITTEN)
            self.counters["published"] += 1
        details: list[RawRecord] = []
        if self.fetch_order and shop is not None and order_sn not in (None, "") and seen != Seen.COMPLETE:
            doc = await self._order(shop, str(order_sn))
            if doc is not None:
                details.append(
                    base.raw_record(
                        platform=self.platform, shop=shop_id, kind=pdd.KIND_ORDER, key=str(order_sn),
                        payload=base.dumps_bytes(doc), received_at_ms=now_ms(),
                    )
                )
        await self.publish(details, sink)
        self.delivered.mark([frame_id], Seen.COMPLETE)
        self.count_deliveries(int(seen == Seen.NEW), int(seen != Seen.NEW))

    async def _order(self, shop: ShopCredentials, order_sn: str) -> Optional[dict[str, Any]]:
        try:
            doc = await with_throttle_waits(lambda: self.call(shop, "pdd.order.information.get", {"order_sn": order_sn}))
        except PermanentApiError as exc:
            self.counters["order_fetch_failed"] += 1
            log.warning("pdd order %s/%s failed permanently: %s", shop.shop_id, order_sn, exc)
            return None
        self.counters["order_fetched"] += 1
        return doc

    # ---------------------------------------------------------------- API

    async def call(self, shop: ShopCredentials, method: str, business: dict[str, Any]) -> dict[str, Any]:
        params = {
            "type": method,
            "client_id": shop.app_key,
            "access_token": token(shop),
            "timestamp": pdd.timestamp(now_ms()),
            "data_type": "JSON",
            "version": "V1",
        }
        params.update({k: v if isinstance(v, str) else json.dumps(v) for k, v in business.items() if v is not None})
        params["sign"] = pdd.sign(params, secret(shop))
        url = shop.api_base_url.rstrip("/") + "/api/router"
        async with self.http.post(url, data=params) as response:
            check_http(response)
            text = await response.text()
        try:
            doc = base.loads_json(text)
        except ValueError:
            raise TransientApiError("bad_json", "gateway answered with something that is not JSON") from None
        if not isinstance(doc, dict):
            raise TransientApiError("bad_json", "gateway answered with a non-object")
        if "error_response" in doc:
            raise self.note_api_error(classify_error(doc["error_response"]))
        return doc

    async def write_stock(self, shop: ShopCredentials, writes: Sequence[StockWrite]) -> Sequence[StockWriteResult]:
        """`pdd.goods.quantity.update`, update_type 1 (full overwrite), one SKU per call."""
        results = []
        for w in writes:
            if not w.listing_id:
                results.append(result_for_error(w, PermanentApiError("missing_goods_id", "PDD stock writes need goods_id")))
                continue
            business = {"goods_id": w.listing_id, "sku_id": w.platform_sku_id, "quantity": str(w.quantity), "update_type": "1"}
            try:
                doc = await with_retries(lambda b=business: self.call(shop, "pdd.goods.quantity.update", b))
            except Exception as exc:
                results.append(result_for_error(w, exc))
                continue
            if not (doc.get("goods_quantity_update_response") or {}).get("is_success"):
                results.append(result_for_error(w, PermanentApiError("not_success", "is_success is false")))
                continue
            results.append(written(w))
            self.counters["stock_writes"] += 1
        return self.stock_results(results)

    async def read_stock(self, shop: ShopCredentials, goods_id: str) -> dict[str, int]:
        doc = await with_throttle_waits(lambda: self.call(shop, "pdd.goods.detail.get", {"goods_id": goods_id}))
        body = doc.get("goods_detail_get_response") or {}
        return {str(s["sku_id"]): int(s["quantity"]) for s in body.get("sku_list") or []}
