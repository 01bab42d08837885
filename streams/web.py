"""HTTP views served by every worker. Key lookups are routed to the worker that owns the key's
partition (Faust's table router), so any worker answers for any SKU."""

from __future__ import annotations

from typing import TYPE_CHECKING

from streams.stock import load_state, snapshot_record

if TYPE_CHECKING:
    from streams.app import Pipeline


def register_views(pipeline: "Pipeline") -> None:
    app = pipeline.app
    stock = pipeline.stock

    @app.page("/ats/{sku}")
    @app.table_route(table=stock, match_info="sku")
    async def get_ats(web, request, sku: str):
        state = load_state(stock.get(sku.encode()))
        if state is None:
            return web.json({"sku": sku, "error": "unknown SKU: no movement seen for it"}, status=404)
        body = snapshot_record(state, [], 0)
        del body["movement_ids"], body["updated_at_ms"]
        return web.json(body)
