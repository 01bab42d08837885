"""`stockstream simulate`: simulated shoppers on all four marketplaces, through the real adapters,
into the real raw topics, with a record of the ground truth.

What runs, all in this process:

* the four marketplace simulators (`connectors.simulators.*_api`) on free localhost ports, each
  with `shops` shops and the same `skus` SKUs (platform SKU ids in each platform's style, merchant
  codes `SIM-001`... shared across platforms: they are the master SKUs);
* the four marketplace adapters and the warehouse adapter, publishing to `raw.<platform>` and
  `raw.warehouse` exactly as in production (TMC consume/confirm, JD polling with its durable
  cursor, Douyin pushes, PDD WebSocket; warehouse documents over HTTP with a token);
* the driver: orders arrive at `rate` orders/s (all platforms together), `shape` steady or spike
  (a 618 / Double 11 style `spike_factor` x rate from `spike_start_s` for `spike_minutes`); each
  order follows a lifecycle drawn from `LIFECYCLES` - shipped and finished, left paid (reserved),
  unpaid, cancelled before or after payment, partly refunded, or returned after shipment.
  Lifecycle steps are spaced `step_delay_s` apart. A return sends a RETURN_RECEIVED document
  (JSON) and later its inspection (CSV: RETURN_RESTOCKED / RETURN_SCRAPPED) through the
  warehouse adapter; the run starts with one RECEIPT of `initial_stock` per SKU at `location`.

Bounded: the driver creates at most `max_orders` orders (and at most `max_per_tick` per 50 ms
tick), stops creating and advancing at `duration_s` (or on Ctrl-C), then waits at most
`settle_s` until the simulators have nothing left undelivered (a second Ctrl-C skips the wait).

Order ids are offset per run (by the start time) so that runs against the same topics do not
reuse them; `order_seq_start` fixes the offset.

The truth file (JSON): `orders` (every order's final state, per platform), `events` (every order
event each simulator generated: TMC messages, pushes, frames, JD order versions), `jd_final_versions`
(the message-id the JD adapter gives each order's final version; JD versions replaced between
two polls are never seen by any poller), `warehouse_documents`, `skus` (per master SKU: per
channel ordered / reserved / shipped / cancelled / returned units, totals, returns restocked /
scrapped / still in inspection, expected on-hand and ATS at `location`), `published` (raw records
the adapters published, per platform) and `settled` (nothing was left undelivered).

Reserved counts PAID lines only: the simulated shops reserve on payment (`reserve_unpaid` false).

Against simulators already running (`simulator_urls`, e.g. `stockstream simulator run` services
in docker-compose, with adapters of their own in front of them): nothing is started but the
warehouse adapter (unless `warehouse_url` names a running one, with `warehouse_token`); orders are
created and advanced through each simulator's control API, on the shops of STOCKSTREAM_SHOPS
(the configuration the simulators and adapters read too), SKUs are given stock there first; the
run has settled when the simulators have nothing undelivered and raw.jd holds every JD order's
final version. Order ids come from the simulators (`simulator run --order-seq-start`).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import json
import logging
import random
import signal
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional

import aiohttp

from connectors import jd, warehouse as feed
from connectors.adapters import make_adapter, make_feed_adapter
from connectors.adapters.jd import version_id
from connectors.adapters.warehouse import TOKEN_HEADER
from connectors.base import RawHeader, RawRecord
from connectors.dedupe import load_recent
from connectors.publisher import RawPublisher
from connectors.simulators.base_api import OutOfStock, PlatformSim, SimShop
from connectors.simulators.douyin_api import DouyinSim
from connectors.simulators.jd_api import JdSim
from connectors.simulators.pdd_api import PddSim
from connectors.simulators.tmall_api import TmallSim
from sinks.listings import Listing
from stockstream.core.model import LineStatus, WarehouseEvent, WarehouseEventType
from stockstream.settings import Settings, ShopCredentials
from stockstream.sim_handles import LocalSim, RemoteSim
from stockstream.topics import CONNECTOR_STATE, QUARANTINE, RAW_TOPICS, RAW_WAREHOUSE, ensure_topics

log = logging.getLogger(__name__)

S = LineStatus
PLATFORMS = ("tmall", "jd", "douyin", "pdd")
UNPAID_VISIBLE = ("tmall", "douyin")  # JD and PDD sellers only see paid orders
PER_LINE = ("tmall", "douyin")  # sub-orders with their own state (partial refunds)
WAREHOUSE_ID = "SIM-WMS"

# name -> (weight, steps after placement). Placement is CREATED on Tmall / Douyin (then PAID as
# the first step) and PAID on JD / PDD. "partial" closes the first line only, "return" sends the
# warehouse return documents.
LIFECYCLES: dict[str, tuple[int, tuple[Any, ...]]] = {
    "finished": (25, (S.SHIPPED, S.FINISHED)),
    "shipped": (15, (S.SHIPPED,)),
    "paid": (15, ()),
    "unpaid": (5, ()),
    "cancel_unpaid": (10, (S.CLOSED,)),
    "cancel_paid": (10, (S.CLOSED,)),
    "partial_refund": (8, ("partial", S.SHIPPED)),
    "return": (12, (S.SHIPPED, S.CLOSED, "return_received", "return_inspected")),
}
UNPAID_LIFECYCLES = ("unpaid", "cancel_unpaid")

FAULTS = dict(duplicate_rate=0.1, max_delay_s=0.3, reorder=True, fail_rate=0.02, throttle_rate=0.01)
SKU_STYLE = {  # listing id, first platform SKU id
    "tmall": ("681234567890", 5012345678901),
    "jd": ("10001234567", 100012345678),
    "douyin": ("3539925204033339668", 1750000000000000001),
    "pdd": ("123456789", 1234567890),
}


def simulated_skus(platform: str, skus: int) -> list[dict[str, str]]:
    """The SKUs the simulation registers on every shop of `platform`: one listing, platform SKU
    ids in the platform's style, merchant codes SIM-001... (the master SKUs, identity catalog)."""
    listing, first = SKU_STYLE[platform]
    return [{"listing_id": listing, "sku_id": str(first + i), "merchant_code": f"SIM-{i + 1:03d}"} for i in range(skus)]


def simulated_listings(shops: Iterable[Any], skus: int) -> list[Listing]:
    """What the channel sink needs to write stock to the simulated shops (the seller-centre export
    of a real shop): a listing row per shop and simulated SKU."""
    return [
        Listing(shop.platform, shop.shop_id, sku["listing_id"], sku["sku_id"], sku["merchant_code"])
        for shop in shops
        if shop.platform in SKU_STYLE
        for sku in simulated_skus(shop.platform, skus)
    ]


SHOP_BASE = {"tmall": 2200754211234, "jd": 10086001, "douyin": 4463798, "pdd": 987654321}
SIM_CLASSES = {"tmall": TmallSim, "jd": JdSim, "douyin": DouyinSim, "pdd": PddSim}
SIM_DEFAULTS: dict[str, dict[str, Any]] = {
    "tmall": dict(visibility_timeout_s=5.0),
    "jd": {},
    "douyin": dict(push_batch=10, retry_interval_s=0.5, push_timeout_s=5),
    "pdd": dict(ack_timeout_s=3.0),
}


def build_simulator(platform: str, shops: list[Any], seed: int = 0, **options: Any) -> PlatformSim:
    """A simulator of `platform` for `shops` (SimShops, or the ShopCredentials adapters use),
    with this module's defaults under `options` (knobs and the simulator's own parameters)."""
    sim_shops = [
        s if isinstance(s, SimShop)
        else SimShop(s.shop_id, s.app_key, s.app_secret.get_secret_value(), s.access_token.get_secret_value())
        for s in shops
    ]
    return SIM_CLASSES[platform](sim_shops, seed=seed, **{**SIM_DEFAULTS[platform], **options})


@dataclass
class SimulateOptions:
    rate: float = 5.0  # orders per second, all platforms together
    shape: str = "steady"  # steady | spike
    spike_factor: float = 10.0
    spike_start_s: float = 60.0
    spike_minutes: float = 5.0
    duration_s: float = 60.0
    seed: int = 0
    truth_out: Optional[Path] = None
    shops: int = 2  # per platform
    skus: int = 20
    faults: bool = False  # duplicate / delay / reorder deliveries, failing / throttled API calls
    max_orders: int = 1_000_000
    max_per_tick: int = 2_000
    step_delay_s: tuple[float, float] = (0.2, 2.0)
    settle_s: float = 60.0
    location: str = "main"
    initial_stock: int = 100_000
    restock_rate: float = 0.8  # returned units restocked (the rest scrapped)
    order_seq_start: Optional[int] = None
    tick_s: float = 0.05
    # Simulators already running, platform -> base URL (all four, or none: start our own).
    simulator_urls: dict[str, str] = field(default_factory=dict)
    warehouse_url: str = ""  # a running warehouse adapter's endpoint (else one is started here)
    warehouse_token: str = ""  # its token for WAREHOUSE_ID

    def __post_init__(self) -> None:
        if self.shape not in ("steady", "spike"):
            raise ValueError("shape is steady or spike")
        if self.rate <= 0 or self.duration_s <= 0 or self.spike_factor <= 0:
            raise ValueError("rate, duration and spike factor must be positive")
        if self.skus < 2 or self.shops < 1:
            raise ValueError("at least 2 SKUs and 1 shop per platform")
        if self.simulator_urls and set(self.simulator_urls) != set(PLATFORMS):
            raise ValueError(f"simulator URLs for all of {', '.join(PLATFORMS)}, or none")
        if self.warehouse_url and not self.warehouse_token:
            raise ValueError("a running warehouse adapter needs its token")

    @property
    def remote(self) -> bool:
        return bool(self.simulator_urls)

    def rate_at(self, t: float) -> float:
        if self.shape == "spike" and self.spike_start_s <= t < self.spike_start_s + self.spike_minutes * 60:
            return self.rate * self.spike_factor
        return self.rate


# --------------------------------------------------------------------------------------------
# Sink that remembers what was published


class RecordingSink:
    """The production sink (publish, return once the broker acknowledged) that also remembers
    the message ids it published, per platform."""

    def __init__(self, publisher: RawPublisher) -> None:
        self.publisher = publisher
        self.message_ids: dict[str, set[str]] = defaultdict(set)
        self.published: Counter[str] = Counter()

    async def __call__(self, platform: str, records: list[RawRecord]) -> None:
        if not records:
            return
        await asyncio.to_thread(self.publisher.publish, platform, records)
        self.published[platform] += len(records)
        for r in records:
            mid = r.headers.get(RawHeader.MESSAGE_ID)
            if mid:
                self.message_ids[platform].add(mid)


# --------------------------------------------------------------------------------------------
# The run


@dataclass
class _Plan:
    platform: str
    order_id: str
    lifecycle: str
    steps: list[Any]


@dataclass
class Simulation:
    settings: Settings
    opts: SimulateOptions
    rng: random.Random = field(init=False)
    run_id: str = field(init=False)
    sims: dict[str, Any] = field(default_factory=dict)  # platform -> LocalSim | RemoteSim
    skus: dict[str, list[dict[str, str]]] = field(default_factory=dict)
    plans: dict[tuple[str, str], _Plan] = field(default_factory=dict)
    documents: list[dict[str, Any]] = field(default_factory=list)
    counters: Counter = field(default_factory=Counter)
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    abort: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.opts.seed)
        self.run_id = time.strftime("%Y%m%d%H%M%S") + "-" + uuid.uuid4().hex[:4]
        self._heap: list[tuple[float, int, tuple[str, str]]] = []
        self._seq = itertools.count()
        self.token = uuid.uuid4().hex
        self.returns: dict[str, Counter] = defaultdict(Counter)  # master SKU -> received/restocked/scrapped

    # ---------------------------------------------------------------- setup

    def _build_sims(self) -> dict[str, list[SimShop]]:
        o = self.opts
        knobs = FAULTS if o.faults else {}
        shops = {
            p: [
                SimShop(str(SHOP_BASE[p] + i), f"{p}-sim-app-{i}", f"{p}-secret-{uuid.uuid4().hex[:12]}", f"{p}-token-{i}")
                for i in range(o.shops)
            ]
            for p in PLATFORMS
        }
        seed = o.seed * 10
        start = o.order_seq_start if o.order_seq_start is not None else max(1, (int(time.time()) - 1_700_000_000) * 10_000)
        for i, p in enumerate(PLATFORMS):
            sim = build_simulator(p, shops[p], seed=seed + i + 1, **knobs)
            sim._order_seq = itertools.count(start)  # unique order ids per run (see module docstring)
            self.sims[p] = LocalSim(sim)
        self._define_skus()
        return shops

    def _remote_sims(self) -> None:
        for p in PLATFORMS:
            self.sims[p] = RemoteSim(p, self.opts.simulator_urls[p], [s.shop_id for s in self.settings.shops if s.platform == p])
        self._define_skus()

    def _define_skus(self) -> None:
        for p in PLATFORMS:
            self.skus[p] = simulated_skus(p, self.opts.skus)

    async def _seed_stock(self) -> None:
        for p, sim in self.sims.items():
            for shop_id in sim.shop_ids:
                for sku in self.skus[p]:
                    await sim.register_sku(shop_id, sku, 10_000_000)

    # ---------------------------------------------------------------- driving

    async def _place(self) -> None:
        platform = self.rng.choice(PLATFORMS)
        sim = self.sims[platform]
        shop = self.rng.choice(sim.shop_ids)
        names = [n for n in LIFECYCLES if platform in UNPAID_VISIBLE or n not in UNPAID_LIFECYCLES]
        name = self.rng.choices(names, weights=[LIFECYCLES[n][0] for n in names])[0]
        n_lines = 2 if name == "partial_refund" and platform in PER_LINE else self.rng.choice((1, 1, 2))
        lines = [{**sku, "quantity": self.rng.randint(1, 3)} for sku in self.rng.sample(self.skus[platform], n_lines)]
        steps = list(LIFECYCLES[name][1])
        if name == "partial_refund" and platform not in PER_LINE:
            steps = [S.SHIPPED]  # JD / PDD have one state per order: no partial refunds
        if platform in UNPAID_VISIBLE:
            first = S.CREATED
            if name not in UNPAID_LIFECYCLES:
                steps.insert(0, S.PAID)
        else:
            first = S.PAID
        self.counters["orders_attempted"] += 1
        try:
            order = await sim.create_order(shop, lines, first)
        except OutOfStock:
            self.counters["out_of_stock"] += 1
            return
        self.counters["orders"] += 1
        self.counters[f"lifecycle.{name}"] += 1
        key = (platform, order.order_id)
        self.plans[key] = _Plan(platform, order.order_id, name, steps)
        self._schedule(key)

    def _schedule(self, key: tuple[str, str]) -> None:
        if self.plans[key].steps:
            lo, hi = self.opts.step_delay_s
            due = time.monotonic() + self.rng.uniform(lo, hi)
            heapq.heappush(self._heap, (due, next(self._seq), key))

    async def _step(self, key: tuple[str, str], http: aiohttp.ClientSession, url: str, token: str) -> None:
        plan = self.plans[key]
        step = plan.steps.pop(0)
        sim = self.sims[plan.platform]
        order = sim.orders[plan.order_id]
        if step == "partial":
            await sim.advance(plan.order_id, S.CLOSED, [order.lines[0].line_id])
            self.counters["partial_refunds"] += 1
        elif step == "return_received":
            at = _now_ms()
            events = [
                WarehouseEvent(
                    WarehouseEventType.RETURN_RECEIVED, self._return_doc(plan, "R"), i + 1, self.opts.location,
                    line.merchant_code, line.quantity, at, reason=f"{plan.platform} order {plan.order_id}",
                )
                for i, line in enumerate(order.lines)
            ]
            await self._send(http, url, events, "json", token)
            for e in events:
                self.returns[e.sku]["received"] += e.quantity
        elif step == "return_inspected":
            at = _now_ms()
            events = []
            for i, line in enumerate(order.lines):
                restocked = self.rng.random() < self.opts.restock_rate
                kind = WarehouseEventType.RETURN_RESTOCKED if restocked else WarehouseEventType.RETURN_SCRAPPED
                events.append(
                    WarehouseEvent(kind, self._return_doc(plan, "I"), i + 1, self.opts.location, line.merchant_code, line.quantity, at)
                )
            await self._send(http, url, events, "csv", token)
            for e in events:
                self.returns[e.sku]["restocked" if e.event_type == WarehouseEventType.RETURN_RESTOCKED else "scrapped"] += e.quantity
        else:
            await sim.advance(plan.order_id, step)
            if step == S.CLOSED:  # `order` is as it was before: had it shipped?
                self.counters["returns" if order.status >= S.SHIPPED else "cancellations"] += 1
        self._schedule(key)

    def _return_doc(self, plan: _Plan, suffix: str) -> str:
        return f"RTN-{self.run_id}-{plan.platform}-{plan.order_id}-{suffix}"

    async def _send(self, http: aiohttp.ClientSession, url: str, events: list[WarehouseEvent], kind: str, token: str) -> None:
        body = feed.json_document(events) if kind == "json" else feed.csv_payload(events)
        content_type = "application/json" if kind == "json" else "text/csv"
        status, answer = 0, None
        for attempt in range(5):
            try:
                async with http.post(url, data=body, headers={"Content-Type": content_type, TOKEN_HEADER: token}) as r:
                    status, answer = r.status, await r.json(content_type=None)
            except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                status, answer = 0, str(exc)
            if status != 503 and status != 0:
                break
            await asyncio.sleep(0.2 * 2**attempt)
        self.counters[f"warehouse_http_{status}"] += 1
        first = events[0]
        self.documents.append(
            {
                "document_id": first.document_id, "type": first.event_type.value, "kind": kind, "status": status,
                "location": first.location,
                "lines": [{"line_no": e.line_no, "sku": e.sku, "quantity": e.quantity, "event_type": e.event_type.value} for e in events],
            }
        )
        if status != 200:
            log.warning("warehouse document %s answered %s: %s", first.document_id, status, answer)

    async def _drive(self, http: aiohttp.ClientSession, url: str, token: str) -> None:
        o = self.opts
        t0 = time.monotonic()
        last = 0.0
        due_orders = 0.0
        while not self.stop.is_set():
            now = time.monotonic() - t0
            if now >= o.duration_s:
                break
            due_orders += o.rate_at(now) * (now - last)
            last = now
            n = min(int(due_orders) - self.counters["orders_attempted"], o.max_per_tick, o.max_orders - self.counters["orders_attempted"])
            for _ in range(max(n, 0)):
                await self._place()
            steps = 0
            while self._heap and self._heap[0][0] <= time.monotonic() and steps < o.max_per_tick:
                _, _, key = heapq.heappop(self._heap)
                await self._step(key, http, url, token)
                steps += 1
            try:
                await asyncio.wait_for(self.stop.wait(), timeout=o.tick_s)
            except asyncio.TimeoutError:
                pass
        self.counters["steps_not_taken"] = sum(len(p.steps) for p in self.plans.values())

    # ---------------------------------------------------------------- truth

    def jd_final_versions(self) -> dict[str, str]:
        return {oid: version_id(jd.search_order(o)) for oid, o in self.sims["jd"].orders.items()}

    async def delivered(self, sink: RecordingSink, started_ms: int) -> bool:
        for p in ("tmall", "douyin", "pdd"):
            if await self.sims[p].pending():
                return False
        finals = set(self.jd_final_versions().values())
        if finals <= sink.message_ids["jd"]:
            return True
        if not self.opts.remote:
            return False
        # The adapters run elsewhere: look for the final versions in raw.jd itself.
        window_s = (_now_ms() - started_ms) / 1000 + 60
        shop_ids = self.sims["jd"].shop_ids
        written = await asyncio.to_thread(load_recent, self.settings, "jd", shop_ids, window_s)
        sink.message_ids["jd"].update(d.message_id for d in written)
        return finals <= sink.message_ids["jd"]

    def truth(self, sink: RecordingSink, settled: bool, started_ms: int) -> dict[str, Any]:
        per_sku: dict[str, dict[str, Any]] = {}
        orders_out: dict[str, list[dict[str, Any]]] = {}

        def sku_entry(master: str) -> dict[str, Any]:
            return per_sku.setdefault(master, {"channels": {}, "reserved": 0, "shipped": 0, "returned": 0, "cancelled": 0, "ordered": 0})

        for platform, sim in self.sims.items():
            rows = []
            for order in list(sim.orders.values()):
                plan = self.plans.get((platform, order.order_id))
                lines = []
                for line in order.lines:
                    status = order.line_status(line)
                    shipped = order.line_shipped(line)
                    lines.append({"line_id": line.line_id, "sku_id": line.sku_id, "merchant_code": line.merchant_code,
                                  "quantity": line.quantity, "status": status.name, "shipped": shipped})
                    entry = sku_entry(line.merchant_code)
                    channel = entry["channels"].setdefault(
                        f"{platform}/{order.shop_id}", {"ordered": 0, "reserved": 0, "shipped": 0, "cancelled": 0, "returned": 0}
                    )
                    q = line.quantity
                    bucket = ("reserved" if status == S.PAID else "shipped" if shipped and status != S.CLOSED
                              else "returned" if shipped else "cancelled" if status == S.CLOSED else None)
                    for target in (channel, entry):
                        target["ordered"] += q
                        if bucket == "returned":
                            target["shipped"] += q  # a returned unit left the warehouse first
                        if bucket:
                            target[bucket] += q
                rows.append({"order_id": order.order_id, "shop_id": order.shop_id, "status": order.status.name,
                             "lifecycle": plan.lifecycle if plan else None, "lines": lines})
            orders_out[platform] = rows

        for master, entry in per_sku.items():
            r = self.returns.get(master, Counter())
            entry["returns_received"] = r["received"]
            entry["returns_restocked"] = r["restocked"]
            entry["returns_scrapped"] = r["scrapped"]
            entry["in_inspection"] = r["received"] - r["restocked"] - r["scrapped"]
        for sku in self.skus["tmall"]:
            entry = sku_entry(sku["merchant_code"])
            for key in ("returns_received", "returns_restocked", "returns_scrapped", "in_inspection"):
                entry.setdefault(key, 0)
            received = self.opts.initial_stock
            entry["received"] = received
            entry["expected_on_hand"] = {self.opts.location: received - entry["shipped"] + entry["returns_restocked"]}
            entry["expected_ats"] = max(entry["expected_on_hand"][self.opts.location] - entry["reserved"], 0)

        return {
            "run_id": self.run_id,
            "started_ms": started_ms,
            "finished_ms": _now_ms(),
            "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(self.opts).items()},
            "topic_prefix": self.settings.topic_prefix,
            "settled": settled,
            "counters": dict(self.counters),
            "published": dict(sink.published),
            "shops": {p: list(sim.shop_ids) for p, sim in self.sims.items()},
            "orders": orders_out,
            "events": {p: [asdict(e) for e in sim.events] for p, sim in self.sims.items()},
            "jd_final_versions": self.jd_final_versions(),
            "warehouse_documents": self.documents,
            "skus": dict(sorted(per_sku.items())),
        }

    # ---------------------------------------------------------------- everything

    async def run(self) -> dict[str, Any]:
        o = self.opts
        settings = self.settings
        await asyncio.to_thread(ensure_topics, settings, (*RAW_TOPICS.values(), RAW_WAREHOUSE, QUARANTINE, CONNECTOR_STATE))
        started_ms = _now_ms()
        if o.remote:
            shops: dict[str, list[SimShop]] = {}
            self._remote_sims()
        else:
            shops = self._build_sims()
        urls = {p: await sim.start() for p, sim in self.sims.items()}
        await self._seed_stock()
        publisher = RawPublisher(settings)
        sink = RecordingSink(publisher)

        def creds(p: str) -> list[ShopCredentials]:
            return [
                ShopCredentials(platform=p, shop_id=s.shop_id, app_key=s.app_key, app_secret=s.app_secret,
                                access_token=s.access_token, api_base_url=urls[p], fulfilment_location=o.location)
                for s in shops[p]
            ]

        adapters: dict[str, Any] = {}
        if not o.remote:  # running simulators have their adapters running in front of them
            adapters = {
                "tmall": make_adapter("tmall", creds("tmall"), publisher, sink=sink, idle_wait_s=0.2),
                "jd": make_adapter("jd", creds("jd"), publisher, sink=sink, overlap_s=5, lag_s=0.5, poll_interval_s=0.5,
                                   initial_lookback_s=120),
                "douyin": make_adapter("douyin", creds("douyin"), publisher, sink=sink),
                "pdd": make_adapter("pdd", creds("pdd"), publisher, sink=sink, heartbeat_s=5),
            }
        warehouse = None
        token = o.warehouse_token or self.token
        if not o.warehouse_url:
            warehouse = make_feed_adapter("warehouse", publisher, tokens={WAREHOUSE_ID: token}, port=0)
        stops = asyncio.Event()
        tasks: list[asyncio.Task] = []
        settled = False
        try:
            if adapters:
                self.sims["douyin"].sim.set_callback(await adapters["douyin"].start())
                tasks = [asyncio.create_task(adapters[p].run(stops)) for p in ("tmall", "jd", "pdd")]
            wh_url = await warehouse.start() if warehouse is not None else o.warehouse_url
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
                at = _now_ms()
                initial = [
                    WarehouseEvent(WarehouseEventType.RECEIPT, f"GRN-{self.run_id}-INIT", i + 1, o.location,
                                   sku["merchant_code"], o.initial_stock, at)
                    for i, sku in enumerate(self.skus["tmall"])
                ]
                await self._send(http, wh_url, initial, "json", token)
                await self._drive(http, wh_url, token)
            deadline = time.monotonic() + o.settle_s
            interval = 1.0 if o.remote else 0.25  # remote: each check asks the simulators and Kafka
            while not self.abort.is_set() and time.monotonic() < deadline:
                for task in tasks:
                    if task.done():
                        task.result()  # an adapter died: say why
                if await self.delivered(sink, started_ms):
                    settled = True
                    break
                try:
                    await asyncio.wait_for(self.abort.wait(), timeout=interval)
                except asyncio.TimeoutError:
                    pass
        finally:
            stops.set()
            for task in tasks:
                try:
                    await asyncio.wait_for(task, timeout=5)
                except (asyncio.TimeoutError, asyncio.CancelledError, Exception):
                    task.cancel()
            if adapters:
                await adapters["douyin"].stop()
            if warehouse is not None:
                await warehouse.stop()
            for adapter in adapters.values():
                await adapter.close()
            for sim in self.sims.values():
                await sim.refresh()
                await sim.stop()
        truth = self.truth(sink, settled, started_ms)
        if o.truth_out is not None:
            path = Path(o.truth_out)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(truth, indent=1, sort_keys=True, ensure_ascii=False))
        return truth


def _now_ms() -> int:
    return int(time.time() * 1000)


async def simulate(settings: Settings, opts: SimulateOptions) -> dict[str, Any]:
    """Run a simulation (see the module docstring); returns the truth it wrote. Ctrl-C (SIGINT)
    stops the driver; a second one skips waiting for deliveries."""
    sim = Simulation(settings, opts)
    loop = asyncio.get_running_loop()
    presses = 0

    def on_interrupt() -> None:
        nonlocal presses
        presses += 1
        sim.stop.set()
        if presses > 1:
            sim.abort.set()

    try:
        loop.add_signal_handler(signal.SIGINT, on_interrupt)
        installed = True
    except (NotImplementedError, RuntimeError, ValueError):  # not the main thread / platform
        installed = False
    try:
        return await sim.run()
    finally:
        if installed:
            loop.remove_signal_handler(signal.SIGINT)


def run_simulation(settings: Settings, opts: SimulateOptions) -> dict[str, Any]:
    return asyncio.run(simulate(settings, opts))


def summary(truth: dict[str, Any]) -> str:
    c = truth["counters"]
    events = sum(len(v) for v in truth["events"].values())
    return (
        f"run {truth['run_id']}: {c.get('orders', 0)} orders ({c.get('out_of_stock', 0)} refused), "
        f"{c.get('cancellations', 0)} cancelled, {c.get('partial_refunds', 0)} partly refunded, "
        f"{c.get('returns', 0)} returned; {events} order events, "
        f"{len(truth['warehouse_documents'])} warehouse documents; published {truth['published']}; "
        f"{'all delivered' if truth['settled'] else 'NOT all delivered (settle time ran out)'}"
    )
