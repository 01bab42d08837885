"""JD.com adapter: `jingdong.pop.order.search` poller with a durable cursor, and JOS stock writes.

Polling, per shop: the window is [cursor - overlap, now - lag], cut into pieces of at most
`max_window_s`. Each piece is searched completely (pages read from the last to the first, then
the total compared with the first answer and the piece searched again if it changed, because
orders modified meanwhile leave the window and shift the pages), published as one `order` raw
record per order (key = orderId, message-id = `orderId:modified:orderState`, which names an
order version; versions already in raw.jd, re-read in the overlap or after a restart, are not
written again: `connectors.dedupe`), and only then is the cursor moved to the piece's end, in the compacted
`connector-state` topic (key `jd/<shop_id>`). On start the cursors are read back from there.

So a restart re-reads at most `overlap_s` + one piece (never skips, never floods from the
initial lookback), and writes that JD makes visible late (an order version appearing after its
`modified` time) are caught as long as they are less than `overlap_s` late.

`ShopCredentials.api_base_url` is the gateway origin (`https://api.jd.com`); `/routerjson` is
appended.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
from typing import Any, AsyncIterator, Iterable, Optional, Sequence

import aiohttp

from connectors import base, jd
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
from connectors.adapters.state import CursorStore, KafkaCursorStore, MemoryCursorStore
from connectors.base import RawRecord, StockWrite, StockWriteResult
from connectors.dedupe import Seen
from connectors.publisher import RawPublisher
from stockstream.settings import Settings, ShopCredentials

log = logging.getLogger(__name__)

# JOS codes (unconfirmed; the simulator uses the same table).
THROTTLE_CODES = {"67"}
TRANSIENT_CODES = {"1", "66"}
SEARCH_METHOD = "jingdong.pop.order.search"
ALL_STATES = ",".join(jd.ORDER_STATE)


def classify_error(err: Any) -> ApiError:
    err = err if isinstance(err, dict) else {}
    code = str(err.get("code", ""))
    message = str(err.get("en_desc") or err.get("zh_desc") or "")
    if code in THROTTLE_CODES:
        return ThrottledError(code, message, retry_after_s=1.0)
    if code in TRANSIENT_CODES:
        return TransientApiError(code, message)
    return PermanentApiError(code, message)


def version_id(order: dict[str, Any]) -> str:
    return f"{order.get('orderId')}:{order.get('modified')}:{order.get('orderState')}"


class JdAdapter(AdapterBase):
    platform = jd.PLATFORM
    # Unconfirmed codes (as the simulator): 14 invalid sign, 8 invalid timestamp.
    signature_codes = frozenset({"14"})
    timestamp_codes = frozenset({"8"})

    def __init__(
        self,
        shops: Iterable[ShopCredentials],
        publisher: Optional[RawPublisher] = None,
        *,
        settings: Optional[Settings] = None,
        cursor_store: Optional[CursorStore] = None,
        sink: Optional[Sink] = None,
        http: Optional[aiohttp.ClientSession] = None,
        overlap_s: float = 120.0,
        lag_s: float = 1.0,
        max_window_s: float = 3600.0,
        page_size: int = 50,
        initial_lookback_s: float = 3600.0,
        poll_interval_s: float = 5.0,
        order_states: str = ALL_STATES,
        request_timeout_s: float = 10.0,
        **options: Any,
    ) -> None:
        """`options`: `AdapterBase` dedupe_window_s, dedupe_max_ids."""
        super().__init__(
            shops, publisher, sink=sink, http=http, request_timeout_s=request_timeout_s, settings=settings, **options
        )
        if cursor_store is None:
            settings = self.settings
            cursor_store = KafkaCursorStore(settings) if settings is not None else MemoryCursorStore()
        self.store = cursor_store
        self.overlap_ms = int(overlap_s * 1000)
        self.lag_ms = int(lag_s * 1000)
        self.max_window_ms = int(max_window_s * 1000)
        self.page_size = page_size
        self.initial_lookback_ms = int(initial_lookback_s * 1000)
        self.poll_interval_s = poll_interval_s
        self.order_states = order_states
        self.cursors: dict[str, int] = {}
        self._loaded = False

    # ---------------------------------------------------------------- JOS calls

    async def call(self, shop: ShopCredentials, method: str, business: dict[str, Any]) -> dict[str, Any]:
        params = {
            "method": method,
            "app_key": shop.app_key,
            "access_token": token(shop),
            "timestamp": jd.timestamp(now_ms()),
            "v": "2.0",
            "sign_method": "md5",
            "360buy_param_json": json.dumps(business, ensure_ascii=False, separators=(",", ":")),
        }
        params["sign"] = jd.sign(params, secret(shop))
        url = shop.api_base_url.rstrip("/") + "/routerjson"
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

    # ---------------------------------------------------------------- search

    async def _page(self, shop: ShopCredentials, since_ms: int, until_ms: int, page: int) -> tuple[list[dict[str, Any]], int]:
        business = {
            "start_date": base.format_gmt8(since_ms),
            "end_date": base.format_gmt8(until_ms),
            "order_state": self.order_states,
            "page": str(page),
            "page_size": str(self.page_size),
        }
        doc = await with_throttle_waits(lambda: self.call(shop, SEARCH_METHOD, business))
        body = doc.get(jd.SEARCH_RESPONSE_KEY) or {}
        result = body.get("searchorderinfo_result") or {}
        api = result.get("apiResult")
        if isinstance(api, dict) and api.get("success") is False:
            raise TransientApiError(str(api.get("code")), str(api.get("englishErrCode")))
        orders = [o for o in result.get("orderInfoList") or [] if isinstance(o, dict)]
        return orders, int(result.get("orderTotal") or 0)

    async def search_window(self, shop: ShopCredentials, since_ms: int, until_ms: int, max_passes: int = 3) -> list[dict[str, Any]]:
        """Every order version in [since, until] (both inclusive, whole seconds), once each."""
        collected: dict[str, dict[str, Any]] = {}
        first, total = await self._page(shop, since_ms, until_ms, 1)
        for o in first:
            collected.setdefault(version_id(o), o)
        for _ in range(max_passes):
            pages = max(1, math.ceil(total / self.page_size))
            if pages == 1:
                break
            for page in range(pages, 0, -1):
                orders, seen_total = await self._page(shop, since_ms, until_ms, page)
                for o in orders:
                    collected.setdefault(version_id(o), o)
            if seen_total == total:  # page 1 was read last: nothing moved while paging
                break
            self.counters["window_rescanned"] += 1
            total = seen_total
        return list(collected.values())

    def _records(self, shop: ShopCredentials, orders: list[dict[str, Any]]) -> list[RawRecord]:
        """Records of the order versions not written yet (the overlap of windows, and a restart,
        read versions again: they are counted as duplicates, not written)."""
        received = now_ms()
        records = []
        duplicates = 0
        for o in orders:
            if self.seen(version_id(o)) != Seen.NEW:
                duplicates += 1
                continue
            order_id = o.get("orderId")
            records.append(
                base.raw_record(
                    platform=self.platform, shop=shop.shop_id, kind=jd.KIND_ORDER,
                    key=str(order_id) if order_id not in (None, "") else f"jd-{version_id(o)}",
                    payload=base.dumps_bytes(o), received_at_ms=received, message_id=version_id(o),
                )
            )
        self.count_deliveries(0, duplicates)
        return records

    async def _publish_versions(self, records: list[RawRecord], sink: Optional[Sink] = None) -> None:
        await self.publish(records, sink)
        self.delivered.mark((r.headers.get(base.RawHeader.MESSAGE_ID) for r in records), Seen.COMPLETE)
        self.count_deliveries(len(records), 0)

    # ---------------------------------------------------------------- cursor

    @staticmethod
    def cursor_key(shop: ShopCredentials) -> str:
        return f"jd/{shop.shop_id}"

    async def load_cursors(self) -> dict[str, int]:
        values = await asyncio.to_thread(self.store.load)
        self.cursors = {k: int(v["cursor_ms"]) for k, v in values.items() if k.startswith("jd/") and "cursor_ms" in v}
        self._loaded = True
        return dict(self.cursors)

    async def poll_once(self, shop: ShopCredentials) -> int:
        """Search from the cursor (minus overlap) to now (minus lag), publish, move the cursor
        durably after each published piece; returns the number of records published."""
        if not self._loaded:
            await self.load_cursors()
        await self.restore_delivered()  # once
        key = self.cursor_key(shop)
        until = (now_ms() - self.lag_ms) // 1000 * 1000
        cursor = self.cursors.get(key)
        since = (cursor - self.overlap_ms) if cursor is not None else until - self.initial_lookback_ms
        since = since // 1000 * 1000
        published = 0
        while since < until:
            end = min(since + self.max_window_ms, until)
            records = self._records(shop, await self.search_window(shop, since, end))
            await self._publish_versions(records)
            await asyncio.to_thread(self.store.save, key, {"cursor_ms": end, "saved_at_ms": now_ms()})
            self.cursors[key] = end
            published += len(records)
            since = end
        return published

    async def run(self, stop: Optional[asyncio.Event] = None) -> None:
        await self.restore_delivered()
        failures = 0
        while not self._loaded:  # never poll without the stored cursors: that would flood
            try:
                await self.load_cursors()
            except Exception as exc:
                failures += 1
                self.counters["cursor_load_failed"] += 1
                log.warning("jd cursors could not be read from %s: %s", getattr(self.store, "topic", "the store"), exc)
                await sleep_unless_stopped(min(0.2 * 2**failures, 10.0), stop)
                if stop is not None and stop.is_set():
                    return
        await asyncio.gather(*(self._run_shop(shop, stop) for shop in self.book.shops))

    async def _run_shop(self, shop: ShopCredentials, stop: Optional[asyncio.Event]) -> None:
        failures = 0
        while stop is None or not stop.is_set():
            try:
                await self.poll_once(shop)
                failures = 0
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the cursor did not move: the next round covers the window
                failures += 1
                self.counters["round_failed"] += 1
                log.warning("jd poll for shop %s failed: %s", shop.shop_id, exc)
                await sleep_unless_stopped(min(0.1 * 2**failures, 30.0), stop)
                continue
            await sleep_unless_stopped(self.poll_interval_s, stop)

    def poll(self, shop: ShopCredentials, since_ms: int, until_ms: int) -> AsyncIterator[RawRecord]:
        """`Connector.poll` for an explicit window; does not touch the cursor."""

        async def work(sink: Sink) -> None:
            await self._publish_versions(self._records(shop, await self.search_window(shop, since_ms, until_ms)), sink)

        return records_from(work)

    # ---------------------------------------------------------------- stock

    async def write_stock(self, shop: ShopCredentials, writes: Sequence[StockWrite]) -> Sequence[StockWriteResult]:
        """Absolute stock per SKU (`updateSkuStock` takes one SKU per call)."""
        results = []
        for w in writes:
            try:
                await with_retries(
                    lambda w=w: self.call(shop, "jingdong.stock.write.updateSkuStock", {"skuId": w.platform_sku_id, "stockNum": w.quantity})
                )
            except Exception as exc:
                results.append(result_for_error(w, exc))
                continue
            results.append(written(w))
            self.counters["stock_writes"] += 1
        return self.stock_results(results)

    async def read_stock(self, shop: ShopCredentials, sku_ids: Sequence[str]) -> dict[str, int]:
        out = {}
        for sku in sku_ids:
            doc = await with_throttle_waits(lambda sku=sku: self.call(shop, "jingdong.stock.read.findSkuStock", {"skuId": sku}))
            body = doc.get("jingdong_stock_read_findSkuStock_responce") or {}
            for row in body.get("skuStocks") or []:
                out[str(row["skuId"])] = int(row["stockNum"])
        return out
