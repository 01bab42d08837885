"""Shoppers on a simulated Tmall shop, delivered as TMC messages the way the TMC adapter publishes
them to `raw.tmall`, with marketplace-style duplicates; plus the warehouse receipts that stock
the shelves. Records its own ground truth, so a test can compare every SKU's ATS with it.
"""

from __future__ import annotations

import itertools
import random
from collections import deque
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Iterator

from connectors import tmall
from connectors.base import RawRecord, dumps_bytes, raw_record
from connectors.simulated import SimLine, SimOrder
from stockstream.core.model import LineStatus

TOPIC_OF_STATUS = {
    LineStatus.CREATED: "taobao_trade_TradeCreate",
    LineStatus.PAID: "taobao_trade_TradeBuyerPay",
    LineStatus.SHIPPED: "taobao_trade_TradeSellerShip",
    LineStatus.FINISHED: "taobao_trade_TradeSuccess",
    LineStatus.CLOSED: "taobao_trade_TradeClose",
}
# Lifecycles a shopper's order takes, with their weights.
LIFECYCLES = (
    ((LineStatus.CREATED, LineStatus.PAID, LineStatus.SHIPPED, LineStatus.FINISHED), 5),
    ((LineStatus.CREATED, LineStatus.PAID, LineStatus.SHIPPED), 3),
    ((LineStatus.CREATED, LineStatus.PAID), 3),
    ((LineStatus.CREATED,), 1),
    ((LineStatus.CREATED, LineStatus.CLOSED), 1),
    ((LineStatus.CREATED, LineStatus.PAID, LineStatus.CLOSED), 1),
)


@dataclass
class GroundTruth:
    """What the generated traffic means for stock, computed independently of stockstream."""

    received: Counter = field(default_factory=Counter)  # sku -> units received
    final_status: dict[tuple[str, str], tuple[str, int, LineStatus]] = field(default_factory=dict)

    def ats(self, sku: str) -> int:
        on_hand = self.received[sku]
        reserved = 0
        for line_sku, quantity, status in self.final_status.values():
            if line_sku != sku:
                continue
            if status in (LineStatus.SHIPPED, LineStatus.FINISHED):
                on_hand -= quantity
            elif status == LineStatus.PAID:
                reserved += quantity
        return max(on_hand - reserved, 0)

    def skus(self) -> list[str]:
        return sorted(self.received)


@dataclass
class TmallTraffic:
    skus: list[str]
    shop_id: str = "tmall-flagship"
    location: str = "main"
    duplicate_rate: float = 0.2
    seed: int = 7
    receipt_units: int = 10_000
    truth: GroundTruth = field(default_factory=GroundTruth)

    def __post_init__(self) -> None:
        self._random = random.Random(self.seed)
        self._message_id = 10_000_000
        self._order_seq = 0
        self.first_order_ms: int | None = None

    def receipts(self) -> list[RawRecord]:
        """One receipt document stocking every SKU at the location."""
        now = int(time.time() * 1000)
        document = {
            "document_id": f"GRN-{self.seed}",
            "type": "RECEIPT",
            "location": self.location,
            "event_time": now - 3_600_000,
            "lines": [{"line_no": i + 1, "sku": sku, "quantity": self.receipt_units} for i, sku in enumerate(self.skus)],
        }
        for sku in self.skus:
            self.truth.received[sku] += self.receipt_units
        return [
            raw_record(
                platform="warehouse", shop=self.location, kind="json", key=document["document_id"],
                payload=dumps_bytes(document), received_at_ms=now,
            )
        ]

    def messages(self, count: int) -> Iterator[RawRecord]:
        """`count` raw records: new messages and, at `duplicate_rate`, redeliveries of recent ones."""
        return itertools.islice(self.stream(), count)

    def stream(self) -> Iterator[RawRecord]:
        """Endless traffic: several orders in flight at once, each order's messages in order, and
        redeliveries of recently delivered messages arriving a little later."""
        recent: deque[RawRecord] = deque(maxlen=200)
        in_flight: list[Iterator[RawRecord]] = []
        while True:
            if recent and self._random.random() < self.duplicate_rate:
                yield self._random.choice(recent)
                continue
            if len(in_flight) < 20 or self._random.random() < 0.05:
                in_flight.append(self._order_messages())
            order = self._random.choice(in_flight)
            record = next(order, None)
            if record is None:
                in_flight.remove(order)
                continue
            recent.append(record)
            yield record

    def _order_messages(self) -> Iterator[RawRecord]:
        self._order_seq += 1
        order_id = str(3725362658812595205 + self._order_seq * 1000)  # tids exceed 2**53
        n_lines = self._random.choice((1, 1, 2))
        lines = tuple(
            SimLine(
                line_id=str(int(order_id) + 1 + i),
                listing_id=str(681234567890 + i),
                sku_id=str(5012345678901 + i),
                merchant_code=self._random.choice(self.skus),
                quantity=self._random.randint(1, 3),
            )
            for i in range(n_lines)
        )
        lifecycle = self._random.choices([c for c, _ in LIFECYCLES], weights=[w for _, w in LIFECYCLES])[0]
        start = int(time.time() * 1000) // 1000 * 1000
        if self.first_order_ms is None:
            self.first_order_ms = start
        order = SimOrder(order_id, self.shop_id, LineStatus.CREATED, lines, start, start)
        for step, status in enumerate(lifecycle):
            order = order.advanced(status, start + step * 1000) if step else order
            for line in order.lines:
                self.truth.final_status[(order_id, line.line_id)] = (line.merchant_code, line.quantity, status)
                self._message_id += 1
                message = tmall.tmc_message(order, TOPIC_OF_STATUS[status], self._message_id, line)
                yield raw_record(
                    platform="tmall", shop=self.shop_id, kind=tmall.KIND_TMC, key=order_id,
                    payload=dumps_bytes(message), received_at_ms=int(time.time() * 1000),
                    message_id=str(self._message_id),
                )
