"""Reconciliation: read each shop's stock back, compare it with what the sink last pushed,
publish each confirmed difference to the `reconciliation` topic and push again (drift
correction).

Platforms take stock off a listing when a buyer orders (拍下减库存), so a channel showing less
than was pushed is normal for as long as the sale has not come back as a lower allocation. A
difference therefore counts as drift only when `confirmations` consecutive reads saw the same
(expected, actual) pair while nothing was due or in flight for the listing; a sale that flows
through the pipeline is pushed (and the suspicion dropped) in between. Listings with a push due
or in flight are not read at all.

Record in `reconciliation` (UTF-8 JSON, key = master SKU or, for a bundle listing, its merchant
code): {"sku", "channel", "expected", "actual", "detected_at" (ISO 8601 UTC), "detected_at_ms",
"platform_sku_id", "listing_id", "components": [[sku, units], ...]}.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Iterable, Optional, Sequence

from connectors.adapters.common import ApiError, now_ms
from sinks import metrics
from sinks.coalesce import Key, SinkState
from sinks.kafka_io import Record
from sinks.targets import Target
from stockstream.settings import ShopCredentials

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Drift:
    target: Target
    expected: int
    actual: int
    detected_at_ms: int

    def record(self) -> Record:
        listing = self.target.listing
        sku = self.target.components[0][0] if not self.target.is_bundle else (listing.merchant_code or listing.platform_sku_id)
        value = {
            "sku": sku,
            "channel": listing.channel,
            "expected": self.expected,
            "actual": self.actual,
            "detected_at": datetime.fromtimestamp(self.detected_at_ms / 1000, timezone.utc).isoformat(timespec="milliseconds"),
            "detected_at_ms": self.detected_at_ms,
            "platform_sku_id": listing.platform_sku_id,
            "listing_id": listing.listing_id,
            "components": [list(c) for c in self.target.components],
        }
        return sku.encode(), json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode(), None


class DriftWatch:
    """Pure: a difference is confirmed when seen `confirmations` reads in a row, unchanged."""

    def __init__(self, confirmations: int = 2) -> None:
        if confirmations < 1:
            raise ValueError("confirmations must be at least 1")
        self.confirmations = confirmations
        self._seen: dict[Key, tuple[int, int, int]] = {}  # key -> (expected, actual, times)

    def observe(self, key: Key, expected: int, actual: int) -> bool:
        if expected == actual:
            self._seen.pop(key, None)
            return False
        before = self._seen.get(key)
        times = before[2] + 1 if before is not None and before[:2] == (expected, actual) else 1
        if times >= self.confirmations:
            self._seen.pop(key, None)
            return True
        self._seen[key] = (expected, actual, times)
        return False

    def forget(self, key: Key) -> None:
        self._seen.pop(key, None)


async def read_back(adapter: Any, shop: ShopCredentials, targets: Sequence[Target]) -> dict[str, int]:
    """platform SKU id -> quantity the channel shows, for the targets' listings. The adapters'
    stock queries differ: Tmall and PDD read a whole item (num_iid / goods_id), JD and Douyin
    read SKU ids. A read refused for one SKU does not stop the others (they are read one by one)."""
    out: dict[str, int] = {}
    if shop.platform in ("tmall", "pdd"):
        for listing_id in sorted({t.listing.listing_id for t in targets}):
            try:
                out.update(await adapter.read_stock(shop, listing_id))
            except ApiError as exc:
                log.info("%s:%s item %s unreadable: %s", shop.platform, shop.shop_id, listing_id, exc)
        return out
    skus = [t.listing.platform_sku_id for t in targets]
    try:
        return dict(await adapter.read_stock(shop, skus))
    except ApiError:
        pass
    for sku in skus:
        try:
            out.update(await adapter.read_stock(shop, [sku]))
        except ApiError as exc:
            log.info("%s:%s sku %s unreadable: %s", shop.platform, shop.shop_id, sku, exc)
    return out


class Reconciler:
    def __init__(self, state: SinkState, shops: Iterable[ShopCredentials], adapters: dict[str, Any], confirmations: int = 2) -> None:
        self.state = state
        self.shops = list(shops)
        self.adapters = adapters
        self.watch = DriftWatch(confirmations)
        self.rounds = 0

    async def run_once(self) -> list[Drift]:
        """One read of every shop's pushed listings; returns the confirmed drifts (the caller
        publishes them and wakes the pushers; the listings are due again already)."""
        self.rounds += 1
        drifts: list[Drift] = []
        for shop in self.shops:
            channel = f"{shop.platform}:{shop.shop_id}"
            targets = [
                t for key, t in self.state.index.by_key.items()
                if key[0] == channel and key in self.state.pushed and not self.state.is_busy(key)
            ]
            if not targets:
                continue
            shown = await read_back(self.adapters[shop.platform], shop, targets)
            for target in targets:
                key = target.key
                actual = shown.get(target.listing.platform_sku_id)
                if actual is None:
                    metrics.RECONCILIATION_READS.labels(shop.platform, "unreadable").inc()
                    continue
                metrics.RECONCILIATION_READS.labels(shop.platform, "read").inc()
                expected: Optional[int] = self.state.pushed.get(key)
                if expected is None or self.state.is_busy(key):  # a push started while reading
                    self.watch.forget(key)
                    continue
                if self.watch.observe(key, expected, actual):
                    drifts.append(Drift(target, expected, actual, now_ms()))
                    metrics.DRIFT.labels(shop.platform).inc()
                    self.state.mark_drift(key)
        return drifts
