"""Prometheus metrics of the channel sink process (served on its own /metrics port).

Registered in the same registry as the worker's (streams/metrics.py) so one exposition function
serves both; label values are platforms and outcomes only (no SKU, shop or listing labels).
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

from streams.metrics import REGISTRY

PUSH_LATENCY = Histogram(
    "stockstream_channel_push_latency_seconds",
    "Allocation computed (AllocationChange.computed_at_ms) to the platform's acknowledgment of the stock write",
    ["platform"], registry=REGISTRY,
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 900),
)
# The SLO (deploy/prometheus/alerts.yml) counts events within 5 s: its burn-rate rules read the
# le="5.0" bucket, so 5 must stay a bucket boundary.
END_TO_END_LATENCY = Histogram(
    "stockstream_end_to_end_latency_seconds",
    "Platform event time (AllocationChange.event_time_ms) to the platform's acknowledgment of the stock write,"
    " once per event and listing",
    ["platform"], registry=REGISTRY,
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5, 7.5, 10, 15, 30, 60),
)
PUSHES = Counter(
    "stockstream_channel_pushes_total",
    "Listing stock writes by outcome: written, throttled (retried after the pause), retried (transient), parked (dead letter)",
    ["platform", "outcome"], registry=REGISTRY,
)
ALLOCATIONS_SEEN = Counter(
    "stockstream_channel_allocations_total",
    "Allocation changes the sink consumed, by verdict: applied, retry, stale (duplicate or older version), unlisted, elsewhere",
    ["verdict"], registry=REGISTRY,
)
DRIFT = Counter(
    "stockstream_reconciliation_drift_total",
    "Listings whose channel stock differed from what was last pushed (confirmed by a second read); each is re-pushed",
    ["platform"], registry=REGISTRY,
)
RECONCILIATION_READS = Counter(
    "stockstream_reconciliation_reads_total", "Listings read back from the platforms by reconciliation, by outcome",
    ["platform", "outcome"], registry=REGISTRY,
)


def serve(port: int, host: str = "0.0.0.0") -> int:
    """Serve /metrics on `port` (0: any free port); returns the port."""
    from prometheus_client import start_http_server

    server, _thread = start_http_server(port, addr=host, registry=REGISTRY)
    return server.server_address[1]
