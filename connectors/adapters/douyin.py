"""Douyin shop adapter: push receiver (aiohttp) and open-API stock writes.

A push is answered `{"code":0,"msg":"success"}` only after: the `event-sign` header verified over
the raw body (else 401, counted in `bad_signatures`; nothing published), each message published
as a `push` raw record (key = order id `p_id`, `message-id` = msg_id, shop from `data.shop_id`),
the order's `order.orderDetail` fetched and published as a `detail` record. Anything failing on
the way answers an error, so Douyin pushes again; a pushed msg_id already in raw.douyin is not
written again (`connectors.dedupe`), only its detail fetched if that did not make it.

One receiver serves every configured shop: pushes name their shop, and `app-id` picks the
secret. `ShopCredentials.api_base_url` is the API origin (`https://openapi-fxg.jinritemai.com`);
the method path is appended.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, AsyncIterator, Iterable, Optional, Sequence

import aiohttp
from aiohttp import web

from connectors import base, douyin, metrics
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

THROTTLE_CODES = {50002}  # system busy (the reference's throttle code)
TRANSIENT_CODES = {20000, 50001}  # unconfirmed
FAILURE_ANSWER = {"code": 1, "msg": "retry later"}


def classify_response(doc: Any) -> Optional[ApiError]:
    if not isinstance(doc, dict):
        return TransientApiError("bad_json", "response is not an object")
    code = doc.get("code")
    if code == douyin.SUCCESS_CODE:
        return None
    message = f"{doc.get('msg', '')} {doc.get('sub_msg', '')}".strip()
    sub_code = str(doc.get("sub_code") or "")
    if code in THROTTLE_CODES:
        return ThrottledError(str(code), message, sub_code, retry_after_s=1.0)
    if code in TRANSIENT_CODES or sub_code.startswith("isp."):
        return TransientApiError(str(code), message, sub_code)
    return PermanentApiError(str(code), message, sub_code)


class DouyinAdapter(AdapterBase):
    platform = douyin.PLATFORM
    followup_kinds = (douyin.KIND_DETAIL,)
    # Unconfirmed codes (as the simulator): 30001 with sub_code isv.sign-invalid, 31001 timestamp.
    signature_codes = frozenset({"30001/isv.sign-invalid"})
    timestamp_codes = frozenset({"31001"})

    def __init__(
        self,
        shops: Iterable[ShopCredentials],
        publisher: Optional[RawPublisher] = None,
        *,
        sink: Optional[Sink] = None,
        http: Optional[aiohttp.ClientSession] = None,
        host: str = "127.0.0.1",
        port: int = 0,
        path: str = "/douyin/push",
        sign_method: str = "hmac-sha256",
        fetch_detail: bool = True,
        detail_throttle_waits: int = 3,
        request_timeout_s: float = 10.0,
        **options: Any,
    ) -> None:
        """`options`: `AdapterBase` settings, dedupe_window_s, dedupe_max_ids."""
        super().__init__(shops, publisher, sink=sink, http=http, request_timeout_s=request_timeout_s, **options)
        self.host, self.port, self.path = host, port, path
        self.sign_method = sign_method
        self.fetch_detail = fetch_detail
        self.detail_throttle_waits = detail_throttle_waits
        self.url = ""
        self._runner: Optional[web.AppRunner] = None
        self._active_sink: Optional[Sink] = None
        # Message ids being written by a push in progress. Douyin retries a push it has not seen
        # answered and sends duplicates, concurrently: a second delivery of a message another
        # request is writing waits for that write instead of writing the message again.
        self._writing: dict[str, asyncio.Future[None]] = {}

    # ---------------------------------------------------------------- receiver

    async def start(self) -> str:
        """Listen for pushes (and serve `/metrics`); returns the callback URL to register with
        Douyin. Recently written msg_ids are read back first, so early redeliveries are known."""
        await self.restore_delivered()
        app = web.Application(client_max_size=8 * 1024 * 1024)
        app.router.add_post(self.path, self._receive)
        app.router.add_get("/metrics", _metrics)
        self._runner = web.AppRunner(app, shutdown_timeout=0.5, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://{self.host}:{self.port}{self.path}"
        return self.url

    async def stop(self) -> None:
        """Stop listening; pushes being handled are cut off unanswered (Douyin pushes again)."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        await self.close()

    async def run(self, stop: Optional[asyncio.Event] = None) -> None:
        await self.start()
        try:
            if stop is None:
                await asyncio.Event().wait()
            else:
                await stop.wait()
        finally:
            await self.stop()

    def push(self, shop: Optional[ShopCredentials] = None) -> AsyncIterator[RawRecord]:
        """`Connector.push`: run the receiver and yield what it receives. A push is answered
        success when the consumer asks for the record after its batch. One receiver serves all
        the adapter's shops, so `shop` only documents intent."""

        async def work(sink: Sink) -> None:
            self._active_sink = sink
            try:
                await self.run()
            finally:
                self._active_sink = None

        return records_from(work)

    async def _receive(self, request: web.Request) -> web.Response:
        raw = await request.read()
        app_id = request.headers.get("app-id", "")
        app_secret = self.book.secret_of_app(app_id) if app_id else None
        if app_secret is None or not douyin.verify_event_sign(app_id, raw, app_secret, request.headers.get("event-sign")):
            self.reject(metrics.BAD_SIGNATURE)
            log.warning("douyin push with a bad event-sign (app-id %r) rejected", app_id)
            return web.json_response({"code": 40001, "msg": "invalid event-sign"}, status=401)
        try:
            doc = base.loads_json(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            # Signed by Douyin but unreadable: it can neither be stored nor would a retry help.
            self.reject(metrics.MALFORMED)
            log.error("douyin push body is not JSON; acknowledged and dropped (%d bytes)", len(raw))
            return web.json_response(douyin.PUSH_ACK)
        messages = doc if isinstance(doc, list) else [doc]
        try:
            await self._handle(messages)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.counters["push_failed"] += 1
            log.warning("douyin push not stored, asking for a redelivery: %s", exc)
            return web.json_response(FAILURE_ANSWER, status=500)
        self.counters["push_acked"] += 1
        return web.json_response(douyin.PUSH_ACK)

    async def _handle(self, messages: list[Any]) -> None:
        sink = self._active_sink or self.sink
        received = now_ms()
        records: list[RawRecord] = []
        orders: dict[tuple[str, str], ShopCredentials] = {}
        ids: list[str] = []
        in_flight: list[asyncio.Future[None]] = []
        new_ids: list[str] = []
        duplicates = 0
        for m in messages:
            if not isinstance(m, dict):
                self.reject(metrics.MALFORMED)
                continue
            msg_id = str(m.get("msg_id") or "")
            seen = self.seen(msg_id)
            if msg_id and msg_id in ids:  # the same message twice in one push
                seen = Seen.COMPLETE
            elif seen == Seen.NEW and msg_id in self._writing:
                in_flight.append(self._writing[msg_id])
                seen = Seen.WRITTEN
            ids.append(msg_id)
            try:
                data = base.nested_json(m.get("data"), "data")
            except base.RejectError:
                data = {}
            p_id = data.get("p_id")
            shop = self.book.get(data.get("shop_id"))
            if shop is None:
                self.counters["unknown_shop"] += 1
            shop_id = shop.shop_id if shop is not None else str(data.get("shop_id") or "")
            key = str(p_id) if p_id not in (None, "") else f"push-{msg_id}"
            if seen == Seen.NEW:
                if msg_id:
                    new_ids.append(msg_id)
                records.append(
                    base.raw_record(
                        platform=self.platform, shop=shop_id, kind=douyin.KIND_PUSH, key=key,
                        payload=base.dumps_bytes(m), received_at_ms=received, message_id=msg_id or None,
                    )
                )
            else:
                duplicates += 1
            if self.fetch_detail and shop is not None and p_id not in (None, "") and seen != Seen.COMPLETE:
                orders[(shop.shop_id, str(p_id))] = shop
        loop = asyncio.get_running_loop()
        writing = {msg_id: loop.create_future() for msg_id in new_ids if msg_id not in self._writing}
        self._writing.update(writing)
        try:
            await sink(self.platform, records)
        except BaseException as exc:
            failure = exc if isinstance(exc, Exception) else RuntimeError(f"write interrupted: {exc!r}")
            for fut in writing.values():
                fut.set_exception(failure)
                fut.exception()  # retrieved: a failed write nobody waits for is not an error to log
            raise
        else:
            for fut in writing.values():
                fut.set_result(None)
        finally:
            for msg_id, fut in writing.items():
                if self._writing.get(msg_id) is fut:
                    del self._writing[msg_id]
        # Another request's write of a message in this push: answered only once it is in Kafka
        # (if it failed, this push is refused too and comes back).
        await asyncio.gather(*in_flight)
        self.delivered.mark(ids, Seen.WRITTEN)
        self.counters["published"] += len(records)
        details = []
        for (shop_id, order_id), shop in orders.items():
            detail = await self._detail(shop, order_id)
            if detail is not None:
                details.append(
                    base.raw_record(
                        platform=self.platform, shop=shop_id, kind=douyin.KIND_DETAIL, key=order_id,
                        payload=base.dumps_bytes(detail), received_at_ms=now_ms(),
                    )
                )
        await self.publish(details, sink)
        self.delivered.mark(ids, Seen.COMPLETE)
        self.count_deliveries(len(records), duplicates)

    async def _detail(self, shop: ShopCredentials, order_id: str) -> Optional[dict[str, Any]]:
        try:
            doc = await with_throttle_waits(
                lambda: self.call(shop, "order.orderDetail", {"shop_order_id": order_id}), max_waits=self.detail_throttle_waits
            )
        except PermanentApiError as exc:
            self.counters["detail_failed"] += 1
            log.warning("douyin orderDetail %s/%s failed permanently: %s", shop.shop_id, order_id, exc)
            return None
        self.counters["detail_fetched"] += 1
        return doc

    # ---------------------------------------------------------------- API

    async def call(self, shop: ShopCredentials, method: str, business: dict[str, Any]) -> dict[str, Any]:
        param_json = douyin.param_json(business)
        params = {
            "app_key": shop.app_key,
            "method": method,
            "access_token": token(shop),
            "timestamp": douyin.timestamp(now_ms()),
            "v": "2",
            "sign_method": self.sign_method,
        }
        params["sign"] = douyin.sign({**params, "param_json": param_json}, secret(shop))
        url = shop.api_base_url.rstrip("/") + "/" + method.replace(".", "/")
        async with self.http.post(
            url, params=params, data=param_json.encode("utf-8"), headers={"Content-Type": "application/json"}
        ) as response:
            check_http(response)
            text = await response.text()
        try:
            doc = base.loads_json(text)
        except ValueError:
            raise TransientApiError("bad_json", "API answered with something that is not JSON") from None
        error = classify_response(doc)
        if error is not None:
            raise self.note_api_error(error)
        return doc

    async def write_stock(self, shop: ShopCredentials, writes: Sequence[StockWrite]) -> Sequence[StockWriteResult]:
        """`sku.syncStock` with incremental=false (absolute), one SKU per call."""
        results = []
        for w in writes:
            business: dict[str, Any] = {"sku_id": w.platform_sku_id, "stock_num": w.quantity, "incremental": False}
            if w.listing_id:
                business["product_id"] = w.listing_id
            try:
                await with_retries(lambda b=business: self.call(shop, "sku.syncStock", b))
            except Exception as exc:
                results.append(result_for_error(w, exc))
                continue
            results.append(written(w))
            self.counters["stock_writes"] += 1
        return self.stock_results(results)

    async def read_stock(self, shop: ShopCredentials, sku_ids: Sequence[str]) -> dict[str, int]:
        out = {}
        for sku in sku_ids:
            doc = await with_throttle_waits(lambda sku=sku: self.call(shop, "sku.detail", {"sku_id": sku}))
            out[sku] = int((doc.get("data") or {}).get("stock_num", 0))
        return out


async def _metrics(_request: web.Request) -> web.Response:
    return web.Response(body=metrics.exposition(), content_type="text/plain", charset="utf-8")
