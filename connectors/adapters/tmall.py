"""Taobao / Tmall adapter: TMC consumer and TOP stock writes.

Ingest, per app key (TMC queues are per app; one app may serve several shops): `consume` up to
`batch_size` messages -> one `tmc` raw record per message (key = tid, `message-id` = TMC id, shop
from the message's user_id) -> for messages without line fields (no sku / num, or no oid) a
`taobao.trade.fullinfo.get` snapshot of the trade (`fullinfo` record, once per trade per batch)
-> publish -> only then `confirm` the ids. A crash anywhere before the confirm leaves the
messages unconfirmed and TMC redelivers them; a redelivered message already in raw.tmall is
confirmed without a second write (`connectors.dedupe`), its fullinfo fetched again only if the
snapshot did not make it to Kafka.

`ShopCredentials.api_base_url` is the gateway origin (`https://eco.taobao.com` in production,
a simulator's URL in tests); `/router/rest` is appended.
"""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Any, AsyncIterator, Iterable, Optional, Sequence

import aiohttp

from connectors import base, metrics, tmall
from connectors.adapters.common import (
    AdapterBase,
    ApiError,
    PermanentApiError,
    Sink,
    ThrottledError,
    TransientApiError,
    check_http,
    group_writes,
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

MAX_SKUS_PER_CALL = 20  # taobao.skus.quantity.update
FULLINFO_FIELDS = "tid,status,modified,created,pay_time,consign_time,orders"
_TRANSIENT_CODES = {"1", "10", "15"}  # unknown error, service unavailable, remote service error (isp.*)
_BAN_RE = re.compile(r"(\d+)\s*more seconds")


def classify_error(err: Any) -> ApiError:
    """TOP `error_response` -> exception class by code / sub_code."""
    err = err if isinstance(err, dict) else {}
    code = str(err.get("code", ""))
    sub_code = str(err.get("sub_code") or "")
    message = f"{err.get('msg', '')} {err.get('sub_msg', '')}".strip()
    if code == "7":
        match = _BAN_RE.search(str(err.get("sub_msg") or err.get("msg") or ""))
        return ThrottledError(code, message, sub_code, retry_after_s=float(match.group(1)) if match else 1.0)
    if code in _TRANSIENT_CODES and not sub_code.startswith("isv."):
        return TransientApiError(code, message, sub_code)
    return PermanentApiError(code, message, sub_code)


class TmallAdapter(AdapterBase):
    platform = tmall.PLATFORM
    followup_kinds = (tmall.KIND_FULLINFO,)
    signature_codes = frozenset({"25"})  # TOP: invalid signature
    timestamp_codes = frozenset({"31"})  # TOP: invalid timestamp (10 minutes tolerance)

    def __init__(
        self,
        shops: Iterable[ShopCredentials],
        publisher: Optional[RawPublisher] = None,
        *,
        sink: Optional[Sink] = None,
        http: Optional[aiohttp.ClientSession] = None,
        sign_method: str = "md5",
        batch_size: int = 100,
        idle_wait_s: float = 1.0,
        fetch_fullinfo: bool = True,
        request_timeout_s: float = 10.0,
        **options: Any,
    ) -> None:
        """`options`: `AdapterBase` settings, dedupe_window_s, dedupe_max_ids."""
        super().__init__(shops, publisher, sink=sink, http=http, request_timeout_s=request_timeout_s, **options)
        if not 10 <= batch_size <= 200:
            raise ValueError("TMC consumes 10..200 messages per call")
        self.sign_method = sign_method
        self.batch_size = batch_size
        self.idle_wait_s = idle_wait_s
        self.fetch_fullinfo = fetch_fullinfo

    # ---------------------------------------------------------------- TOP calls

    async def call(self, shop: ShopCredentials, method: str, params: dict[str, Any], *, with_session: bool = True) -> dict[str, Any]:
        """One signed TOP call (no retries); raises the classified error on an error response."""
        all_params = {
            "method": method,
            "app_key": shop.app_key,
            "timestamp": tmall.timestamp(now_ms()),
            "format": "json",
            "v": "2.0",
            "sign_method": self.sign_method,
        }
        if with_session and token(shop):
            all_params["session"] = token(shop)
        all_params.update({k: str(v) for k, v in params.items() if v is not None})
        all_params["sign"] = tmall.sign(all_params, secret(shop))
        url = shop.api_base_url.rstrip("/") + "/router/rest"
        async with self.http.post(url, data=all_params) as response:
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

    # ---------------------------------------------------------------- TMC

    async def drain_once(self, shops: Sequence[ShopCredentials], sink: Optional[Sink] = None) -> int:
        """consume -> publish (+ fullinfo snapshots) -> confirm, for one app; returns the number
        of messages handled (0: the queue had nothing visible)."""
        app = shops[0]
        doc = await with_throttle_waits(
            lambda: self.call(app, "taobao.tmc.messages.consume", {"quantity": self.batch_size}, with_session=False)
        )
        body = doc.get("tmc_messages_consume_response") or {}
        messages = (body.get("messages") or {}).get("tmc_message") or []
        if not messages:
            return 0
        received = now_ms()
        records: list[RawRecord] = []
        ids: list[str] = []
        new_ids: set[str] = set()
        duplicates = 0
        to_fetch: dict[tuple[str, str], ShopCredentials] = {}
        for message in messages:
            if not isinstance(message, dict) or message.get("id") in (None, ""):
                self.reject(metrics.MALFORMED)  # no id: it cannot even be confirmed
                continue
            message_id = str(message["id"])
            ids.append(message_id)
            seen = self.seen(message_id)
            if seen != Seen.NEW or message_id in new_ids:
                duplicates += 1
            content = _content(message)
            tid = content.get("tid") if content.get("tid") not in (None, "") else content.get("tid_str")
            shop = self.book.get(message.get("user_id"))
            if shop is None:
                self.counters["unknown_shop"] += 1
            shop_id = shop.shop_id if shop is not None else str(message.get("user_id") or "")
            key = str(tid) if tid not in (None, "") else f"tmc-{message_id}"
            if seen == Seen.NEW and message_id not in new_ids:
                new_ids.add(message_id)
                records.append(
                    base.raw_record(
                        platform=self.platform, shop=shop_id, kind=tmall.KIND_TMC, key=key,
                        payload=base.dumps_bytes(message), received_at_ms=received, message_id=message_id,
                    )
                )
            topic = message.get("topic")
            meaningful = tmall.TOPICS.get(topic) is not None if isinstance(topic, str) else False
            needs_snapshot = self.fetch_fullinfo and shop is not None and tid not in (None, "") and meaningful
            if needs_snapshot and seen != Seen.COMPLETE and tmall.lacks_line_fields(content):
                to_fetch[(shop.shop_id, str(tid))] = shop
        for (shop_id, tid), shop in to_fetch.items():
            snapshot = await self._fullinfo(shop, tid)
            if snapshot is not None:
                records.append(
                    base.raw_record(
                        platform=self.platform, shop=shop_id, kind=tmall.KIND_FULLINFO, key=tid,
                        payload=base.dumps_bytes(snapshot), received_at_ms=now_ms(),
                    )
                )
        await self.publish(records, sink)
        self.delivered.mark(ids, Seen.COMPLETE)  # the broker has every record and snapshot
        self.count_deliveries(len(new_ids), duplicates)
        unique_ids = list(dict.fromkeys(ids))
        await with_throttle_waits(
            lambda: self.call(app, "taobao.tmc.messages.confirm", {"s_message_ids": ",".join(unique_ids)}, with_session=False)
        )
        self.counters["confirmed"] += len(unique_ids)
        return len(messages)

    async def _fullinfo(self, shop: ShopCredentials, tid: str) -> Optional[dict[str, Any]]:
        try:
            doc = await with_throttle_waits(lambda: self.call(shop, "taobao.trade.fullinfo.get", {"tid": tid, "fields": FULLINFO_FIELDS}))
        except PermanentApiError as exc:  # e.g. the trade is gone: the message alone must do
            self.counters["fullinfo_failed"] += 1
            log.warning("tmall fullinfo %s/%s failed permanently: %s", shop.shop_id, tid, exc)
            return None
        self.counters["fullinfo_fetched"] += 1
        return doc

    async def run(self, stop: Optional[asyncio.Event] = None) -> None:
        """Consume every app's TMC queue until `stop` is set (or the task is cancelled)."""
        await self.restore_delivered()
        await asyncio.gather(*(self._run_app(shops, stop) for shops in self.book.apps().values()))

    async def _run_app(self, shops: list[ShopCredentials], stop: Optional[asyncio.Event]) -> None:
        failures = 0
        while stop is None or not stop.is_set():
            try:
                handled = await self.drain_once(shops)
                failures = 0
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the round is not confirmed: TMC redelivers it
                failures += 1
                self.counters["round_failed"] += 1
                log.warning("tmall TMC round for app %s failed: %s", shops[0].app_key, exc)
                await sleep_unless_stopped(min(0.1 * 2**failures, 10.0), stop)
                continue
            if handled < self.batch_size:
                await sleep_unless_stopped(self.idle_wait_s, stop)

    def poll(self, shop: ShopCredentials, since_ms: int = 0, until_ms: int = 0) -> AsyncIterator[RawRecord]:
        """`Connector.poll`: drain the shop's app queue once (TMC is a queue: the window is not
        used). Messages are confirmed when the consumer asks for the record after a batch."""
        shops = [s for s in self.book.shops if s.app_key == shop.app_key and s.api_base_url == shop.api_base_url] or [shop]

        async def work(sink: Sink) -> None:
            while await self.drain_once(shops, sink) > 0:
                pass

        return records_from(work)

    # ---------------------------------------------------------------- stock

    async def write_stock(self, shop: ShopCredentials, writes: Sequence[StockWrite]) -> Sequence[StockWriteResult]:
        """Full overwrite (type 1). SKUs of one item go together through skus.quantity.update in
        batches of 20; a batch refused permanently is retried SKU by SKU to isolate the bad one."""
        results: dict[int, StockWriteResult] = {}
        indexed = list(enumerate(writes))
        for listing, group in group_writes(indexed, lambda iw: iw[1].listing_id).items():
            if not listing:
                for i, w in group:
                    results[i] = result_for_error(w, PermanentApiError("missing_num_iid", "Tmall stock writes need the item (num_iid)"))
                continue
            if len(group) == 1:
                i, w = group[0]
                results[i] = await self._write_one(shop, w)
                continue
            for start in range(0, len(group), MAX_SKUS_PER_CALL):
                chunk = group[start : start + MAX_SKUS_PER_CALL]
                try:
                    await with_retries(lambda: self._skus_update(shop, str(listing), [w for _, w in chunk]))
                except PermanentApiError:
                    for i, w in chunk:
                        results[i] = await self._write_one(shop, w)
                except Exception as exc:
                    for i, w in chunk:
                        results[i] = result_for_error(w, exc)
                else:
                    for i, w in chunk:
                        results[i] = written(w)
        self.counters["stock_writes"] += sum(1 for r in results.values() if r.ok)
        return self.stock_results([results[i] for i in range(len(writes))])

    async def _write_one(self, shop: ShopCredentials, w: StockWrite) -> StockWriteResult:
        params: dict[str, Any] = {"num_iid": w.listing_id, "quantity": w.quantity, "type": 1}
        if w.platform_sku_id != w.listing_id:
            params["sku_id"] = w.platform_sku_id
        try:
            await with_retries(lambda: self.call(shop, "taobao.item.quantity.update", params))
        except Exception as exc:
            return result_for_error(w, exc)
        return written(w)

    async def _skus_update(self, shop: ShopCredentials, num_iid: str, writes: list[StockWrite]) -> dict[str, Any]:
        pairs = ";".join(f"{w.platform_sku_id}:{w.quantity}" for w in writes)
        return await self.call(shop, "taobao.skus.quantity.update", {"num_iid": num_iid, "skuid_quantities": pairs, "type": 1})

    async def read_stock(self, shop: ShopCredentials, listing_id: str) -> dict[str, int]:
        """SKU id -> quantity on sale for one item (reconciliation); the item id itself for a
        SKU-less item."""
        doc = await with_throttle_waits(
            lambda: self.call(shop, "taobao.item.seller.get", {"num_iid": listing_id, "fields": "num_iid,num,sku"})
        )
        item = (doc.get("item_seller_get_response") or {}).get("item") or {}
        skus = (item.get("skus") or {}).get("sku") or []
        if not skus:
            return {str(item.get("num_iid", listing_id)): int(item.get("num", 0))}
        return {str(s["sku_id"]): int(s["quantity"]) for s in skus}


def _content(message: dict[str, Any]) -> dict[str, Any]:
    try:
        content = base.nested_json(message.get("content"), "content")
    except base.RejectError:
        return {}
    return content

