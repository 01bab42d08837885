"""A platform-neutral simulated order, rendered into each platform's real payload shapes by the
builders in the platform modules (`tmall.tmc_message`, `jd.search_order`, ...).

Simulators and the traffic generator drive orders through their lifecycle here and ask each
platform module how that order looks on the wire; round-trip tests check that parsing the
rendering gives back the canonical `OrderUpdate`. Buyer personal data is filled in with realistic
values so that PII stripping is exercised on every payload.

Times are epoch ms; platforms with second-resolution times truncate, so simulate whole seconds.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Optional

from stockstream.core.model import LineStatus


@dataclass(frozen=True)
class SimBuyer:
    """Buyer personal data as platforms deliver it. None of it may reach Kafka."""

    name: str = "张伟"
    nick: str = "tb_zhangwei88"
    phone: str = "13812345678"
    email: str = "zhangwei88@example.com"
    province: str = "浙江省"
    city: str = "杭州市"
    district: str = "西湖区"
    town: str = "文新街道"
    address: str = "文三路477号华星科技大厦6楼"
    zip: str = "310012"
    id_card: str = "330106199001011234"  # cross-border orders carry it for customs
    open_uid: str = "AAHt2z9aAJq7Nf5sPPVOPcXk"

    def personal_strings(self) -> tuple[str, ...]:
        """Every value above, for tests asserting none survives in a stripped payload."""
        return (
            self.name, self.nick, self.phone, self.email, self.province, self.city, self.district,
            self.town, self.address, self.zip, self.id_card, self.open_uid,
        )


@dataclass(frozen=True)
class SimLine:
    line_id: str  # Taobao oid / Douyin child order id; JD and PDD key lines by sku_id
    listing_id: str  # num_iid / wareId / product_id / goods_id
    sku_id: str
    merchant_code: str
    quantity: int
    status: Optional[LineStatus] = None  # None: the order's status
    shipped: Optional[bool] = None  # None: derived from the status (see SimOrder.line_shipped)
    # When this line left the warehouse; None: the order's shipped_ms (its first shipment).
    shipped_ms: Optional[int] = None
    title: str = "保湿精华液 30ml"


@dataclass(frozen=True)
class SimOrder:
    order_id: str
    shop_id: str
    status: LineStatus
    lines: tuple[SimLine, ...]
    created_ms: int
    modified_ms: int
    paid_ms: Optional[int] = None  # None: never paid (CLOSED without it = closed before payment)
    shipped_ms: Optional[int] = None
    buyer: SimBuyer = field(default_factory=SimBuyer)

    def __post_init__(self) -> None:
        if not self.lines:
            raise ValueError("an order has at least one line")
        if self.status >= LineStatus.PAID and self.status != LineStatus.CLOSED and self.paid_ms is None:
            raise ValueError(f"{self.status.name} order needs paid_ms")

    def line_status(self, line: SimLine) -> LineStatus:
        return line.status if line.status is not None else self.status

    def line_shipped(self, line: SimLine) -> bool:
        if line.shipped is not None:
            return line.shipped
        status = self.line_status(line)
        if status in (LineStatus.SHIPPED, LineStatus.FINISHED):
            return True
        return status == LineStatus.CLOSED and self.shipped_ms is not None

    def line_shipped_ms(self, line: SimLine) -> Optional[int]:
        """The line's own consign time (what Tmall's orders[].consign_time and Douyin's sku order
        ship_time carry); None if it has not shipped."""
        if not self.line_shipped(line):
            return None
        return line.shipped_ms if line.shipped_ms is not None else self.shipped_ms

    @property
    def paid(self) -> bool:
        return self.paid_ms is not None

    @property
    def any_shipped(self) -> bool:
        return any(self.line_shipped(line) for line in self.lines)

    def advanced(self, status: LineStatus, at_ms: int) -> "SimOrder":
        """The order moved to `status` at `at_ms`. Lines closed on their own (partial refunds)
        stay closed; other per-line overrides are cleared."""
        paid_ms = self.paid_ms
        if paid_ms is None and status in (LineStatus.PAID, LineStatus.SHIPPED, LineStatus.FINISHED):
            paid_ms = at_ms
        shipped_ms = self.shipped_ms
        if shipped_ms is None and status in (LineStatus.SHIPPED, LineStatus.FINISHED):
            shipped_ms = at_ms
        ships_now = status in (LineStatus.SHIPPED, LineStatus.FINISHED)
        lines = tuple(
            line if line.status == LineStatus.CLOSED
            else replace(line, status=None, shipped=None, shipped_ms=self.line_shipped_ms(line) or (at_ms if ships_now else None))
            for line in self.lines
        )
        return replace(self, status=status, modified_ms=at_ms, paid_ms=paid_ms, shipped_ms=shipped_ms, lines=lines)


# --------------------------------------------------------------------------------------------
# Example orders with each platform's id style (tests, traffic generator seeds)

DOUBLE_11_MS = 1_731_254_400_000  # 2024-11-11 00:00:00 Beijing time

SHOP_IDS = {"tmall": "2200754211234", "jd": "10086001", "douyin": "4463798", "pdd": "987654321"}


def _ids(platform: str, seq: int, n: int) -> tuple[str, list[tuple[str, str, str]]]:
    """(order id, [(line id, listing id, sku id)]) in the platform's real id formats."""
    if platform == "tmall":  # tids and oids exceed 2**53
        tid = 3725362658812595205 + seq * 1000
        return str(tid), [(str(tid + 1 + i), str(681234567890 + i), str(5012345678901 + i)) for i in range(n)]
    if platform == "jd":
        return str(301234567890 + seq), [(str(100012345678 + i), str(10001234567 + i), str(100012345678 + i)) for i in range(n)]
    if platform == "douyin":  # child order ids are the line ids
        pid = 6920000000000000000 + seq * 100
        return str(pid), [(str(pid + 1 + i), str(3539925204033339668 + i), str(1750000000000000001 + i)) for i in range(n)]
    if platform == "pdd":
        return f"241111-{339507978993455 + seq}", [(str(1234567890 + i), str(123456789 + i), str(1234567890 + i)) for i in range(n)]
    raise ValueError(f"unknown platform {platform!r}")


def example_order(
    platform: str,
    status: LineStatus = LineStatus.PAID,
    *,
    seq: int = 0,
    n_lines: int = 2,
    paid: bool = True,
    shipped: bool = False,
) -> SimOrder:
    """An order in `status`, created at Double 11 midnight, paid a minute later, shipped an hour
    later when it got that far. For CLOSED, `paid` / `shipped` say how far it had come."""
    order_id, ids = _ids(platform, seq, n_lines)
    created = DOUBLE_11_MS + seq * 1000
    is_paid = status in (LineStatus.PAID, LineStatus.SHIPPED, LineStatus.FINISHED) or (status == LineStatus.CLOSED and paid)
    is_shipped = status in (LineStatus.SHIPPED, LineStatus.FINISHED) or (status == LineStatus.CLOSED and shipped)
    paid_ms = created + 60_000 if is_paid else None
    shipped_ms = created + 3_600_000 if is_shipped else None
    modified = max(t for t in (created, paid_ms, shipped_ms) if t is not None)
    if status in (LineStatus.FINISHED, LineStatus.CLOSED):
        modified += 86_400_000
    lines = tuple(
        SimLine(line_id=lid, listing_id=listing, sku_id=sku, merchant_code=f"MC-{i + 1:03d}", quantity=i + 1)
        for i, (lid, listing, sku) in enumerate(ids)
    )
    return SimOrder(
        order_id=order_id,
        shop_id=SHOP_IDS[platform],
        status=status,
        lines=lines,
        created_ms=created,
        modified_ms=modified,
        paid_ms=paid_ms,
        shipped_ms=shipped_ms,
    )
