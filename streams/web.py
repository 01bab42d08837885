"""HTTP views served by every worker: the registration point. Key lookups are forwarded to the
worker that owns the key's partition (`Api.routed`, streams/api_cluster.py), so any worker answers
for any SKU; the REST API, its OpenAPI document and the dashboard are in streams/api.py.

Faust's own `/router` and `/table` pages are switched off: they expose raw table values and the
cluster's layout, and are not part of the documented API (routing does not use them)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Optional

from stockstream.timeparse import parse_moment
from streams import metrics
from streams.ledger import stock_as_of
from streams.stock import load_state, snapshot_record

if TYPE_CHECKING:
    from streams.app import Pipeline
    from streams.catalog_feed import CatalogFeed
    from streams.rules_feed import RulesFeed


def register_views(
    pipeline: "Pipeline", catalog_feed: Optional["CatalogFeed"] = None, rules_feed: Optional["RulesFeed"] = None
) -> None:
    """`catalog_feed` and `rules_feed` tell `/ready` whether they have loaded (None: nothing to wait for)."""
    from streams import api

    app = pipeline.app
    stock = pipeline.stock
    # Read when the web server object is first made, i.e. by the first page registered below.
    app.conf.web_router_enabled = False
    app.conf.web_tables_enabled = False
    routed = api.register(pipeline, catalog_feed, rules_feed).routed

    @app.page("/metrics")
    async def prometheus_metrics(web, request):
        # aiohttp refuses parameters in content_type=: the exposition format version goes in the header.
        return web.bytes(metrics.exposition(), headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"})

    @app.page("/ats/{sku}")
    @routed
    async def get_ats(web, request, sku: str):
        as_of = request.query.get("as_of")
        if as_of is None:
            state = load_state(stock.get(sku.encode()))
        else:
            try:
                as_of_ms = parse_moment(as_of)
            except ValueError as exc:
                return web.json({"sku": sku, "error": f"as_of: {exc}"}, status=400)
            # Time travel reads the SKU's ledger partition: blocking I/O, off the event loop.
            state = await asyncio.to_thread(stock_as_of, pipeline.settings, sku, as_of_ms)
        if state is None:
            return web.json({"sku": sku, "error": "unknown SKU: no movement seen for it"}, status=404)
        body = snapshot_record(state, [], 0)
        del body["movement_ids"], body["updated_at_ms"]
        if as_of is not None:
            body["as_of_ms"] = as_of_ms
        return web.json(body)
