"""What the four marketplace API simulators share: shops and credentials, orders and per-SKU
channel stock, fault knobs (duplicate / delay / reorder deliveries, fail / throttle API calls,
rate limits), a redelivering message queue, a history of stock changes, and a small control API.

Each platform module (`tmall_api`, `jd_api`, `douyin_api`, `pdd_api`) subclasses `PlatformSim`:
it adds the platform's gateway routes (signing checks, error shapes, throttle codes exactly as
`/work/shared/reference/marketplaces.md` describes them) and renders order changes into the
platform's delivery mechanism (TMC queue, JD search index, Douyin push, PDD WebSocket frames).

Control API (JSON, no signing; for traffic drivers and tests):

  POST  /_sim/orders                       {shop_id, lines:[{sku_id, quantity, listing_id?,
                                            merchant_code?}], status?} -> order
  POST  /_sim/orders/{order_id}/advance    {status, line_ids?} -> order (line_ids: close lines)
  GET   /_sim/orders/{order_id}            -> order
  GET   /_sim/stock[?shop_id=]             -> [{shop_id, sku_id, listing_id, quantity}]
  PUT   /_sim/stock                        {shop_id, sku_id, quantity, listing_id?}
  GET   /_sim/stock-history[?source=write] -> every change of a channel stock level
  GET   /_sim/events                       -> every order event the platform generated
  GET   /_sim/stats                        -> counters (calls, bad signatures, throttled, ...)
  PATCH /_sim/knobs                        {field: value} of `Knobs`

The same operations are methods for in-process use (`create_order`, `advance`, `set_stock`, ...).
Order statuses are `LineStatus` names. Simulated orders are never shared between shops.

What the simulators leave out on purpose: OAuth / token refresh, API field selection (`fields`
is accepted and ignored), pagination of anything but JD search, buyer-side APIs, and the
platforms' per-method quota tables (one rate limit per app stands in for all of them).
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from collections import Counter
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Iterable, Mapping, Optional, Sequence

from aiohttp import web

from connectors.simulated import SimBuyer, SimLine, SimOrder
from stockstream.core.model import LineStatus


def now_ms() -> int:
    return int(time.time() * 1000)


# --------------------------------------------------------------------------------------------
# Configuration


@dataclass(frozen=True)
class SimShop:
    """A shop as the platform knows it: the app it authorised and the seller token it issued."""

    shop_id: str
    app_key: str
    app_secret: str
    access_token: str = ""


@dataclass
class Knobs:
    """Fault injection shared by every simulator. Rates are probabilities per delivery / call."""

    duplicate_rate: float = 0.0  # a delivery is made twice (independently acknowledged)
    duplicate_lag_s: float = 0.3  # the second copy becomes visible 0.5..1 x this later
    max_delay_s: float = 0.0  # each delivery is held back by a random 0..max_delay_s
    reorder: bool = False  # ready deliveries go out in random order instead of creation order
    fail_rate: float = 0.0  # API calls answered with the platform's transient server error
    throttle_rate: float = 0.0  # API calls answered with the platform's throttle code
    rate_limit_per_s: Optional[float] = None  # per app; above it the throttle code is returned
    rate_burst: int = 20
    timestamp_tolerance_s: float = 600.0  # request timestamps this far off are refused
    default_stock: int = 1000  # stock of a SKU first seen on an order


class OutOfStock(ValueError):
    """The platform refuses to sell more than the channel shows (no oversell on the platform)."""


# --------------------------------------------------------------------------------------------
# Records kept for tests


@dataclass(frozen=True)
class StockChange:
    """One change of a channel stock level. `quantity` is the level after the change."""

    at_ms: int
    shop_id: str
    sku_id: str
    quantity: int
    source: str  # "write" (seller API), "order" (a sale or its cancellation), "seed" (control API)
    method: str = ""
    order_id: str = ""


@dataclass(frozen=True)
class SimEvent:
    """An order event the platform generated: a TMC message, a push, a frame, a JD order version."""

    event_id: str
    shop_id: str
    order_id: str
    kind: str  # TMC topic, Douyin tag, PDD message type, JD orderState
    at_ms: int


@dataclass
class SkuInfo:
    listing_id: str
    merchant_code: str = ""


# --------------------------------------------------------------------------------------------
# Rate limiting


class TokenBucket:
    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = float(burst)
        self.last = time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.last) * self.rate)
        self.last = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


# --------------------------------------------------------------------------------------------
# Redelivering queue (TMC, Douyin push, PDD frames)


@dataclass
class Delivery:
    seq: int
    message_id: str
    payload: Any
    available_at: float  # monotonic
    invisible_until: float = 0.0
    attempts: int = 0
    shop_id: str = ""


class DeliveryQueue:
    """At-least-once delivery: a taken message stays in the queue until acknowledged and becomes
    visible again after the visibility timeout. Knobs add delay, duplicates and reordering."""

    def __init__(self, knobs: Knobs, rng: random.Random) -> None:
        self.knobs = knobs
        self.rng = rng
        self._entries: list[Delivery] = []
        self._seq = itertools.count()
        self.changed = asyncio.Event()  # set when something was queued or released
        self.delivered = 0
        self.redelivered = 0
        self.duplicated = 0

    def put(self, message_id: str, payload: Any, shop_id: str = "") -> None:
        copies = 1
        if self.rng.random() < self.knobs.duplicate_rate:
            copies = 2
            self.duplicated += 1
        delay = self.rng.uniform(0, self.knobs.max_delay_s) if self.knobs.max_delay_s > 0 else 0.0
        for copy in range(copies):
            lag = self.knobs.duplicate_lag_s * self.rng.uniform(0.5, 1.0) if copy else 0.0
            self._entries.append(Delivery(next(self._seq), message_id, payload, time.monotonic() + delay + lag, shop_id=shop_id))
        self._notify()

    def take(self, n: int, visibility_s: float, shop_ids: Optional[set[str]] = None) -> list[Delivery]:
        """Up to n visible deliveries, made invisible for `visibility_s`."""
        now = time.monotonic()
        ready = [
            e for e in self._entries
            if e.available_at <= now and e.invisible_until <= now and (shop_ids is None or e.shop_id in shop_ids)
        ]
        if self.knobs.reorder:
            self.rng.shuffle(ready)
        taken = ready[:n]
        for e in taken:
            e.invisible_until = now + visibility_s
            e.attempts += 1
            self.delivered += 1
            if e.attempts > 1:
                self.redelivered += 1
        return taken

    def ack(self, message_ids: Iterable[str]) -> int:
        """Remove delivered entries with these ids. A duplicate not yet delivered stays queued."""
        ids = set(message_ids)
        before = len(self._entries)
        self._entries = [e for e in self._entries if not (e.message_id in ids and e.attempts > 0)]
        return before - len(self._entries)

    def ack_entry(self, entry: Delivery) -> None:
        self._entries = [e for e in self._entries if e is not entry]

    def release_ids(self, message_ids: Iterable[str]) -> None:
        """Handed back by the consumer (TMC f_message_ids): visible again now."""
        ids = set(message_ids)
        self.release([e for e in self._entries if e.message_id in ids and e.attempts > 0])

    def payloads(self) -> list[Any]:
        """What is queued (delivered or not), oldest first; for tests and the control API."""
        return [e.payload for e in self._entries]

    def release(self, entries: Iterable[Delivery]) -> None:
        """Make entries visible again now (their connection died)."""
        for e in entries:
            e.invisible_until = 0.0
        self._notify()

    def retry_later(self, entry: Delivery, after_s: float) -> None:
        entry.invisible_until = time.monotonic() + after_s

    def next_visible_in(self) -> Optional[float]:
        """Seconds until something becomes visible (0: now); None when empty."""
        if not self._entries:
            return None
        now = time.monotonic()
        return max(0.0, min(max(e.available_at, e.invisible_until) - now for e in self._entries))

    def pending(self) -> int:
        return len(self._entries)

    def _notify(self) -> None:
        self.changed.set()


# --------------------------------------------------------------------------------------------
# The platform simulator base


class PlatformSim:
    """Orders, stock, knobs, control API. Subclasses add the platform's routes and deliveries."""

    platform = ""

    def __init__(self, shops: Sequence[SimShop], *, knobs: Optional[Knobs] = None, seed: int = 0, **knob_values: Any) -> None:
        if not shops:
            raise ValueError("a simulator needs at least one shop")
        self.knobs = replace(knobs or Knobs(), **knob_values)
        self.rng = random.Random(seed)
        self.shops: dict[str, SimShop] = {s.shop_id: s for s in shops}
        self.orders: dict[str, SimOrder] = {}
        self.skus: dict[tuple[str, str], SkuInfo] = {}
        self.stock: dict[tuple[str, str], int] = {}
        self.history: list[StockChange] = []
        self.events: list[SimEvent] = []
        self.stats: Counter[str] = Counter()
        self._buckets: dict[str, TokenBucket] = {}
        self._order_seq = itertools.count(1)
        # Wall clock of the platform (epoch ms); tests shift it to make orders that are "old".
        self.clock = now_ms
        self._runner: Optional[web.AppRunner] = None
        self._tasks: list[asyncio.Task] = []
        self.base_url = ""
        self.app = web.Application(client_max_size=8 * 1024 * 1024)
        self._add_control_routes()

    # ---------------------------------------------------------------- lifecycle

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Serve on host:port (0: any free port); returns the base URL."""
        self._runner = web.AppRunner(self.app, shutdown_timeout=1.0, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        actual = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.base_url = f"http://{host}:{actual}"
        await self._on_start()
        return self.base_url

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            try:
                await task
            except (asyncio.CancelledError, Exception):
                pass
        self._tasks.clear()
        await self._on_stop()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> "PlatformSim":
        await self.start()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.stop()

    async def _on_start(self) -> None:
        """Start background delivery tasks (subclasses)."""

    async def _on_stop(self) -> None:
        """Close connections (subclasses)."""

    # ---------------------------------------------------------------- shops and faults

    def shop_by_token(self, token: str) -> Optional[SimShop]:
        for shop in self.shops.values():
            if shop.access_token and shop.access_token == token:
                return shop
        return None

    def secret_of(self, app_key: str) -> Optional[str]:
        for shop in self.shops.values():
            if shop.app_key == app_key:
                return shop.app_secret
        return None

    def shops_of_app(self, app_key: str) -> list[SimShop]:
        return [s for s in self.shops.values() if s.app_key == app_key]

    def fault(self, app_key: str) -> Optional[str]:
        """None, "limit" (rate limit exceeded), "throttle" or "fail" for one API call."""
        self.stats["api_calls"] += 1
        k = self.knobs
        if k.rate_limit_per_s:
            bucket = self._buckets.get(app_key)
            if bucket is None or bucket.rate != k.rate_limit_per_s:
                bucket = self._buckets[app_key] = TokenBucket(k.rate_limit_per_s, k.rate_burst)
            if not bucket.take():
                self.stats["rate_limited"] += 1
                return "limit"
        r = self.rng.random()
        if r < k.throttle_rate:
            self.stats["throttled"] += 1
            return "throttle"
        if r < k.throttle_rate + k.fail_rate:
            self.stats["failed"] += 1
            return "fail"
        return None

    def timestamp_ok(self, ts_ms: int) -> bool:
        return abs(now_ms() - ts_ms) <= self.knobs.timestamp_tolerance_s * 1000

    # ---------------------------------------------------------------- stock

    def register_sku(self, shop_id: str, sku_id: str, listing_id: str = "", merchant_code: str = "", quantity: Optional[int] = None) -> SkuInfo:
        key = (shop_id, sku_id)
        info = self.skus.get(key)
        if info is None:
            info = self.skus[key] = SkuInfo(listing_id or sku_id, merchant_code)
            self._set_level(shop_id, sku_id, self.knobs.default_stock if quantity is None else quantity, "seed")
        else:
            if listing_id:
                info.listing_id = listing_id
            if merchant_code:
                info.merchant_code = merchant_code
            if quantity is not None:
                self._set_level(shop_id, sku_id, quantity, "seed")
        return info

    def set_stock(self, shop_id: str, sku_id: str, quantity: int, listing_id: str = "") -> None:
        self._require_shop(shop_id)
        self.register_sku(shop_id, sku_id, listing_id, quantity=quantity)

    def stock_of(self, shop_id: str, sku_id: str) -> Optional[int]:
        return self.stock.get((shop_id, sku_id))

    def write_stock(self, shop_id: str, sku_id: str, quantity: int, *, incremental: bool, method: str) -> int:
        """A seller's stock write through the API (the caller has checked the SKU exists)."""
        key = (shop_id, sku_id)
        level = self.stock[key] + quantity if incremental else quantity
        if level < 0:
            raise ValueError("stock would go negative")
        self._set_level(shop_id, sku_id, level, "write", method=method)
        return level

    @property
    def stock_writes(self) -> list[StockChange]:
        return [c for c in self.history if c.source == "write"]

    def _set_level(self, shop_id: str, sku_id: str, level: int, source: str, method: str = "", order_id: str = "") -> None:
        self.stock[(shop_id, sku_id)] = level
        self.history.append(StockChange(self.clock(), shop_id, sku_id, level, source, method, order_id))

    # ---------------------------------------------------------------- orders

    def create_order(
        self,
        shop_id: str,
        lines: Sequence[Mapping[str, Any] | SimLine],
        status: LineStatus | str = LineStatus.CREATED,
        *,
        buyer: Optional[SimBuyer] = None,
    ) -> SimOrder:
        """Place an order: its SKUs' channel stock goes down (the platforms' "拍下减库存"); the
        order is refused with OutOfStock when the channel shows too little."""
        self._require_shop(shop_id)
        status = _status(status)
        seq = next(self._order_seq)
        order_id, line_ids = self._new_ids(seq, len(lines))
        sim_lines = []
        for i, raw in enumerate(lines):
            if isinstance(raw, SimLine):
                sim_lines.append(replace(raw, line_id=line_ids[i] if raw.line_id == "" else raw.line_id))
                continue
            sku_id = str(raw["sku_id"])
            info = self.register_sku(shop_id, sku_id, str(raw.get("listing_id") or ""), str(raw.get("merchant_code") or ""))
            sim_lines.append(
                SimLine(
                    line_id=str(raw.get("line_id") or line_ids[i]),
                    listing_id=info.listing_id,
                    sku_id=sku_id,
                    merchant_code=str(raw.get("merchant_code") or info.merchant_code or f"MC-{sku_id}"),
                    quantity=int(raw["quantity"]),
                )
            )
        self._check_lines(sim_lines)
        need: Counter[str] = Counter()
        for line in sim_lines:
            self.register_sku(shop_id, line.sku_id, line.listing_id, line.merchant_code)
            need[line.sku_id] += line.quantity
        for sku, qty in need.items():
            if self.stock[(shop_id, sku)] < qty:
                raise OutOfStock(f"{shop_id}/{sku}: {self.stock[(shop_id, sku)]} on sale, {qty} ordered")
        at = _whole_second(self.clock())
        order = SimOrder(order_id, shop_id, LineStatus.CREATED, tuple(sim_lines), at, at, buyer=buyer or SimBuyer())
        if status != LineStatus.CREATED:
            order = order.advanced(status, at)
        for sku, qty in need.items():
            self._set_level(shop_id, sku, self.stock[(shop_id, sku)] - qty, "order", order_id=order_id)
        self.orders[order_id] = order
        self.stats["orders"] += 1
        self._on_change(None, order, list(order.lines))
        return order

    def advance(self, order_id: str, status: LineStatus | str, line_ids: Optional[Sequence[str]] = None) -> SimOrder:
        """Move the order (or, with line_ids, only those lines: partial refund / close) forward.
        Units of lines closed before shipment go back on sale."""
        status = _status(status)
        old = self.orders.get(order_id)
        if old is None:
            raise KeyError(f"no order {order_id}")
        at = max(_whole_second(self.clock()), old.modified_ms)
        if line_ids:
            if status != LineStatus.CLOSED:
                raise ValueError("only closing (refunding) single lines is simulated")
            unknown = set(line_ids) - {line.line_id for line in old.lines}
            if unknown:
                raise KeyError(f"order {order_id} has no lines {sorted(unknown)}")
            self._check_partial_allowed()
            lines = tuple(
                replace(line, status=LineStatus.CLOSED, shipped=old.line_shipped(line)) if line.line_id in line_ids else line
                for line in old.lines
            )
            new = replace(old, lines=lines, modified_ms=at)
            if all(new.line_status(line) == LineStatus.CLOSED for line in new.lines):
                new = replace(new, status=LineStatus.CLOSED)
            changed = [line for line in new.lines if line.line_id in line_ids]
        else:
            if status <= old.status:
                raise ValueError(f"order {order_id} is {old.status.name}; cannot go to {status.name}")
            new = old.advanced(status, at)
            changed = [line for line in new.lines if old.line_status(line) != LineStatus.CLOSED]
        for line in changed:
            if new.line_status(line) == LineStatus.CLOSED and not new.line_shipped(line):
                key = (new.shop_id, line.sku_id)
                self._set_level(new.shop_id, line.sku_id, self.stock[key] + line.quantity, "order", order_id=order_id)
        self.orders[order_id] = new
        self._on_change(old, new, changed)
        return new

    def record_event(self, event_id: str, order: SimOrder, kind: str) -> None:
        self.events.append(SimEvent(str(event_id), order.shop_id, order.order_id, kind, self.clock()))

    # ---------------------------------------------------------------- platform hooks

    def _new_ids(self, seq: int, n_lines: int) -> tuple[str, list[str]]:
        """(order id, line ids) in the platform's id style."""
        raise NotImplementedError

    def _check_lines(self, lines: Sequence[SimLine]) -> None:
        """Platform constraints on an order's lines (JD / PDD: one line per SKU)."""

    def _check_partial_allowed(self) -> None:
        """JD and PDD have one state per order."""

    def _on_change(self, old: Optional[SimOrder], new: SimOrder, changed: list[SimLine]) -> None:
        raise NotImplementedError

    def _require_shop(self, shop_id: str) -> None:
        if shop_id not in self.shops:
            raise KeyError(f"unknown shop {shop_id}")

    # ---------------------------------------------------------------- control API

    def _add_control_routes(self) -> None:
        r = self.app.router
        r.add_post("/_sim/orders", self._c_create)
        r.add_post("/_sim/orders/{order_id}/advance", self._c_advance)
        r.add_get("/_sim/orders/{order_id}", self._c_order)
        r.add_get("/_sim/stock", self._c_stock)
        r.add_put("/_sim/stock", self._c_set_stock)
        r.add_get("/_sim/stock-history", self._c_history)
        r.add_get("/_sim/events", self._c_events)
        r.add_get("/_sim/stats", self._c_stats)
        r.add_patch("/_sim/knobs", self._c_knobs)

    async def _c_create(self, request: web.Request) -> web.Response:
        body = await request.json()
        try:
            order = self.create_order(str(body["shop_id"]), body["lines"], body.get("status", "CREATED"))
        except OutOfStock as exc:
            return web.json_response({"error": str(exc)}, status=409)
        except (KeyError, ValueError, TypeError) as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response(order_json(order))

    async def _c_advance(self, request: web.Request) -> web.Response:
        body = await request.json()
        try:
            order = self.advance(request.match_info["order_id"], body["status"], body.get("line_ids"))
        except KeyError as exc:
            return web.json_response({"error": str(exc)}, status=404)
        except ValueError as exc:
            return web.json_response({"error": str(exc)}, status=409)
        return web.json_response(order_json(order))

    async def _c_order(self, request: web.Request) -> web.Response:
        order = self.orders.get(request.match_info["order_id"])
        if order is None:
            return web.json_response({"error": "no such order"}, status=404)
        return web.json_response(order_json(order))

    async def _c_stock(self, request: web.Request) -> web.Response:
        shop = request.query.get("shop_id")
        rows = [
            {"shop_id": s, "sku_id": sku, "listing_id": self.skus[(s, sku)].listing_id, "quantity": q}
            for (s, sku), q in sorted(self.stock.items())
            if shop is None or s == shop
        ]
        return web.json_response(rows)

    async def _c_set_stock(self, request: web.Request) -> web.Response:
        body = await request.json()
        try:
            self.set_stock(str(body["shop_id"]), str(body["sku_id"]), int(body["quantity"]), str(body.get("listing_id") or ""))
        except (KeyError, ValueError) as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response({"ok": True})

    async def _c_history(self, request: web.Request) -> web.Response:
        source = request.query.get("source")
        return web.json_response([asdict(c) for c in self.history if source is None or c.source == source])

    async def _c_events(self, request: web.Request) -> web.Response:
        return web.json_response([asdict(e) for e in self.events])

    async def _c_stats(self, request: web.Request) -> web.Response:
        return web.json_response(self.stat_values())

    async def _c_knobs(self, request: web.Request) -> web.Response:
        body = await request.json()
        names = {f.name for f in fields(Knobs)}
        unknown = set(body) - names
        if unknown:
            return web.json_response({"error": f"unknown knobs {sorted(unknown)}"}, status=400)
        for name, value in body.items():
            setattr(self.knobs, name, value)
        return web.json_response(asdict(self.knobs))

    def stat_values(self) -> dict[str, int]:
        return dict(self.stats)


def order_json(order: SimOrder) -> dict[str, Any]:
    return {
        "order_id": order.order_id,
        "shop_id": order.shop_id,
        "status": order.status.name,
        "modified_ms": order.modified_ms,
        "created_ms": order.created_ms,
        "paid_ms": order.paid_ms,
        "shipped_ms": order.shipped_ms,
        "lines": [
            {
                "line_id": line.line_id,
                "sku_id": line.sku_id,
                "listing_id": line.listing_id,
                "merchant_code": line.merchant_code,
                "quantity": line.quantity,
                "status": order.line_status(line).name,
                "shipped": order.line_shipped(line),
                "shipped_ms": order.line_shipped_ms(line),
            }
            for line in order.lines
        ],
    }


def _status(value: LineStatus | str) -> LineStatus:
    if isinstance(value, LineStatus):
        return value
    try:
        return LineStatus[str(value).upper()]
    except KeyError:
        raise ValueError(f"unknown status {value!r}; one of {[s.name for s in LineStatus]}") from None


def _whole_second(ms: int) -> int:
    """Platforms with second-resolution times truncate; simulate whole seconds."""
    return ms // 1000 * 1000


def request_params(query: Mapping[str, str], form: Mapping[str, Any]) -> dict[str, str]:
    """Gateway parameters from the query string and a form body together (TOP, JOS and PDD accept
    either, and sign the union)."""
    params = {k: v for k, v in query.items()}
    for k, v in form.items():
        if isinstance(v, str):
            params[k] = v
    return params
