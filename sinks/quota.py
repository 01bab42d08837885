"""Per-shop stock-write quota: a token bucket counted in platform API calls (aiolimiter), and a
pause after the platform's throttle code (its quota is per app and per shop; when it says "wait
N seconds", every write of that shop waits).

Default quotas are the low end of what the platforms publish for stock writes (tens to
thousands of calls per minute per shop, marketplaces.md); set real ones per platform with
``STOCKSTREAM_SINK_CALLS_PER_S`` (JSON, e.g. {"tmall": 10, "jd": 80}).
"""

from __future__ import annotations

import asyncio
import math
import time
from typing import Mapping, Sequence

from aiolimiter import AsyncLimiter

from connectors.base import StockWrite

DEFAULT_CALLS_PER_S = {"tmall": 10.0, "jd": 50.0, "douyin": 10.0, "pdd": 10.0}
TMALL_SKUS_PER_CALL = 20  # taobao.skus.quantity.update
# Most SKUs one push round hands the adapter (one batch per round and shop).
MAX_WRITES_PER_ROUND = {"tmall": 100, "jd": 50, "douyin": 50, "pdd": 50}


def api_calls(platform: str, writes: Sequence[StockWrite]) -> int:
    """How many API calls `write_stock` makes for these writes when nothing fails: Tmall batches
    the SKUs of one item (num_iid) 20 per call, the others write one SKU per call."""
    if platform != "tmall":
        return len(writes)
    per_listing: dict[str, int] = {}
    for w in writes:
        per_listing[w.listing_id or ""] = per_listing.get(w.listing_id or "", 0) + 1
    return sum(math.ceil(n / TMALL_SKUS_PER_CALL) for n in per_listing.values())


class ShopQuota:
    def __init__(self, calls_per_s: float) -> None:
        if calls_per_s <= 0:
            raise ValueError("a shop's quota must be positive")
        # Bucket of one second's calls (at least one): bursts up to the per-second rate.
        self.capacity = max(1.0, calls_per_s)
        self.limiter = AsyncLimiter(self.capacity, self.capacity / calls_per_s)
        self.paused_until = 0.0  # monotonic
        self.throttles = 0

    async def acquire(self, calls: int) -> None:
        """Wait for the pause to end and for `calls` tokens."""
        await self.wait_pause()
        remaining = float(calls)
        while remaining > 0:
            step = min(remaining, self.capacity)
            await self.limiter.acquire(step)
            remaining -= step

    async def wait_pause(self) -> None:
        while True:
            left = self.paused_until - time.monotonic()
            if left <= 0:
                return
            await asyncio.sleep(left)

    def pause(self, seconds: float) -> None:
        """The platform throttled this shop: no calls for `seconds`."""
        self.throttles += 1
        self.paused_until = max(self.paused_until, time.monotonic() + seconds)


def quotas_for(platform: str, configured: Mapping[str, float]) -> float:
    return float(configured.get(platform, DEFAULT_CALLS_PER_S.get(platform, 10.0)))
