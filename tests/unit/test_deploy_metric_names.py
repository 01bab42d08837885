"""The PromQL metric-name reader the deploy tests rely on, and the list of metrics the alerts and
dashboard name before any process exports them."""

from __future__ import annotations

import pytest

from tests.support.metric_names import AWAITING_INSTRUMENTATION, declared_in_code, metric_names


def test_reads_metric_names_not_functions_labels_or_ranges() -> None:
    expr = (
        'sum by (platform, outcome) (rate(stockstream_channel_pushes_total{outcome=~"retried|parked"}[10m]))'
        ' / ignoring(outcome) group_left sum by (platform) (rate(other_metric[$__rate_interval])) > bool 0.25'
    )
    assert metric_names(expr) == {"stockstream_channel_pushes_total", "other_metric"}


def test_reads_recording_rules_and_bare_metrics() -> None:
    expr = "stockstream:x:ratio_rate1h > (14.4 * 0.01) and up == 0 unless absent(stockstream_y offset 5m)"
    assert metric_names(expr) == {"stockstream:x:ratio_rate1h", "up", "stockstream_y"}


def test_histogram_series_and_counters_count_as_declared() -> None:
    assert declared_in_code("stockstream_batch_processing_seconds_bucket")
    assert declared_in_code("stockstream_quarantined_total")
    assert not declared_in_code("stockstream_quarantine_total")


@pytest.mark.xfail(strict=True, reason="named by alerts/dashboard, not exported by any process yet")
@pytest.mark.parametrize("name", sorted(AWAITING_INSTRUMENTATION))
def test_awaited_metric_is_exported(name: str) -> None:
    """Fails (xfail) while nothing exports `name`; once something does, this passes, strict xfail
    turns that into a failure, and the name must leave AWAITING_INSTRUMENTATION."""
    assert declared_in_code(name), AWAITING_INSTRUMENTATION[name]
