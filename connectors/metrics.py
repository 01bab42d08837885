"""Prometheus metrics of the marketplace and warehouse adapters, declared once.

An adapter process serves them on `/metrics` (`serve_metrics`, port
`Settings.adapter_metrics_port`); the push receivers (Douyin, warehouse) serve them on their own
aiohttp app as well. Label values are platforms, outcomes and a small closed set of reasons:
never a shop, order or SKU.

  stockstream_adapter_events_total{platform,outcome}     deliveries (TMC message, Douyin push,
      PDD frame, JD order version) by outcome: `written` to raw.<platform>, or `duplicate`
      (already written: acknowledged to the platform without writing it again)
  stockstream_adapter_duplicates_total{platform}          the `duplicate` outcome alone, for alerts
  stockstream_adapter_rejected_total{platform,reason}     input refused on an inbound channel,
      whichever side noticed: REASONS below
  stockstream_adapter_stock_writes_total{platform,outcome} stock writes: written | throttled |
      failed (permanent) | failed_transient (retries ran out)
"""

from __future__ import annotations

from typing import Optional

from prometheus_client import CollectorRegistry, Counter, generate_latest, start_http_server

REGISTRY = CollectorRegistry(auto_describe=True)

# Rejection reasons (a closed set; anything else is a bug in the caller).
BAD_SIGNATURE = "bad_signature"  # a push's signature did not verify, or the platform refused ours
STALE_TIMESTAMP = "stale_timestamp"  # the platform refused our request's timestamp (clock skew)
BAD_TOKEN = "bad_token"  # warehouse: missing or unknown shared token
MALFORMED = "malformed"  # unreadable or nonsensical delivery (no id, not JSON, does not parse)
TOO_LARGE = "too_large"
REASONS = (BAD_SIGNATURE, STALE_TIMESTAMP, BAD_TOKEN, MALFORMED, TOO_LARGE)

EVENTS = Counter(
    "stockstream_adapter_events_total", "Platform deliveries handled by an adapter, by outcome (written | duplicate)",
    ["platform", "outcome"], registry=REGISTRY,
)
DUPLICATES = Counter(
    "stockstream_adapter_duplicates_total",
    "Redelivered platform messages already in raw.<platform>: acknowledged, not written again",
    ["platform"], registry=REGISTRY,
)
REJECTED = Counter(
    "stockstream_adapter_rejected_total",
    "Inbound input refused: bad signature / token, stale timestamp (refused by the platform), malformed",
    ["platform", "reason"], registry=REGISTRY,
)
STOCK_WRITES = Counter(
    "stockstream_adapter_stock_writes_total", "Stock writes to a marketplace, by outcome",
    ["platform", "outcome"], registry=REGISTRY,
)


def written(platform: str, n: int = 1) -> None:
    if n:
        EVENTS.labels(platform, "written").inc(n)


def duplicate(platform: str, n: int = 1) -> None:
    if n:
        EVENTS.labels(platform, "duplicate").inc(n)
        DUPLICATES.labels(platform).inc(n)


def rejected(platform: str, reason: str) -> None:
    if reason not in REASONS:
        raise ValueError(f"unknown rejection reason {reason!r}; one of {REASONS}")
    REJECTED.labels(platform, reason).inc()


def stock_write(platform: str, outcome: str, n: int = 1) -> None:
    if n:
        STOCK_WRITES.labels(platform, outcome).inc(n)


def value(metric: Counter, **labels: str) -> float:
    """A counter's current value for one label set (0 if never incremented); for tests and logs."""
    sample = REGISTRY.get_sample_value(f"{metric._name}_total", labels)
    return sample or 0.0


def exposition() -> bytes:
    return generate_latest(REGISTRY)


def serve_metrics(port: int, host: str = "0.0.0.0") -> Optional[object]:
    """Serve /metrics on host:port in a background thread; port 0 serves nothing."""
    if not port:
        return None
    return start_http_server(port, addr=host, registry=REGISTRY)
