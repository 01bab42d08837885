"""How `stockstream simulate` talks to a marketplace simulator: in this process (`LocalSim`), or
one already running elsewhere, e.g. `stockstream simulator run` in docker-compose, through its
control API (`RemoteSim`). Both offer the same small async surface, and both keep `orders` (the
latest state of every order this run created) and `events` as `SimOrder` / `SimEvent` objects so
the ground truth is computed the same way."""

from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence

import aiohttp

from connectors.simulated import SimLine, SimOrder
from connectors.simulators.base_api import OutOfStock, PlatformSim, SimEvent
from stockstream.core.model import LineStatus


class LocalSim:
    def __init__(self, sim: PlatformSim) -> None:
        self.sim = sim
        self.platform = sim.platform

    @property
    def shop_ids(self) -> list[str]:
        return list(self.sim.shops)

    @property
    def orders(self) -> Mapping[str, SimOrder]:
        return self.sim.orders

    @property
    def events(self) -> list[SimEvent]:
        return self.sim.events

    async def start(self) -> str:
        return await self.sim.start()

    async def stop(self) -> None:
        await self.sim.stop()

    async def register_sku(self, shop_id: str, sku: Mapping[str, str], quantity: int) -> None:
        self.sim.register_sku(shop_id, sku["sku_id"], sku["listing_id"], sku["merchant_code"], quantity=quantity)

    async def create_order(self, shop_id: str, lines: Sequence[Mapping[str, Any]], status: LineStatus) -> SimOrder:
        return self.sim.create_order(shop_id, lines, status)

    async def advance(self, order_id: str, status: LineStatus, line_ids: Optional[Sequence[str]] = None) -> SimOrder:
        return self.sim.advance(order_id, status, line_ids)

    async def pending(self) -> int:
        return self.sim.pending()  # type: ignore[attr-defined]

    async def refresh(self) -> None:
        """Nothing to fetch: the objects are this process's."""


class RemoteSim:
    """A simulator at `base_url`, driven over its control API (`/_sim/...`, no signing)."""

    def __init__(self, platform: str, base_url: str, shop_ids: Sequence[str], timeout_s: float = 30.0) -> None:
        if not shop_ids:
            raise ValueError(f"no {platform} shops configured (STOCKSTREAM_SHOPS)")
        self.platform = platform
        self.base_url = base_url.rstrip("/")
        self.shop_ids = list(shop_ids)
        self.orders: dict[str, SimOrder] = {}
        self.events: list[SimEvent] = []
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._http: Optional[aiohttp.ClientSession] = None

    @property
    def http(self) -> aiohttp.ClientSession:
        if self._http is None or self._http.closed:
            self._http = aiohttp.ClientSession(timeout=self._timeout)
        return self._http

    async def start(self) -> str:
        await self._call("GET", "/_sim/stats")  # fail early when nothing answers there
        return self.base_url

    async def stop(self) -> None:
        if self._http is not None and not self._http.closed:
            await self._http.close()

    async def _call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        async with self.http.request(method, self.base_url + path, json=body) as r:
            return r.status, await r.json(content_type=None)

    async def register_sku(self, shop_id: str, sku: Mapping[str, str], quantity: int) -> None:
        status, answer = await self._call(
            "PUT", "/_sim/stock", {"shop_id": shop_id, "sku_id": sku["sku_id"], "listing_id": sku["listing_id"], "quantity": quantity}
        )
        if status != 200:
            raise RuntimeError(f"{self.platform} simulator refused stock for {shop_id}/{sku['sku_id']}: {answer}")

    async def create_order(self, shop_id: str, lines: Sequence[Mapping[str, Any]], status: LineStatus) -> SimOrder:
        code, answer = await self._call("POST", "/_sim/orders", {"shop_id": shop_id, "lines": list(lines), "status": status.name})
        if code == 409:
            raise OutOfStock(answer.get("error", "out of stock"))
        return self._keep(code, answer)

    async def advance(self, order_id: str, status: LineStatus, line_ids: Optional[Sequence[str]] = None) -> SimOrder:
        body: dict[str, Any] = {"status": status.name}
        if line_ids:
            body["line_ids"] = list(line_ids)
        code, answer = await self._call("POST", f"/_sim/orders/{order_id}/advance", body)
        return self._keep(code, answer)

    async def pending(self) -> int:
        _, stats = await self._call("GET", "/_sim/stats")
        return int(stats.get("pending", 0))

    async def refresh(self) -> None:
        """The events of this run's orders (the simulator may serve other drivers too)."""
        _, events = await self._call("GET", "/_sim/events")
        self.events = [SimEvent(**e) for e in events if e["order_id"] in self.orders]

    def _keep(self, code: int, answer: Any) -> SimOrder:
        if code != 200:
            raise RuntimeError(f"{self.platform} simulator answered {code}: {answer}")
        order = order_from_json(answer)
        self.orders[order.order_id] = order
        return order


def order_from_json(doc: Mapping[str, Any]) -> SimOrder:
    """The control API's order JSON (`base_api.order_json`) back into a SimOrder."""
    lines = tuple(
        SimLine(
            line_id=line["line_id"], listing_id=line["listing_id"], sku_id=line["sku_id"], merchant_code=line["merchant_code"],
            quantity=int(line["quantity"]), status=LineStatus[line["status"]], shipped=bool(line.get("shipped")),
            shipped_ms=line.get("shipped_ms"),
        )
        for line in doc["lines"]
    )
    return SimOrder(
        order_id=doc["order_id"], shop_id=doc["shop_id"], status=LineStatus[doc["status"]], lines=lines,
        created_ms=int(doc.get("created_ms") or doc["modified_ms"]), modified_ms=int(doc["modified_ms"]),
        paid_ms=doc.get("paid_ms"), shipped_ms=doc.get("shipped_ms"),
    )
