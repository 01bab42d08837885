"""deploy/prometheus: the scrape config and alert rules are valid (promtool), the alert unit tests
pass, every alert documents itself, and every metric an alert reads is one the code exports."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.support.metric_names import metric_names, unknown_names

REPO = Path(__file__).resolve().parents[2]
PROMETHEUS = REPO / "deploy" / "prometheus"
ALERTS = PROMETHEUS / "alerts.yml"
RUNBOOKS = REPO / "deploy" / "README.md"

needs_promtool = pytest.mark.skipif(
    shutil.which("promtool") is None,
    reason="promtool not installed (Debian package `prometheus`; .ci/run installs it)",
)


def rules() -> list[dict]:
    groups = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))["groups"]
    return [rule for group in groups for rule in group["rules"]]


def alerts() -> list[dict]:
    return [rule for rule in rules() if "alert" in rule]


def promtool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["promtool", *args], cwd=PROMETHEUS, capture_output=True, text=True, timeout=60)


@needs_promtool
def test_promtool_accepts_the_rules() -> None:
    result = promtool("check", "rules", "alerts.yml")
    assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
def test_promtool_accepts_the_scrape_config() -> None:
    result = promtool("check", "config", "prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
def test_alert_unit_tests_pass() -> None:
    result = promtool("test", "rules", "alerts_test.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_issue_s_alerts_exist() -> None:
    names = {rule["alert"] for rule in alerts()}
    for wanted in (
        "StockstreamConsumerLagGrowing", "StockstreamChannelPushesFailing", "StockstreamQuarantineRateHigh",
        "StockstreamLatencyBudgetBurnFast", "StockstreamLatencyBudgetBurnSlow", "StockstreamReconciliationDrift",
        "StockstreamWorkerDown", "StockstreamIngestBatcherDead",
    ):
        assert wanted in names


def test_every_alert_has_a_severity_and_its_three_annotations() -> None:
    for rule in alerts():
        assert rule["labels"]["severity"] in {"critical", "warning"}, rule["alert"]
        for key in ("summary", "description", "runbook"):
            assert rule["annotations"].get(key, "").strip(), f"{rule['alert']} lacks {key}"


def test_every_runbook_is_a_section_of_deploy_readme() -> None:
    headings = {
        re.sub(r"[^a-z0-9 -]", "", line.lstrip("#").strip().lower()).replace(" ", "-")
        for line in RUNBOOKS.read_text(encoding="utf-8").splitlines() if line.startswith("#")
    }
    for rule in alerts():
        path, _, anchor = rule["annotations"]["runbook"].partition("#")
        assert path == "deploy/README.md", rule["alert"]
        assert anchor in headings, f"{rule['alert']}: no section #{anchor} in deploy/README.md"


def test_every_alert_has_a_unit_test_or_is_simple_enough_to_read() -> None:
    """The alert unit tests cover the paging alerts whose expressions are not one comparison."""
    tested = set(re.findall(r"alertname: (\w+)", (PROMETHEUS / "alerts_test.yml").read_text(encoding="utf-8")))
    for name in ("StockstreamWorkerDown", "StockstreamIngestBatcherDead", "StockstreamLatencyBudgetBurnFast",
                 "StockstreamChannelPushesParked", "StockstreamConsumerLagGrowing"):
        assert name in tested


def test_every_metric_the_rules_read_is_exported_somewhere() -> None:
    recorded = {rule["record"] for rule in rules() if "record" in rule}
    for rule in rules():
        unknown = unknown_names(metric_names(rule["expr"]), recorded)
        assert not unknown, f"{rule.get('alert') or rule.get('record')} reads metrics nothing exports: {unknown}"


def test_scrape_jobs_are_the_ones_the_alerts_name() -> None:
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text(encoding="utf-8"))
    jobs = {job["job_name"] for job in config["scrape_configs"]}
    named = set()
    for rule in alerts():
        for pattern in re.findall(r'job=~?"([^"]+)"', rule["expr"]):
            named |= {job for job in jobs if re.fullmatch(pattern, job)} or {pattern}
    assert named <= jobs, named - jobs
    assert "alerts.yml" in config["rule_files"]
