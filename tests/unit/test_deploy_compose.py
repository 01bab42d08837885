"""docker-compose.yml: docker-compose accepts it, it has the issue's services, every stockstream
service runs a real CLI command with real settings, and Prometheus scrapes what compose runs."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import typer.main
import yaml

from stockstream.cli import app
from stockstream.settings import Settings

REPO = Path(__file__).resolve().parents[2]


def compose() -> dict:
    return yaml.safe_load((REPO / "docker-compose.yml").read_text(encoding="utf-8"))


def stockstream_services() -> dict[str, dict]:
    return {name: s for name, s in compose()["services"].items() if s.get("image", "").startswith("stockstream:")}


@pytest.mark.skipif(
    shutil.which("docker-compose") is None,
    reason="docker-compose not installed (Debian package `docker-compose`; .ci/run installs it)",
)
def test_docker_compose_accepts_the_file() -> None:
    result = subprocess.run(
        ["docker-compose", "-f", "docker-compose.yml", "config", "-q"], cwd=REPO, capture_output=True, text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_issue_s_services_are_there() -> None:
    services = compose()["services"]
    for wanted in ("kafka", "worker-1", "worker-2", "tmall-sim", "jd-sim", "douyin-sim", "pdd-sim",
                   "adapter-tmall", "adapter-jd", "adapter-douyin", "adapter-pdd", "channel-sink", "journal",
                   "erp-sink", "prometheus", "grafana", "kafka-exporter"):
        assert wanted in services, wanted


def test_every_stockstream_service_runs_a_cli_command() -> None:
    group = typer.main.get_command(app)
    for name, service in stockstream_services().items():
        words = list(service["command"])
        command = group
        while words and hasattr(command, "commands"):  # descend into sub-groups (kafka start, ...)
            assert words[0] in command.commands, f"{name}: `stockstream {' '.join(service['command'])}` is no command"
            command = command.commands[words.pop(0)]


def test_every_stockstream_variable_is_a_setting() -> None:
    fields = {f"STOCKSTREAM_{field.upper()}" for field in Settings.model_fields}
    for name, service in stockstream_services().items():
        for variable in service.get("environment", {}):
            if variable.startswith("STOCKSTREAM_"):
                assert variable in fields, f"{name}: {variable} is not a field of Settings (typo?)"


def test_workers_keep_their_tables_and_are_reachable_by_each_other() -> None:
    services = compose()["services"]
    for name in ("worker-1", "worker-2"):
        worker = services[name]
        env = worker["environment"]
        assert env["STOCKSTREAM_WEB_ADVERTISED_HOST"] == name
        assert env["STOCKSTREAM_WEB_HOST"] == "0.0.0.0"
        assert any(volume.endswith(":/home/stockstream/data") for volume in worker["volumes"])
        assert "/ready" in " ".join(worker["healthcheck"]["test"])


def test_stockstream_processes_start_after_the_topics_exist() -> None:
    services = compose()["services"]
    assert services["topics"]["command"] == ["topics"]
    for name, service in stockstream_services().items():
        if name in ("topics",) or name.endswith("-sim"):
            continue
        assert service["depends_on"]["topics"]["condition"] == "service_completed_successfully", name


def test_prometheus_scrapes_services_compose_runs_on_their_metrics_ports() -> None:
    services = compose()["services"]
    assert "./deploy/prometheus:/etc/prometheus:ro" in services["prometheus"]["volumes"]
    config = yaml.safe_load((REPO / "deploy" / "prometheus" / "prometheus.yml").read_text(encoding="utf-8"))
    for job in config["scrape_configs"]:
        for target in (t for static in job["static_configs"] for t in static["targets"]):
            host, _, port = target.partition(":")
            if host == "localhost":
                continue
            assert host in services, f"{job['job_name']}: {target} is not a compose service"
            env = services[host].get("environment", {})
            port_settings = {value for key, value in env.items() if key.endswith("PORT")} if isinstance(env, dict) else set()
            if host.startswith(("worker-", "channel-sink", "journal", "erp-sink")):
                assert port in port_settings, f"{target}: the service does not serve metrics on {port}"


def test_the_channel_sink_reads_the_listings_of_the_shops_the_shoppers_use() -> None:
    # Without a listings export the sink refuses to start (exit 2): with restart: unless-stopped,
    # a crash loop. The simulated shops' export is written for the same SKUs the shoppers register.
    services = compose()["services"]
    sink, writer, shoppers = services["channel-sink"], services["sim-listings"], services["shoppers"]
    path = sink["environment"]["STOCKSTREAM_LISTINGS_PATH"]
    assert sink["depends_on"]["sim-listings"]["condition"] == "service_completed_successfully"
    assert writer["command"][:2] == ["simulator", "listings"]
    assert writer["command"][writer["command"].index("--out") + 1] == path
    volume = next(v for v in writer["volumes"] if path.startswith(v.split(":")[1] + "/"))
    assert f"{volume}:ro" in sink["volumes"]
    skus = writer["command"][writer["command"].index("--skus") + 1]
    assert shoppers["command"][shoppers["command"].index("--skus") + 1] == skus
