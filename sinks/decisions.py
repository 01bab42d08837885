"""What one stock-write result means for the sink. Pure.

* `Written`: done; record the latency.
* `Throttled`: the platform's throttle code (TOP 7, JD 67, Douyin 50002, PDD 52101 / 70031). Not
  a failure of the write: the shop's calls pause for `retry_after_s` and the listing stays due.
* `Failed(permanent=True)`: bad SKU, listing, token or arguments; retrying cannot help: park it in
  the dead-letter topic with the reason.
* `Failed(permanent=False)`: transient errors that outlived the adapter's own tenacity retries
  (HTTP 5xx, timeouts, "temporarily unavailable"): push again after an exponential backoff;
  after `max_attempts` such rounds the write is parked too (reason `transient_exhausted`), so one
  listing that keeps failing cannot hold the consumer's commits back forever.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Optional

from connectors.adapters.common import Failed, Throttled
from connectors.base import StockWriteResult


class Action(str, Enum):
    DONE = "written"
    WAIT = "throttled"
    RETRY = "retried"
    PARK = "parked"


@dataclass(frozen=True)
class Decision:
    action: Action
    delay_s: float = 0.0
    reason: str = ""  # dead-letter reason code
    detail: str = ""  # readable reason


def backoff_s(attempt: int, base_s: float = 0.2, cap_s: float = 30.0) -> float:
    """Delay before transient retry round `attempt` (1, 2, ...): doubling from `base_s`, capped."""
    return min(cap_s, base_s * 2 ** max(attempt - 1, 0))


def decide(result: StockWriteResult, attempts_before: int, max_attempts: int = 8, throttle_floor_s: float = 0.2) -> Decision:
    """`attempts_before`: transient failures this listing already had in a row."""
    if result.ok:
        return Decision(Action.DONE)
    detail = (result.error or result.error_code or "").strip()
    if isinstance(result, Throttled):
        return Decision(Action.WAIT, max(result.retry_after_s or 0.0, throttle_floor_s), "throttled", detail)
    permanent = not isinstance(result, Failed) or result.permanent
    if permanent:
        return Decision(Action.PARK, reason=_reason_code(result.error_code), detail=detail or "refused by the platform")
    attempt = attempts_before + 1
    if attempt >= max_attempts:
        return Decision(Action.PARK, reason="transient_exhausted", detail=f"{attempt} rounds of transient errors, last: {detail}")
    return Decision(Action.RETRY, backoff_s(attempt), "transient", detail)


def _reason_code(error_code: Optional[str]) -> str:
    return f"platform_error:{error_code}" if error_code else "platform_error"
