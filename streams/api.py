"""The worker's REST API and dashboard, registered on its Faust web server (see streams/web.py).

Every query answers the same whichever worker is asked: lookups of one SKU are forwarded to the
worker that owns the SKU's partition (`Api.routed`), list queries are scatter-gathered from the
owners of all partitions (streams/api_cluster.py) and merged in a fixed order
(streams/api_views.py). The document of it all is `/openapi.json` (streams/api_openapi.py).
"""

from __future__ import annotations

import asyncio
import time
from functools import wraps
from pathlib import Path
from typing import TYPE_CHECKING, Optional

from stockstream.core.allocation import AllocationRules
from stockstream.rules_topic import settings_default_rules
from stockstream.topics import CHANNEL_DLQ, QUARANTINE
from streams import api_views as views
from streams.api_cluster import (
    ROUTED_HEADER, ShardUnavailable, forward, gather, local_partitions, owner_of, owners, same_worker,
)
from streams.api_history import History, StockWrites, record_pending
from streams.api_kafka import TopicRecordCounts, last_allocation_change
from streams.api_openapi import document
from streams.api_summary import SummarySweep
from streams.partitioning import partition_for
from streams.sku_allocation import SkuValue
from streams.table_scan import partition_dbs, read_owned

if TYPE_CHECKING:
    from streams.app import Pipeline
    from streams.catalog_feed import CatalogFeed
    from streams.rules_feed import RulesFeed

DASHBOARD_DIR = Path(__file__).parent / "dashboard"
DASHBOARD_ASSETS = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
}
HISTORY_INTERVAL_S = 1.0
# How long a summary asked for waits for the first pass over partitions this worker just got,
# before answering with the figures so far.
SUMMARY_WAIT_S = 1.0


def _now_ms() -> int:
    return int(time.time() * 1000)


class Api:
    def __init__(
        self, pipeline: "Pipeline", catalog_feed: Optional["CatalogFeed"], rules_feed: Optional["RulesFeed"]
    ) -> None:
        self.pipeline = pipeline
        self.app, self.settings, self.stock = pipeline.app, pipeline.settings, pipeline.stock
        self.catalog_feed = catalog_feed
        self.rules_feed = rules_feed
        self.fixed_rules = settings_default_rules(self.settings)
        self.history = History()
        self.writes = StockWrites(self.stock)
        self.counts = TopicRecordCounts(self.settings)
        self.summary = SummarySweep(
            self.stock, lambda: local_partitions(self.app, self.stock), self.settings.partitions,
            self.settings.replenishment_lead_time_days + self.settings.replenishment_safety_days,
            self.settings.api_summary_sweep_share,
        )

    def rules_for(self, sku: str) -> AllocationRules:
        return self.rules_feed.rules_for(sku) if self.rules_feed is not None else self.fixed_rules

    def routed(self, handler):
        """A view `handler(web, request, sku=..., ...)` answered by the worker that owns the SKU's
        partition, whichever worker is asked; 503 while no worker can (rebalance, recovery)."""
        app, stock, partitions = self.app, self.stock, self.settings.partitions

        @wraps(handler)
        async def view(web, request, sku: str, **params):
            partition = partition_for(sku.encode(), partitions)
            if partition in local_partitions(app, stock):
                recovery = app.tables.recovery
                if recovery.in_recovery or not recovery.completed.is_set():
                    return web.json({"error": "recovering tables: retry shortly", "sku": sku}, status=503)
                return await handler(web, request, sku=sku, **params)
            owner = owner_of(app, stock, partition)
            if request.headers.get(ROUTED_HEADER) or owner is None or same_worker(owner, str(app.conf.canonical_url)):
                return web.json({"error": f"partition {partition} has no owner right now (rebalance?): retry shortly",
                                 "sku": sku}, status=503)
            try:
                status, content_type, body = await forward(app, owner, request)
            except ShardUnavailable as exc:
                return web.json({"error": str(exc), "sku": sku}, status=503)
            return web.bytes(body, status=status, headers={"Content-Type": content_type})

        return view

    def value_of(self, sku: str) -> Optional[SkuValue]:
        raw = self.stock.get(sku.encode())
        return None if raw is None else views.read_sku_value(raw)

    # --- readiness ---------------------------------------------------------------------------

    def readiness(self) -> tuple[bool, dict[str, str]]:
        """Each check "ok" or why not."""
        app = self.app
        recovery = app.tables.recovery
        checks = {
            "assignment": "ok" if owners(app, self.stock) and not app.rebalancing
            else ("rebalancing" if app.rebalancing else "waiting for the partition assignment"),
            "recovery": "ok" if recovery.completed.is_set() and not recovery.in_recovery
            else "recovering tables from their changelogs",
            "catalog": "ok" if self.catalog_feed is None or self.catalog_feed.ready.is_set()
            else "catalog feed still loading",
            "rules": "ok" if self.rules_feed is None or self.rules_feed.ready.is_set()
            else "allocation rules still loading",
        }
        return all(v == "ok" for v in checks.values()), checks

    # --- local parts of list queries ---------------------------------------------------------

    def _owned(self, partitions: list[int]) -> list[int]:
        """The requested partitions this worker owns now. Raises ShardUnavailable while tables
        recover (their contents are incomplete)."""
        recovery = self.app.tables.recovery
        if self.app.rebalancing or recovery.in_recovery or not recovery.completed.is_set():
            raise ShardUnavailable(f"worker {self.app.conf.canonical_url} is recovering its tables")
        return sorted(set(partitions) & local_partitions(self.app, self.stock))

    async def local_ats(self, query: views.AtsQuery, partitions: list[int]) -> dict:
        owned = self._owned(partitions)
        after = None if query.after is None else query.after.encode()
        read = read_owned(partition_dbs(self.stock), owned, after, self.settings.api_list_scan_keys)
        answer = views.local_ats_read(read.items, read.resume_after, query, owned)
        if query.history:
            for item in answer["items"]:
                item["history"] = self.history.points(item["sku"])
        return answer

    async def local_summary(self, at_ms: int, partitions: list[int]) -> dict:
        owned = self._owned(partitions)
        parts, pending = await self.summary.summaries(owned, SUMMARY_WAIT_S)
        wanted = set(owned)
        n = self.settings.partitions
        changes = self.history.recent_changes(lambda sku: partition_for(sku.encode(), n) in wanted)
        return views.local_summary_answer(
            sum(part.skus for part in parts.values()),
            [candidate for part in parts.values() for candidate in part.candidates()],
            at_ms, self.summary.threshold_days, changes, owned,
            min((part.read_at_ms for part in parts.values()), default=None),
            sum(part.not_listed for part in parts.values()), pending,
        )

    async def topic_counts(self) -> dict[str, Optional[int]]:
        quarantine, dead_letter = await asyncio.gather(
            asyncio.to_thread(self.counts.records, self.settings.topic(QUARANTINE.name)),
            asyncio.to_thread(self.counts.records, self.settings.topic(CHANNEL_DLQ.name)),
        )
        return {"quarantine_records": quarantine, "dead_letter_records": dead_letter}

    def sample_history(self) -> None:
        record_pending(self.writes, self.history, _now_ms(), views.read_sku_value, also=self.summary.observe)


def _asset(name: str) -> bytes:
    return (DASHBOARD_DIR / name).read_bytes()


def register(pipeline: "Pipeline", catalog_feed: Optional["CatalogFeed"] = None,
             rules_feed: Optional["RulesFeed"] = None) -> Api:
    app, stock = pipeline.app, pipeline.stock
    api = Api(pipeline, catalog_feed, rules_feed)
    app.sensors.add(api.writes)
    assets = {name: (_asset(name), content_type) for name, content_type in DASHBOARD_ASSETS.items()}
    openapi = document()
    partitions_total = pipeline.settings.partitions

    def error(web, status: int, message: str, **extra):
        return web.json({"error": message, **extra}, status=status)

    @app.timer(HISTORY_INTERVAL_S)
    async def sample_history() -> None:
        api.sample_history()

    @app.task
    async def sweep_summary() -> None:
        await api.summary.run()

    async def forget_revoked(_app, revoked, **_kwargs) -> None:
        api.summary.forget({tp.partition for tp in revoked})

    app.on_partitions_revoked.connect(forget_revoked)

    @app.page("/health")
    async def health(web, request):
        return web.json({"status": "ok"})

    @app.page("/ready")
    async def ready(web, request):
        ok, checks = api.readiness()
        if ok:
            return web.json({"ready": True, "checks": checks})
        reason = "; ".join(v for v in checks.values() if v != "ok")
        return web.json({"ready": False, "reason": reason, "checks": checks}, status=503)

    @app.page("/ats")
    async def list_ats(web, request):
        try:
            query = views.parse_ats_query(request.query)
        except ValueError as exc:
            return error(web, 400, str(exc))
        try:
            answers = await gather(app, stock, "/internal/ats", query.params(),
                                   lambda parts: api.local_ats(query, parts), partitions_total)
        except ShardUnavailable as exc:
            return error(web, 503, str(exc))
        return web.json(views.merge_ats_answers(answers, query.limit))

    @app.page("/internal/ats")
    async def internal_ats(web, request):
        try:
            query = views.parse_ats_query(request.query)
            partitions = views.parse_partitions(request.query.get("partitions"), partitions_total)
            return web.json(await api.local_ats(query, partitions))
        except ValueError as exc:
            return error(web, 400, str(exc))
        except ShardUnavailable as exc:
            return error(web, 503, str(exc))

    @app.page("/allocations/{sku}")
    @api.routed
    async def get_allocations(web, request, sku: str):
        value = api.value_of(sku)
        if value is None:
            return error(web, 404, "unknown SKU: no movement seen for it", sku=sku)
        return web.json(views.allocation_body(value, api.rules_for(sku)))

    @app.page("/provenance/{sku}/{channel}")
    @api.routed
    async def get_provenance(web, request, sku: str, channel: str):
        value = api.value_of(sku)
        if value is None:
            return error(web, 404, "unknown SKU: no movement seen for it", sku=sku)
        rules = api.rules_for(sku)
        allocation = value.allocation
        if channel not in allocation.quantities and rules.channel(channel) is None:
            return error(web, 404, f"{channel} is neither allocated nor in the rules of {sku}", sku=sku,
                         channels=sorted(set(allocation.quantities) | {r.channel for r in rules.channels}))
        last_change = None
        version = allocation.versions.get(channel)
        if version is not None:
            last_change = await asyncio.to_thread(last_allocation_change, pipeline.settings, sku, channel, version)
        return web.json(views.provenance_body(value, channel, rules, last_change))

    @app.page("/api/summary")
    async def summary(web, request):
        at_ms = _now_ms()
        try:
            answers = await gather(app, stock, "/internal/summary", {"at_ms": str(at_ms)},
                                   lambda parts: api.local_summary(at_ms, parts), partitions_total)
        except ShardUnavailable as exc:
            return error(web, 503, str(exc))
        body = views.merge_summaries(answers)
        body.update(await api.topic_counts())
        body["at_ms"] = at_ms
        return web.json(body)

    @app.page("/internal/summary")
    async def internal_summary(web, request):
        try:
            at_ms = int(request.query["at_ms"])
            partitions = views.parse_partitions(request.query.get("partitions"), partitions_total)
        except (KeyError, ValueError) as exc:
            return error(web, 400, f"at_ms and partitions: {exc}")
        try:
            return web.json(await api.local_summary(at_ms, partitions))
        except ShardUnavailable as exc:
            return error(web, 503, str(exc))

    @app.page("/openapi.json")
    async def openapi_json(web, request):
        return web.json(openapi)

    def asset_response(web, name: str):
        body, content_type = assets[name]
        return web.bytes(body, headers={"Content-Type": content_type, "Cache-Control": "no-cache"})

    @app.page("/")
    async def dashboard(web, request):
        return asset_response(web, "index.html")

    @app.page("/dashboard/{asset}")
    async def dashboard_asset(web, request, asset: str):
        if asset not in assets:
            return error(web, 404, f"no dashboard asset {asset!r}")
        return asset_response(web, asset)

    return api


def route_paths(app) -> set[str]:
    """The paths the app's web server serves (for the test that all are documented)."""
    return {route.resource.canonical for route in app.web.web_app.router.routes()}
