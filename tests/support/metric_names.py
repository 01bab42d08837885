"""Which metric names a PromQL expression reads, and whether the code base exports them.

Used by the tests of deploy/prometheus (alerts) and deploy/grafana (dashboard panels): a typo in
a metric name makes an alert that never fires or a panel that stays empty, and nothing else would
notice. Deliberately small: strings, label matchers, ranges and grouping clauses are cut out,
then every identifier not followed by `(` (a function or an aggregation) and not a keyword is a
metric name (or a recording rule, when it has a colon).
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

# Exported by something other than stockstream's code: Prometheus itself, and kafka-exporter
# (consumer lag per group and topic, read from the brokers; see deploy/README.md).
EXTERNAL_METRICS = {
    "up": "Prometheus (scrape health of every target)",
    "kafka_consumergroup_lag": "kafka-exporter",
    "kafka_consumergroup_lag_sum": "kafka-exporter",
}

# Named in the alerts and the dashboard (issue 6) but not exported by any process yet. Each one
# is checked the other way round (tests/unit/test_deploy_metric_names.py, strict xfail): once a
# process exports it, that test fails until the name is removed from here.
# Empty now: every name the deploy files use is exported (end-to-end latency by the channel sink,
# rebalances and table keys by the worker).
AWAITING_INSTRUMENTATION: dict[str, str] = {}

_KEYWORDS = {"and", "or", "unless", "bool", "offset", "inf", "nan", "by", "without", "on", "ignoring", "group_left", "group_right"}
_HISTOGRAM_SUFFIXES = ("_bucket", "_count", "_sum")
_CODE_DIRS = ("stockstream", "streams", "connectors", "sinks", "erp", "schemas", "bench")


def metric_names(expr: str) -> set[str]:
    """Metric (and recording rule) names read by one PromQL expression."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"\{[^}]*\}", "", text)
    text = re.sub(r"\[[^\]]*\]", "", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)
    names = set()
    for match in re.finditer(r"(?<![\w:.$])[a-zA-Z_:][\w:]*", text):
        if text[match.end():].lstrip().startswith("("):
            continue
        if match.group(0).lower() in _KEYWORDS:
            continue
        names.add(match.group(0))
    return names


@lru_cache(maxsize=1)
def _code_text() -> str:
    parts = []
    for folder in _CODE_DIRS:
        for path in sorted((REPO / folder).rglob("*.py")):
            parts.append(path.read_text(encoding="utf-8", errors="replace"))
    return "\n".join(parts)


def declared_in_code(name: str) -> bool:
    """Whether some process's code declares this metric (as a quoted name: Counter("...", ...)).

    A histogram's `_bucket`/`_count`/`_sum` series and a counter declared without its `_total`
    suffix (prometheus_client adds it) count as declared."""
    text = _code_text()
    candidates = {name}
    for suffix in _HISTOGRAM_SUFFIXES + ("_total",):
        if name.endswith(suffix):
            candidates.add(name.removesuffix(suffix))
    return any(f'"{candidate}"' in text or f"'{candidate}'" in text for candidate in candidates)


def base_name(name: str) -> str:
    """A histogram series' metric name (`x_bucket` -> `x`), for the awaiting list."""
    for suffix in _HISTOGRAM_SUFFIXES:
        if name.endswith(suffix) and name.removesuffix(suffix) in AWAITING_INSTRUMENTATION:
            return name.removesuffix(suffix)
    return name


def unknown_names(names: set[str], recording_rules: set[str]) -> set[str]:
    """The names neither recorded by our rules, exported by our code, external, nor awaited."""
    return {
        name for name in names
        if name not in recording_rules
        and name not in EXTERNAL_METRICS
        and base_name(name) not in AWAITING_INSTRUMENTATION
        and not declared_in_code(name)
    }
