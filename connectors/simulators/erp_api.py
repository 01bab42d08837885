"""A NetSuite-style ERP REST API for tests and the demo: inventory adjustments upserted by
external id, with an outage switch and a failure rate.

ERP API (bearer token; errors in NetSuite's shape, ``{"type", "title", "status",
"o:errorDetails": [{"detail", "o:errorCode"}]}``):

  PUT /services/rest/record/v1/inventoryAdjustment/eid:{externalId}
      JSON {sku, location, reason, quantity, window: {start, end}, ...} -> 204 (created or
      replaced: an upsert, so a retried PUT is harmless)
  GET /services/rest/record/v1/inventoryAdjustment              -> {count, items: [{externalId, ...}]}
  GET /services/rest/record/v1/inventoryAdjustment/eid:{externalId} -> the record, 404 if none

Control API (no auth; for tests and the demo):

  GET   /_sim/writes   -> [{externalId, writes, content_changed, body}]: how often each id was
                          written and whether a later write differed from the first
  GET   /_sim/stats    -> counters (puts, stored, unauthorized, failed, refused, ...)
  PATCH /_sim/knobs    {fail_rate, latency_s}: a fraction of PUTs answered 503, added latency
  POST  /_sim/down     {seconds, mode}: "503" answers every ERP call with 503; "refuse" stops
                       listening (connection refused) and drops open connections. Back after
                       `seconds`.

The same operations are methods for in-process use (`go_down`, `knobs`, `records`, ...).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from dataclasses import asdict, dataclass, fields
from typing import Any, Optional

from aiohttp import web

REASONS = frozenset(
    {"SALE_SHIPMENT", "RECEIPT", "RETURN_RESTOCK", "SCRAP", "COUNT_CORRECTION", "TRANSFER", "CUSTOMS", "ADJUSTMENT"}
)
RECORD_PATH = "/services/rest/record/v1/inventoryAdjustment"


@dataclass
class ErpKnobs:
    fail_rate: float = 0.0  # PUTs answered 503 at random
    latency_s: float = 0.0  # added to every ERP call


@dataclass
class StoredAdjustment:
    external_id: str
    body: dict
    writes: int = 1
    content_changed: bool = False  # a later write carried other content than the stored one


def netsuite_error(status: int, title: str, code: str, detail: str) -> web.Response:
    return web.json_response(
        {"type": f"https://www.rfc-editor.org/rfc/rfc9110.html#status.{status}", "title": title, "status": status,
         "o:errorDetails": [{"detail": detail, "o:errorCode": code}]},
        status=status,
    )


class ErpSim:
    def __init__(self, token: str = "erp-token", *, seed: int = 0, **knob_values: Any) -> None:
        self.token = token
        self.knobs = ErpKnobs(**knob_values)
        self.rng = random.Random(seed)
        self.records: dict[str, StoredAdjustment] = {}
        self.stats: Counter[str] = Counter()
        self.base_url = ""  # http://host:port/services/rest once started
        self._down_until = 0.0  # monotonic; ERP calls answer 503 before it
        self._refusing = False
        self._host = "127.0.0.1"
        self._port = 0
        self._runner: Optional[web.AppRunner] = None
        self._site: Optional[web.TCPSite] = None
        self._restore: Optional[asyncio.Task] = None
        self.app = web.Application(middlewares=[self._outage])
        r = self.app.router
        r.add_put(RECORD_PATH + "/{ref}", self._put)
        r.add_get(RECORD_PATH, self._list)
        r.add_get(RECORD_PATH + "/{ref}", self._get)
        r.add_get("/_sim/writes", self._c_writes)
        r.add_get("/_sim/stats", self._c_stats)
        r.add_patch("/_sim/knobs", self._c_knobs)
        r.add_post("/_sim/down", self._c_down)

    # ---------------------------------------------------------------- lifecycle

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        self._runner = web.AppRunner(self.app, shutdown_timeout=1.0, access_log=None)
        await self._runner.setup()
        self._site = web.TCPSite(self._runner, host, port)
        await self._site.start()
        self._host, self._port = host, self._site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.base_url = f"http://{host}:{self._port}/services/rest"
        return self.base_url

    async def stop(self) -> None:
        if self._restore is not None:
            self._restore.cancel()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> "ErpSim":
        await self.start()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.stop()

    # ---------------------------------------------------------------- outages

    async def go_down(self, seconds: float, mode: str = "503") -> None:
        """Unavailable for `seconds`: 503 to every ERP call, or ("refuse") not listening at all."""
        if mode == "503":
            self._down_until = time.monotonic() + seconds
            return
        if mode != "refuse":
            raise ValueError(f"unknown outage mode {mode!r}: 503 or refuse")
        if not self._refusing:
            self._refusing = True
            await self._site.stop()  # type: ignore[union-attr]
        if self._restore is not None:
            self._restore.cancel()
        self._restore = asyncio.create_task(self._listen_again_after(seconds))

    async def _listen_again_after(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
        self._site = web.TCPSite(self._runner, self._host, self._port)  # type: ignore[arg-type]
        await self._site.start()
        self._refusing = False

    @web.middleware
    async def _outage(self, request: web.Request, handler):  # type: ignore[no-untyped-def]
        if request.path.startswith("/_sim/"):
            return await handler(request)
        if self._refusing:
            # A kept-alive connection from before the outage: drop it like a dead host would.
            self.stats["refused"] += 1
            if request.transport is not None:
                request.transport.abort()
            raise web.HTTPServiceUnavailable()
        if self.knobs.latency_s:
            await asyncio.sleep(self.knobs.latency_s)
        if time.monotonic() < self._down_until:
            self.stats["down"] += 1
            return netsuite_error(503, "Service Unavailable", "SERVICE_UNAVAILABLE", "The ERP is down for maintenance.")
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            self.stats["unauthorized"] += 1
            return netsuite_error(401, "Unauthorized", "INVALID_LOGIN", "Invalid login attempt.")
        return await handler(request)

    # ---------------------------------------------------------------- ERP API

    async def _put(self, request: web.Request) -> web.Response:
        self.stats["puts"] += 1
        external_id = _external_id(request)
        if external_id is None:
            return netsuite_error(404, "Not Found", "NONEXISTENT_ID", "Use eid:{externalId}.")
        if self.knobs.fail_rate and self.rng.random() < self.knobs.fail_rate:
            self.stats["failed"] += 1
            return netsuite_error(503, "Service Unavailable", "SERVICE_UNAVAILABLE", "Simulated failure.")
        try:
            body = await request.json()
        except ValueError:
            return netsuite_error(400, "Bad Request", "INVALID_CONTENT", "The body is not JSON.")
        problem = _invalid(body)
        if problem:
            self.stats["invalid"] += 1
            return netsuite_error(400, "Bad Request", "INVALID_CONTENT", problem)
        stored = self.records.get(external_id)
        if stored is None:
            self.records[external_id] = StoredAdjustment(external_id, body)
            self.stats["stored"] += 1
        else:
            stored.writes += 1
            if stored.body != body:
                stored.content_changed = True
                stored.body = body
            self.stats["rewrites"] += 1
        return web.Response(status=204, headers={"Location": f"{self.base_url}/record/v1/inventoryAdjustment/eid:{external_id}"})

    async def _list(self, request: web.Request) -> web.Response:
        items = [{"externalId": s.external_id, **s.body} for s in self.records.values()]
        return web.json_response({"count": len(items), "items": items})

    async def _get(self, request: web.Request) -> web.Response:
        external_id = _external_id(request)
        stored = self.records.get(external_id) if external_id else None
        if stored is None:
            return netsuite_error(404, "Not Found", "NONEXISTENT_ID", "No such record.")
        return web.json_response({"externalId": stored.external_id, **stored.body})

    # ---------------------------------------------------------------- control API

    def writes(self) -> list[dict]:
        return [{"externalId": s.external_id, "writes": s.writes, "content_changed": s.content_changed, "body": s.body}
                for s in self.records.values()]

    async def _c_writes(self, request: web.Request) -> web.Response:
        return web.json_response(self.writes())

    async def _c_stats(self, request: web.Request) -> web.Response:
        return web.json_response(dict(self.stats))

    async def _c_knobs(self, request: web.Request) -> web.Response:
        body = await request.json()
        unknown = set(body) - {f.name for f in fields(ErpKnobs)}
        if unknown:
            return web.json_response({"error": f"unknown knobs {sorted(unknown)}"}, status=400)
        for name, value in body.items():
            setattr(self.knobs, name, value)
        return web.json_response(asdict(self.knobs))

    async def _c_down(self, request: web.Request) -> web.Response:
        body = await request.json()
        try:
            await self.go_down(float(body["seconds"]), str(body.get("mode", "503")))
        except (KeyError, ValueError) as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response({"ok": True})


def _external_id(request: web.Request) -> Optional[str]:
    ref = request.match_info["ref"]
    return ref[4:] if ref.startswith("eid:") and len(ref) > 4 else None


def _invalid(body: Any) -> str:
    """Why an adjustment body is unacceptable ('' if it is fine)."""
    if not isinstance(body, dict):
        return "The body must be a JSON object."
    for name in ("sku", "location", "reason"):
        if not isinstance(body.get(name), str) or not body[name]:
            return f"Field {name} is required."
    if body["reason"] not in REASONS:
        return f"Unknown reason {body['reason']}."
    if not isinstance(body.get("quantity"), int) or isinstance(body.get("quantity"), bool):
        return "Field quantity must be a whole number."
    window = body.get("window")
    if not isinstance(window, dict) or not window.get("start") or not window.get("end"):
        return "Field window must have start and end."
    return ""
