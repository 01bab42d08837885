"""Seeded, deterministic marketplace + warehouse traffic: the raw records the four marketplace
adapters and the warehouse adapter would publish to `raw.<platform>` / `raw.warehouse`, in
delivery order, with at-least-once duplicates and bounded reordering, plus the ground truth
(`connectors.simulators.oracle.GroundTruth`) of what it all means for stock.

    traffic = generate(skus=2000, events=50_000, duplicate_rate=0.2, seed=7)
    for platform, record in traffic:          # (platform, connectors.base.RawRecord)
        ...                                   # topic raw.<platform>, key record.key
    traffic.truth.stock("SKU-00042")          # per-location buckets, per-channel reserved, ATS
    Settings(shops=traffic.shop_settings())   # the shops' reserve policy and fulfilment location

What each platform shows (only states its builders can render):

* Tmall: TMC messages per sub-order WITH line fields (num_iid, sku_id, outer_sku_id, num), and now
  and then a `taobao.trade.fullinfo.get` snapshot after a change. Refund requests arrive as
  `taobao_refund_RefundCreated` (no stock meaning); refunds as RefundSuccess / TradePartlyRefund.
* JD: poll snapshots only (one `orderInfoList` element per order per poll). Sellers never see
  unpaid orders: orders start at PAID. The poller can miss an intermediate state
  (`jd_missed_polls`); a cancellation request shows as a LOCKED snapshot first.
* Douyin: a push message (status only) followed by the `order.orderDetail` snapshot the adapter
  fetches on it.
* PDD: a WebSocket frame (names the order only) followed by the `pdd.order.information.get`
  snapshot. Orders start at PAID; a refund shows as refund_status 2 (in progress), then 4.

Order lifecycles (`lifecycle_mix`): unpaid, cancel_unpaid (closed before payment), paid,
close_paid (closed after payment, before shipment), partial_refund (one sub-order refunded before
shipment, the rest ships and usually finishes), partial_ship (one sub-order ships ahead of the
others: SELLER_CONSIGNED_PART / Douyin tag 108) - these two on Tmall / Douyin only, whose
sub-orders have their own state - shipped, finished, refund_after_ship (closed after shipment; the goods come back through
the warehouse return flow). Lifecycles a platform cannot show are drawn again.

Warehouse (documents with unique ids, JSON or CSV): initial receipts at every location, sized from
the orders' demand so that ATS stays positive for most SKUs while a share (`tight_skus`) is
short; replenishment receipts; customs holds and releases at the bonded warehouse (some units stay
held); transfers out and in (the last one still in transit); returns received and inspected
(restocked / scrapped; some still in inspection); adjustments; stock counts (absolute, as of a
time, uploaded a little later; consistent with the ledger or deliberately off, `count_mismatch`).

Delivery: every record gets an emission time (event time + a small adapter lag; documents may be
late); records are sorted by it, so orders and documents interleave. Then, per order with
probability `reorder`, its records are shuffled by at most `reorder_window` positions within its
own stream. Finally redeliveries (the same RawRecord, same bytes and headers) of earlier records
are inserted later in the stream, so that they make up `duplicate_rate` of all `events` records.
Warehouse re-sends are whole documents.

Times are whole seconds (platforms with second-resolution times would truncate otherwise).
The ground truth ships each line at its physical consign time; see the oracle's docstring.
"""

from __future__ import annotations

import itertools
import math
from bisect import bisect_left
import random
import string
from collections import Counter, defaultdict
from dataclasses import dataclass, field, replace
from typing import Any, Iterator, Mapping, Optional, Sequence

from connectors import douyin, jd, pdd, tmall, warehouse
from connectors.base import RawHeader, RawRecord, dumps_bytes, raw_record
from connectors.simulated import DOUBLE_11_MS, SimBuyer, SimLine, SimOrder
from connectors.simulators.oracle import GroundTruth, LineFact
from stockstream.core.model import LineStatus, WarehouseEvent, WarehouseEventType

W = WarehouseEventType
S = 1000  # ms per second
MINUTE = 60 * S
HOUR = 60 * MINUTE

PLATFORMS = ("tmall", "jd", "douyin", "pdd")
UNPAID_PLATFORMS = frozenset({"tmall", "douyin"})  # sellers see orders before payment
LINE_STATE_PLATFORMS = frozenset({"tmall", "douyin"})  # sub-orders have their own state

LIFECYCLES = (
    "unpaid",
    "cancel_unpaid",
    "paid",
    "close_paid",
    "partial_refund",
    "partial_ship",
    "shipped",
    "finished",
    "refund_after_ship",
)
DEFAULT_MIX: Mapping[str, float] = {
    "unpaid": 2,
    "cancel_unpaid": 4,
    "paid": 8,
    "close_paid": 4,
    "partial_refund": 4,
    "partial_ship": 3,
    "shipped": 10,
    "finished": 24,
    "refund_after_ship": 4,
}


@dataclass(frozen=True)
class ShopSpec:
    platform: str
    shop_id: str
    fulfilment_location: str
    reserve_unpaid: bool = False
    weight: float = 1.0  # share of orders

    @property
    def channel(self) -> str:
        return f"{self.platform}:{self.shop_id}"


LOCATIONS = ("SH-DC", "HZ-FTZ", "GZ-3PL")
BONDED = "HZ-FTZ"
DEFAULT_SHOPS = (
    ShopSpec("tmall", "2200754211234", "SH-DC", weight=3),
    ShopSpec("tmall", "2200754219876", "HZ-FTZ", weight=1),  # cross-border flagship: ships bonded stock
    ShopSpec("jd", "10086001", "SH-DC", weight=2),
    ShopSpec("douyin", "4463798", "GZ-3PL", reserve_unpaid=True, weight=2),  # reserve on order
    ShopSpec("pdd", "987654321", "GZ-3PL", weight=2),
)


@dataclass
class TrafficConfig:
    skus: int | Sequence[str] = 2000  # a count (SKU-00001...) or the master SKUs themselves
    shops: Sequence[ShopSpec] = DEFAULT_SHOPS
    locations: Sequence[str] = LOCATIONS
    bonded_location: Optional[str] = BONDED  # customs holds happen here (None: no customs)
    events: int = 20_000  # records delivered in all, duplicates included
    duplicate_rate: float = 0.2  # share of delivered records that are redeliveries
    duplicate_lag: int = 200  # mean distance (records) from an original to its redelivery
    reorder: float = 0.2  # share of orders whose records are reordered
    reorder_window: int = 3  # a record moves at most this many places within its order's stream
    late_documents: float = 0.1  # share of warehouse documents uploaded late (up to 2 h)
    jd_missed_polls: float = 0.1  # JD: chance the poller never sees an intermediate state
    tmall_fullinfo: float = 0.1  # Tmall: chance of a fullinfo snapshot after a change
    refund_requests: float = 0.5  # chance a refund is preceded by a request (no stock meaning)
    lifecycle_mix: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_MIX))
    tight_skus: float = 0.05  # share of ordered SKUs stocked below their demand
    receipt_lines_per_document: int = 250
    replenishments: int = 3
    customs_batches: int = 3
    transfers: int = 4  # the last one never arrives (in transit at the end)
    adjustments: int = 10
    counts: int = 6  # stock count documents
    count_skus: int = 30  # lines per count document
    count_mismatch: float = 0.3  # share of counted lines deliberately off the ledger
    csv_share: float = 0.3  # share of warehouse documents sent as CSV instead of JSON
    start_ms: int = DOUBLE_11_MS
    duration_ms: int = 6 * HOUR
    seed: int = 1

    def sku_list(self) -> list[str]:
        if isinstance(self.skus, int):
            return [f"SKU-{i:05d}" for i in range(1, self.skus + 1)]
        return list(self.skus)

    def shop_settings(self, fields: Optional[Mapping[str, Any]] = None) -> list[dict[str, Any]]:
        """`stockstream.settings.ShopCredentials` dicts for these shops (dummy credentials)."""
        return [
            {
                "platform": shop.platform,
                "shop_id": shop.shop_id,
                "app_key": f"sim-{shop.platform}",
                "app_secret": "sim-secret",
                "reserve_unpaid": shop.reserve_unpaid,
                "fulfilment_location": shop.fulfilment_location,
                **(fields or {}),
            }
            for shop in self.shops
        ]


@dataclass
class Traffic:
    config: TrafficConfig
    records: list[tuple[str, RawRecord]]  # delivery order
    truth: GroundTruth
    originals: int
    duplicates: int
    lifecycles: Counter  # lifecycle name -> orders
    buyers: dict[str, SimBuyer]  # record key (order id) -> the buyer whose data it carried

    def __iter__(self) -> Iterator[tuple[str, RawRecord]]:
        return iter(self.records)

    def __len__(self) -> int:
        return len(self.records)

    @property
    def skus(self) -> list[str]:
        return self.config.sku_list()

    def shop_settings(self, fields: Optional[Mapping[str, Any]] = None) -> list[dict[str, Any]]:
        return self.config.shop_settings(fields)


def generate(config: Optional[TrafficConfig] = None, **overrides: Any) -> Traffic:
    """Traffic for `config` (or a default one) with `overrides` applied."""
    config = replace(config or TrafficConfig(), **overrides)
    return TrafficGenerator(config).generate()


# --------------------------------------------------------------------------------------------
# Buyers (personal data that raw_record must strip)

_SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何林罗高"
_GIVEN = ("伟", "芳", "娜", "敏", "静", "丽", "强", "磊", "洋", "艳", "勇", "军", "杰", "娟", "涛", "明", "超", "秀英", "霞", "平")
_PLACES = (
    ("浙江省", "杭州市", "西湖区", "文新街道"),
    ("上海市", "上海市", "浦东新区", "张江镇"),
    ("广东省", "深圳市", "南山区", "粤海街道"),
    ("北京市", "北京市", "朝阳区", "望京街道"),
    ("四川省", "成都市", "武侯区", "玉林街道"),
    ("江苏省", "南京市", "鼓楼区", "宁海路街道"),
)
_ROADS = ("文三路", "科苑路", "张衡路", "阜通东大街", "玉林南路", "北京西路", "学院路", "人民路")
_TITLES = ("保湿精华液 30ml", "氨基酸洁面乳 120g", "防晒霜 SPF50 50ml", "修护面霜 50g", "玻尿酸面膜 5片装", "口红 #520", "洗发水 500ml", "身体乳 250ml")


def _alnum(rng: random.Random, n: int) -> str:
    return "".join(rng.choice(string.ascii_letters + string.digits) for _ in range(n))


def _buyer(rng: random.Random) -> SimBuyer:
    nick = "tb_" + "".join(rng.choice(string.ascii_lowercase) for _ in range(6)) + str(rng.randint(10, 9999))
    province, city, district, town = rng.choice(_PLACES)
    birth = f"{rng.randint(1960, 2004)}{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}"
    return SimBuyer(
        name=rng.choice(_SURNAMES) + rng.choice(_GIVEN) + rng.choice(_GIVEN),
        nick=nick,
        phone=f"1{rng.choice('3456789')}{rng.randint(0, 10**9 - 1):09d}",
        email=f"{nick[3:]}@example.com",
        province=province,
        city=city,
        district=district,
        town=town,
        address=f"{rng.choice(_ROADS)}{rng.randint(1, 999)}号{rng.randint(1, 30)}幢{rng.randint(101, 2999)}室",
        zip=f"{rng.randint(100000, 850000)}",
        id_card=f"{rng.randint(110000, 659999)}{birth}{rng.randint(0, 999):03d}{rng.choice('0123456789X')}",
        open_uid="AAH" + _alnum(rng, 21),
    )


# --------------------------------------------------------------------------------------------
# Internals


@dataclass(frozen=True)
class _Step:
    """One change of an order: its state after the change and the lines the change concerns."""

    at_ms: int
    order: SimOrder
    kind: str  # create pay ship_line ship finish cancel close lock refund_pending refund_request refund_line
    lines: tuple[SimLine, ...]


@dataclass
class _Delivery:
    emit_ms: int
    seq: int
    platform: str
    record: RawRecord
    stream: tuple  # ("o", platform, order id) | ("w", document id)


@dataclass
class _Return:
    location: str
    lines: list[tuple[str, int]]  # (master SKU, units)
    received_ms: int
    inspected_ms: Optional[int]


class TrafficGenerator:
    def __init__(self, config: TrafficConfig) -> None:
        if not 0 <= config.duplicate_rate < 1:
            raise ValueError("duplicate_rate must be in [0, 1)")
        if not config.shops:
            raise ValueError("at least one shop")
        for shop in config.shops:
            if shop.platform not in PLATFORMS:
                raise ValueError(f"unknown platform {shop.platform!r}")
            if shop.fulfilment_location not in config.locations:
                raise ValueError(f"shop {shop.channel} ships from unknown location {shop.fulfilment_location}")
        if config.bonded_location is not None and config.bonded_location not in config.locations:
            raise ValueError(f"bonded location {config.bonded_location} is not one of the locations")
        self.c = config
        self.rng = random.Random(config.seed)
        self.truth = GroundTruth()
        self.skus = config.sku_list()
        if not self.skus:
            raise ValueError("at least one SKU")
        self._sku_index = {sku: i for i, sku in enumerate(self.skus)}
        # Popularity: Zipf-like weights over a seeded permutation (hot SKUs are not just the first).
        ranks = list(range(1, len(self.skus) + 1))
        self.rng.shuffle(ranks)
        self._sku_cum = list(itertools.accumulate(1.0 / r**0.8 for r in ranks))
        self._deliveries: list[_Delivery] = []
        self._seq = itertools.count()
        self._order_seq: Counter = Counter()
        self._tmc_id = itertools.count(7_300_000_000_000_001)
        self._douyin_msg_id = itertools.count(7_412_345_678_900_000_001)
        self._pdd_frame_id = itertools.count(52_000_001)
        self._demand: Counter = Counter()  # (sku, location) -> units ordered and paid
        self._returns: list[_Return] = []
        self._return_documents = 0  # RMA + inspection documents the returns will need
        self.lifecycles: Counter = Counter()
        self.buyers: dict[str, SimBuyer] = {}

    # --- the whole run -------------------------------------------------------------------------

    def generate(self) -> Traffic:
        c = self.c
        target_originals = round(c.events * (1 - c.duplicate_rate))
        fixed_documents = self._fixed_document_count()
        order_records = 0
        while order_records + fixed_documents + self._return_documents < target_originals:
            order_records += self._order()
        self._warehouse()
        records, originals, duplicates = self._delivery_order()
        return Traffic(c, records, self.truth, originals, duplicates, self.lifecycles, self.buyers)

    def _fixed_document_count(self) -> int:
        c = self.c
        per_location = math.ceil(len(self.skus) / c.receipt_lines_per_document)
        customs = 2 * c.customs_batches if c.bonded_location else 0
        transfers = 2 * c.transfers - 1 if c.transfers and len(c.locations) > 1 else 0
        return per_location * len(c.locations) + c.replenishments + customs + transfers + c.adjustments + c.counts

    # --- orders --------------------------------------------------------------------------------

    def _pick_skus(self, n: int) -> list[str]:
        chosen: list[str] = []
        total = self._sku_cum[-1]
        while len(chosen) < min(n, len(self.skus)):
            sku = self.skus[min(bisect_left(self._sku_cum, self.rng.random() * total), len(self.skus) - 1)]
            if sku not in chosen:
                chosen.append(sku)
        return chosen

    def _lifecycle(self, platform: str, n_lines: int) -> str:
        names = [n for n in LIFECYCLES if self.c.lifecycle_mix.get(n, 0) > 0]
        weights = [self.c.lifecycle_mix[n] for n in names]
        while True:
            name = self.rng.choices(names, weights)[0]
            if name in ("unpaid", "cancel_unpaid") and platform not in UNPAID_PLATFORMS:
                continue
            if name in ("partial_refund", "partial_ship") and (platform not in LINE_STATE_PLATFORMS or n_lines < 2):
                continue
            return name

    def _new_order(self, shop: ShopSpec, n_lines: int, start_ms: int, paid: bool) -> SimOrder:
        platform = shop.platform
        seq = self._order_seq[platform]
        self._order_seq[platform] += 1
        skus = self._pick_skus(n_lines)
        quantities = [self.rng.choices((1, 2, 3, 5), (12, 4, 2, 1))[0] for _ in skus]
        lines = []
        if platform == "tmall":  # tids and oids exceed 2**53
            order_id = str(3725362658812595205 + seq * 1000)
        elif platform == "jd":
            order_id = str(301234567890 + seq)
        elif platform == "douyin":  # child order ids are the line ids
            order_id = str(6920000000000000000 + seq * 100)
        else:
            order_id = f"241111-{339507978993455 + seq}"
        for i, (sku, qty) in enumerate(zip(skus, quantities)):
            k = self._sku_index[sku]
            if platform == "tmall":
                line_id, listing, sku_id = str(int(order_id) + 1 + i), str(681234567890 + k // 4), str(5012345678901 + k)
            elif platform == "jd":
                listing, sku_id = str(10001234567 + k // 4), str(100012345678 + k)
                line_id = sku_id  # JD keys lines by skuId
            elif platform == "douyin":
                line_id, listing, sku_id = str(int(order_id) + 1 + i), str(3539925204033339668 + k // 4), str(1750000000000000001 + k)
            else:
                listing, sku_id = str(123456789 + k // 4), str(1234567890 + k)
                line_id = sku_id  # PDD keys lines by sku_id
            lines.append(SimLine(line_id, listing, sku_id, merchant_code=sku, quantity=qty, title=_TITLES[k % len(_TITLES)]))
        buyer = _buyer(self.rng)
        self.buyers[order_id] = buyer
        if paid:  # JD / PDD: the seller first sees the order paid
            created = start_ms - self.rng.randint(10, 600) * S
            return SimOrder(order_id, shop.shop_id, LineStatus.PAID, tuple(lines), created, start_ms, paid_ms=start_ms, buyer=buyer)
        return SimOrder(order_id, shop.shop_id, LineStatus.CREATED, tuple(lines), start_ms, start_ms, buyer=buyer)

    def _order(self) -> int:
        """One order from start to its final state: steps, records, truth. Returns its record count."""
        rng, c = self.rng, self.c
        shop = rng.choices(list(c.shops), [s.weight for s in c.shops])[0]
        platform = shop.platform
        n_lines = rng.choices((1, 2, 3, 4), (10, 5, 2, 1))[0]
        lifecycle = self._lifecycle(platform, n_lines)
        self.lifecycles[lifecycle] += 1
        start = c.start_ms + rng.randrange(0, max(c.duration_ms // S, 1)) * S
        order = self._new_order(shop, n_lines, start, paid=platform not in UNPAID_PLATFORMS)
        steps = self._steps(platform, lifecycle, order)
        final = steps[-1].order

        if final.paid:
            for line in final.lines:
                self._demand[(line.merchant_code, shop.fulfilment_location)] += line.quantity
        # Each line's physical consign time: the first step that shows it shipped.
        ship_ms: dict[str, int] = {}
        for step in steps:
            for line in step.order.lines:
                if line.line_id not in ship_ms and step.order.line_shipped(line):
                    ship_ms[line.line_id] = step.at_ms
        for line in final.lines:
            shipped = final.line_shipped(line)
            self.truth.set_line(
                LineFact(
                    channel=shop.channel,
                    order_id=final.order_id,
                    line_id=line.line_id,
                    sku=line.merchant_code,
                    quantity=line.quantity,
                    status=final.line_status(line),
                    shipped=shipped,
                    ship_ms=ship_ms[line.line_id] if shipped else None,
                    location=shop.fulfilment_location,
                    reserve_unpaid=shop.reserve_unpaid,
                )
            )
        if lifecycle == "refund_after_ship":
            received = final.modified_ms + rng.randint(30, 360) * MINUTE
            inspected = received + rng.randint(30, 240) * MINUTE if rng.random() < 0.75 else None
            self._returns.append(
                _Return(shop.fulfilment_location, [(line.merchant_code, line.quantity) for line in final.lines], received, inspected)
            )
            self._return_documents += 1 + (inspected is not None)

        before = len(self._deliveries)
        render = {"tmall": self._tmall, "jd": self._jd, "douyin": self._douyin, "pdd": self._pdd}[platform]
        for i, step in enumerate(steps):
            render(shop, step, last=i == len(steps) - 1)
        return len(self._deliveries) - before

    def _steps(self, platform: str, lifecycle: str, order: SimOrder) -> list[_Step]:
        rng = self.rng
        steps: list[_Step] = []
        state = {"order": order}

        def at(lo_s: int, hi_s: int) -> int:
            return state["order"].modified_ms + rng.randint(lo_s, hi_s) * S

        def changed(old: SimOrder, new: SimOrder) -> tuple[SimLine, ...]:
            return tuple(
                b for a, b in zip(old.lines, new.lines)
                if (old.line_status(a), old.line_shipped(a)) != (new.line_status(b), new.line_shipped(b))
            )

        def advance(status: LineStatus, kind: str, lo_s: int, hi_s: int) -> None:
            """The whole order moves on; the change concerns the lines whose state it changes."""
            t = at(lo_s, hi_s)
            old = state["order"]
            new = old.advanced(status, t)
            state["order"] = new
            steps.append(_Step(t, new, kind, changed(old, new)))

        def ship_line(line: SimLine, lo_s: int, hi_s: int) -> None:
            """One sub-order ships ahead of the others (SELLER_CONSIGNED_PART / Douyin 101)."""
            t = at(lo_s, hi_s)
            old = state["order"]
            shipped = replace(line, status=LineStatus.SHIPPED, shipped=True, shipped_ms=t)
            new = replace(
                old, modified_ms=t, shipped_ms=old.shipped_ms or t,
                lines=tuple(shipped if x.line_id == line.line_id else x for x in old.lines),
            )
            state["order"] = new
            steps.append(_Step(t, new, "ship_line", (shipped,)))

        def touch(kind: str, lo_s: int, hi_s: int, lines: tuple[SimLine, ...]) -> None:
            """A change without a new status (refund requested, order locked): a later modified time."""
            t = at(lo_s, hi_s)
            new = replace(state["order"], modified_ms=t)
            state["order"] = new
            steps.append(_Step(t, new, kind, lines))

        def close_line(line: SimLine, shipped: bool, lo_s: int, hi_s: int) -> None:
            if rng.random() < self.c.refund_requests:
                touch("refund_request", lo_s // 2 + 20, hi_s // 2 + 20, (line,))
            t = at(lo_s, hi_s)
            closed = replace(line, status=LineStatus.CLOSED, shipped=shipped)
            old = state["order"]
            new = replace(old, modified_ms=t, lines=tuple(closed if x.line_id == line.line_id else x for x in old.lines))
            state["order"] = new
            steps.append(_Step(t, new, "refund_line", (closed,)))

        unpaid_first = platform in UNPAID_PLATFORMS
        if unpaid_first:
            steps.append(_Step(order.modified_ms, order, "create", order.lines))
        else:
            steps.append(_Step(order.modified_ms, order, "pay", order.lines))
        if lifecycle == "unpaid":
            return steps
        if lifecycle == "cancel_unpaid":
            advance(LineStatus.CLOSED, "cancel", 60, 1800)
            return steps
        if unpaid_first:
            advance(LineStatus.PAID, "pay", 20, 600)
        if lifecycle == "paid":
            return steps
        if lifecycle == "close_paid":
            if platform == "jd" and rng.random() < 0.5:
                touch("lock", 60, 1200, ())
            if platform == "pdd":
                touch("refund_pending", 60, 1200, ())
            elif platform in LINE_STATE_PLATFORMS and rng.random() < self.c.refund_requests:
                touch("refund_request", 60, 1200, (state["order"].lines[0],))
            advance(LineStatus.CLOSED, "close", 60, 3600)
            return steps
        if lifecycle == "partial_refund":
            close_line(rng.choice(state["order"].lines), False, 60, 1800)
        if lifecycle == "partial_ship":
            ship_line(rng.choice(state["order"].lines), 600, 7200)
        advance(LineStatus.SHIPPED, "ship", 600, 7200)
        if lifecycle == "shipped":
            return steps
        if lifecycle in ("finished", "partial_refund", "partial_ship"):
            if lifecycle == "finished" or rng.random() < 0.6:
                advance(LineStatus.FINISHED, "finish", 3600, 3 * 3600)
            return steps
        # refund_after_ship
        if rng.random() < 0.5:
            advance(LineStatus.FINISHED, "finish", 3600, 3 * 3600)
        if platform in LINE_STATE_PLATFORMS:
            for line in state["order"].lines:
                close_line(line, True, 600, 3 * 3600)
        else:
            if platform == "pdd":
                touch("refund_pending", 600, 3600, ())
            advance(LineStatus.CLOSED, "close", 600, 3 * 3600)
        return steps

    # --- rendering per platform ----------------------------------------------------------------

    def _deliver(self, emit_ms: int, platform: str, record: RawRecord, stream: tuple) -> None:
        self._deliveries.append(_Delivery(emit_ms, next(self._seq), platform, record, stream))

    def _lag(self, lo_s: int = 0, hi_s: int = 5) -> int:
        return self.rng.randint(lo_s, hi_s) * S

    _TMC_TOPICS = {
        "create": "taobao_trade_TradeCreate",
        "pay": "taobao_trade_TradeBuyerPay",
        "ship": "taobao_trade_TradeSellerShip",
        "ship_line": "taobao_trade_TradeSellerShip",
        "finish": "taobao_trade_TradeSuccess",
        "cancel": "taobao_trade_TradeClose",
        "close": "taobao_trade_TradeClose",
        "refund_request": "taobao_refund_RefundCreated",
    }

    def _tmall(self, shop: ShopSpec, step: _Step, last: bool) -> None:
        order = step.order
        stream = ("o", "tmall", order.order_id)
        emit = step.at_ms + self._lag(0, 3)
        for line in step.lines:
            topic = self._TMC_TOPICS.get(step.kind)
            if step.kind == "refund_line":
                shipped_before = line.shipped
                topic = "taobao_trade_TradePartlyRefund" if not shipped_before and self.rng.random() < 0.5 else "taobao_refund_RefundSuccess"
            message_id = next(self._tmc_id)
            message = tmall.tmc_message(order, topic, message_id, line, with_line_fields=True)
            record = raw_record(
                platform="tmall", shop=shop.shop_id, kind=tmall.KIND_TMC, key=order.order_id,
                payload=dumps_bytes(message), received_at_ms=emit, message_id=str(message_id),
            )
            self._deliver(emit, "tmall", record, stream)
            emit += self._lag(0, 1)
        if step.kind != "refund_request" and self.rng.random() < self.c.tmall_fullinfo:
            emit += self._lag(1, 3)
            record = raw_record(
                platform="tmall", shop=shop.shop_id, kind=tmall.KIND_FULLINFO, key=order.order_id,
                payload=dumps_bytes(tmall.fullinfo_response(order)), received_at_ms=emit,
            )
            self._deliver(emit, "tmall", record, stream)

    def _jd(self, shop: ShopSpec, step: _Step, last: bool) -> None:
        if not last and step.kind != "pay" and self.rng.random() < self.c.jd_missed_polls:
            return  # the poller's window never saw this state
        order = step.order
        emit = step.at_ms + self._lag(1, 15)
        doc = jd.search_order(order, state="LOCKED" if step.kind == "lock" else None)
        record = raw_record(
            platform="jd", shop=shop.shop_id, kind=jd.KIND_ORDER, key=order.order_id,
            payload=dumps_bytes(doc), received_at_ms=emit,
        )
        self._deliver(emit, "jd", record, ("o", "jd", order.order_id))

    _DOUYIN_TAGS = {"create": "100", "pay": "101", "ship": "102", "ship_line": "108", "finish": "103", "cancel": "106", "close": "106",
                    "refund_request": "200", "refund_line": "206"}

    def _douyin(self, shop: ShopSpec, step: _Step, last: bool) -> None:
        order = step.order
        stream = ("o", "douyin", order.order_id)
        emit = step.at_ms + self._lag(0, 3)
        msg_id = str(next(self._douyin_msg_id))
        message = douyin.push_message(order, self._DOUYIN_TAGS[step.kind], msg_id, list(step.lines))
        record = raw_record(
            platform="douyin", shop=shop.shop_id, kind=douyin.KIND_PUSH, key=order.order_id,
            payload=dumps_bytes(message), received_at_ms=emit, message_id=msg_id,
        )
        self._deliver(emit, "douyin", record, stream)
        emit += self._lag(1, 3)  # the adapter fetches the detail on the push
        record = raw_record(
            platform="douyin", shop=shop.shop_id, kind=douyin.KIND_DETAIL, key=order.order_id,
            payload=dumps_bytes(douyin.order_detail_response(order)), received_at_ms=emit,
        )
        self._deliver(emit, "douyin", record, stream)

    _PDD_TYPES = {"pay": "pdd_trade_TradeConfirmed", "ship": "pdd_trade_TradeSellerShip", "finish": "pdd_trade_TradeSuccess",
                  "refund_pending": "pdd_refund_RefundCreated", "close": "pdd_refund_RefundAgreeAgreement"}

    def _pdd(self, shop: ShopSpec, step: _Step, last: bool) -> None:
        order = step.order
        stream = ("o", "pdd", order.order_id)
        emit = step.at_ms + self._lag(0, 3)
        frame_id = next(self._pdd_frame_id)
        frame = pdd.ws_frame(order, self._PDD_TYPES[step.kind], frame_id)
        record = raw_record(
            platform="pdd", shop=shop.shop_id, kind=pdd.KIND_FRAME, key=order.order_id,
            payload=dumps_bytes(frame), received_at_ms=emit, message_id=str(frame_id),
        )
        self._deliver(emit, "pdd", record, stream)
        emit += self._lag(1, 3)  # the adapter fetches the order on the frame
        info = pdd.order_information_response(order, refund_status=2 if step.kind == "refund_pending" else None)
        record = raw_record(
            platform="pdd", shop=shop.shop_id, kind=pdd.KIND_ORDER, key=order.order_id,
            payload=dumps_bytes(info), received_at_ms=emit,
        )
        self._deliver(emit, "pdd", record, stream)

    # --- warehouse -----------------------------------------------------------------------------

    def _document(self, events: list[WarehouseEvent], emit_ms: int, *, inspected: bool = False) -> None:
        """One document: recorded in the truth, rendered as JSON or CSV, delivered at `emit_ms`
        (or up to 2 h later when uploaded late)."""
        rng, c = self.rng, self.c
        first = events[0]
        self.truth.add_events(events)
        if rng.random() < c.late_documents:
            emit_ms += rng.randint(10, 120) * MINUTE
        if inspected:  # RETURN_INSPECTED with a result per line: JSON only
            payload = dumps_bytes(
                {
                    "document_id": first.document_id,
                    "type": warehouse.RETURN_INSPECTED,
                    "location": first.location,
                    "event_time": warehouse.iso_time(first.event_time_ms),
                    "counterpart_location": None,
                    "reason": "QC",
                    "lines": [
                        {"line_no": e.line_no, "sku": e.sku, "quantity": e.quantity,
                         "result": "restocked" if e.event_type == W.RETURN_RESTOCKED else "scrapped"}
                        for e in events
                    ],
                }
            )
            kind = warehouse.KIND_JSON
        elif rng.random() < c.csv_share:
            payload = warehouse.csv_payload(events, bom=rng.random() < 0.3)
            kind = warehouse.KIND_CSV
        else:
            payload = warehouse.json_document(events)
            kind = warehouse.KIND_JSON
        if kind == warehouse.KIND_CSV:
            # raw_record refuses non-JSON payloads (it cannot strip them). Warehouse CSV carries no
            # personal data; the headers are the ones raw_record would set.
            record = RawRecord(
                key=first.document_id,
                value=payload,
                headers={
                    RawHeader.PLATFORM: warehouse.PLATFORM,
                    RawHeader.SHOP: first.location,
                    RawHeader.KIND: kind,
                    RawHeader.RECEIVED_AT: str(emit_ms),
                },
            )
        else:
            record = raw_record(
                platform=warehouse.PLATFORM, shop=first.location, kind=kind, key=first.document_id,
                payload=payload, received_at_ms=emit_ms,
            )
        self._deliver(emit_ms, warehouse.PLATFORM, record, ("w", first.document_id))

    @staticmethod
    def _events(
        event_type: WarehouseEventType, document_id: str, location: str, at_ms: int, lines: list[tuple[str, int]],
        counterpart: Optional[str] = None, reason: Optional[str] = None,
    ) -> list[WarehouseEvent]:
        return [
            WarehouseEvent(event_type, document_id, i + 1, location, sku, qty, at_ms, counterpart, reason)
            for i, (sku, qty) in enumerate(lines)
        ]

    def _warehouse(self) -> None:
        rng, c = self.rng, self.c
        t0 = c.start_ms
        locations = list(c.locations)
        doc_no = itertools.count(1)

        def in_run() -> int:
            return t0 + rng.randrange(0, max(c.duration_ms // S, 1)) * S

        # Receipts sized from demand: most SKUs comfortably stocked, a share short.
        ordered = [sku for sku in self.skus if any(self._demand[(sku, loc)] for loc in locations)]
        tight = set(rng.sample(ordered, round(len(ordered) * c.tight_skus))) if ordered else set()
        received: dict[tuple[str, str], int] = {}
        for sku in self.skus:
            for loc in locations:
                demand = self._demand[(sku, loc)]
                if sku in tight:
                    qty = math.floor(demand * rng.uniform(0.5, 1.0))
                else:
                    qty = math.ceil(demand * rng.uniform(1.2, 2.0)) + rng.randint(2, 20)
                received[(sku, loc)] = qty
        receipt_ms = t0 - 2 * HOUR
        for loc in locations:
            lines = [(sku, received[(sku, loc)]) for sku in self.skus]
            for i in range(0, len(lines), c.receipt_lines_per_document):
                chunk = [(sku, q) for sku, q in lines[i : i + c.receipt_lines_per_document] if q > 0]
                doc_id = f"GRN-{loc}-{next(doc_no):06d}"
                if not chunk:  # keep the document count exact: a one-unit receipt
                    chunk = [(lines[i][0], 1)]
                    received[(lines[i][0], loc)] += 1
                self._document(self._events(W.RECEIPT, doc_id, loc, receipt_ms, chunk), receipt_ms + rng.randint(0, 300) * S)

        for _ in range(c.replenishments):
            loc = rng.choice(locations)
            at = in_run()
            lines = [(sku, rng.randint(5, 60)) for sku in self._pick_skus(rng.randint(10, 40))]
            for sku, q in lines:
                received[(sku, loc)] += q
            self._document(self._events(W.RECEIPT, f"GRN-{loc}-{next(doc_no):06d}", loc, at, lines), at + self._lag(30, 600))

        if c.bonded_location:
            bonded = c.bonded_location
            for _ in range(c.customs_batches):
                at = t0 - HOUR + rng.randrange(0, max(c.duration_ms // 2 // S, 1)) * S
                candidates = self._pick_skus(rng.randint(10, 40))
                held = [(sku, max(1, round(received[(sku, bonded)] * rng.uniform(0.2, 0.6)))) for sku in candidates]
                n = next(doc_no)
                self._document(
                    self._events(W.CUSTOMS_HOLD, f"CUS-HOLD-{n:06d}", bonded, at, held, reason="inspection sampling"),
                    at + self._lag(30, 600),
                )
                released_at = at + rng.randint(30, 240) * MINUTE
                released = []
                for sku, q in held:
                    r = rng.random()
                    if r < 0.6:
                        released.append((sku, q))
                    elif r < 0.8 and q > 1:
                        released.append((sku, rng.randint(1, q - 1)))
                if not released:
                    released = [held[0]]
                self._document(
                    self._events(W.CUSTOMS_RELEASE, f"CUS-REL-{n:06d}", bonded, released_at, released, reason="cleared"),
                    released_at + self._lag(30, 600),
                )

        if c.transfers and len(locations) > 1:
            for i in range(c.transfers):
                source, dest = rng.sample(locations, 2)
                out_at = t0 + rng.randrange(0, max((c.duration_ms - HOUR) // S, 1)) * S
                lines = [
                    (sku, max(1, round(received[(sku, source)] * rng.uniform(0.05, 0.25))))
                    for sku in self._pick_skus(rng.randint(5, 25))
                ]
                n = next(doc_no)
                self._document(
                    self._events(W.TRANSFER_OUT, f"TRO-{n:06d}-OUT", source, out_at, lines, counterpart=dest),
                    out_at + self._lag(30, 600),
                )
                if i < c.transfers - 1:  # the last transfer is still on its way
                    in_at = out_at + rng.randint(60, 300) * MINUTE
                    self._document(
                        self._events(W.TRANSFER_IN, f"TRO-{n:06d}-IN", dest, in_at, lines, counterpart=source),
                        in_at + self._lag(30, 600),
                    )

        for ret in self._returns:
            n = next(doc_no)
            self._document(
                self._events(W.RETURN_RECEIVED, f"RMA-{n:06d}", ret.location, ret.received_ms, ret.lines, reason="buyer return"),
                ret.received_ms + self._lag(30, 600),
            )
            if ret.inspected_ms is not None:
                events = []
                for sku, q in ret.lines:
                    r = rng.random()
                    if r < 0.7:
                        parts = [(W.RETURN_RESTOCKED, q)]
                    elif r < 0.85 or q == 1:
                        parts = [(W.RETURN_SCRAPPED, q)]
                    else:
                        k = rng.randint(1, q - 1)
                        parts = [(W.RETURN_RESTOCKED, k), (W.RETURN_SCRAPPED, q - k)]
                    for event_type, units in parts:
                        events.append(
                            WarehouseEvent(event_type, f"INS-{n:06d}", len(events) + 1, ret.location, sku, units, ret.inspected_ms)
                        )
                self._document(events, ret.inspected_ms + self._lag(30, 600), inspected=True)

        for _ in range(c.adjustments):
            loc = rng.choice(locations)
            at = in_run()
            lines = [(sku, rng.choice((-1, 1)) * rng.randint(1, 5)) for sku in self._pick_skus(rng.randint(1, 3))]
            reason = rng.choice(("damaged in storage", "found in cycle check", "relabelled"))
            self._document(self._events(W.ADJUSTMENT, f"ADJ-{next(doc_no):06d}", loc, at, lines, reason=reason), at + self._lag(30, 600))

        # Counts last: they are read off the ledger, in time order (a count sees earlier counts).
        # Two counts of one location at the same time would leave the winner to delivery order
        # (the core takes the one applied last): times are unique per location.
        taken: set[tuple[str, int]] = set()
        plans = []
        for _ in range(c.counts):
            loc, at = rng.choice(locations), in_run()
            while (loc, at) in taken:
                at += S
            taken.add((loc, at))
            plans.append((at, loc, next(doc_no)))
        plans.sort()
        for at, loc, n in plans:
            lines = []
            for sku in self._pick_skus(c.count_skus):
                book = self.truth.on_hand(sku, loc, as_of_ms=at)
                counted = book
                if rng.random() < c.count_mismatch:
                    counted = book + rng.choice((-1, 1)) * rng.randint(1, 5)
                lines.append((sku, max(counted, 0)))
            self._document(self._events(W.STOCK_COUNT, f"CNT-{loc}-{n:06d}", loc, at, lines), at + rng.randint(1, 30) * MINUTE)

    # --- delivery order ------------------------------------------------------------------------

    def _delivery_order(self) -> tuple[list[tuple[str, RawRecord]], int, int]:
        rng, c = self.rng, self.c
        deliveries = sorted(self._deliveries, key=lambda d: (d.emit_ms, d.seq))

        # Bounded reordering within an order's own stream: the order's records keep their slots
        # in the interleaving, but who fills which slot is shuffled by at most reorder_window.
        slots: dict[tuple, list[int]] = defaultdict(list)
        for i, d in enumerate(deliveries):
            if d.stream[0] == "o":
                slots[d.stream].append(i)
        if c.reorder > 0 and c.reorder_window > 0:
            for stream, positions in slots.items():
                if len(positions) < 2 or rng.random() >= c.reorder:
                    continue
                records = [deliveries[p] for p in positions]
                keys = [j + rng.uniform(0, c.reorder_window) for j in range(len(records))]
                shuffled = [r for _, r in sorted(zip(keys, records), key=lambda kr: kr[0])]
                for p, r in zip(positions, shuffled):
                    deliveries[p] = r

        originals = len(deliveries)
        duplicates = max(c.events - originals, 0) if c.duplicate_rate > 0 else 0
        keyed: list[tuple[float, int, _Delivery]] = [(float(i), 0, d) for i, d in enumerate(deliveries)]
        for n in range(duplicates):
            source = rng.randrange(originals)
            lag = 1 + int(rng.expovariate(1 / max(c.duplicate_lag, 1)))
            keyed.append((source + lag + 0.5, n + 1, deliveries[source]))
        keyed.sort(key=lambda k: (k[0], k[1]))
        return [(d.platform, d.record) for _, _, d in keyed], originals, duplicates
