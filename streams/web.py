"""HTTP views served by every worker. Key lookups are routed to the worker that owns the key's
partition (Faust's table router), so any worker answers for any SKU."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from stockstream.timeparse import parse_moment
from streams import metrics
from streams.ledger import stock_as_of
from streams.stock import load_state, snapshot_record

if TYPE_CHECKING:
    from streams.app import Pipeline


def register_views(pipeline: "Pipeline") -> None:
    app = pipeline.app
    stock = pipeline.stock

    @app.page("/metrics")
    async def prometheus_metrics(web, request):
        # aiohttp refuses parameters in content_type=: the exposition format version goes in the header.
        return web.bytes(metrics.exposition(), headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"})

    @app.page("/ats/{sku}")
    @app.table_route(table=stock, match_info="sku")
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
