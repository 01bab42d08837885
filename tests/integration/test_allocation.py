"""Raw orders -> stock -> per-channel allocations on the `allocations` topic, on the real broker;
then `stockstream rules set` (the real CLI, a subprocess) changes split ratios live and the new
allocations appear within seconds."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Callable

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from connectors.publisher import RawPublisher
from connectors.simulators.tmall_traffic import TmallTraffic
from schemas import codec
from schemas.names import ALLOCATION_CHANGE
from stockstream.core.allocation import AllocationRules, allocation_targets, merge_rules
from stockstream.process import WorkerProcess
from stockstream.settings import Settings, ShopCredentials
from stockstream.topics import ALLOCATIONS, ensure_topics
from tests.support.ats import wait_for_expected

pytestmark = pytest.mark.integration

TMALL, JD = "tmall:tmall-flagship", "jd:jd-1"
SKUS = [f"SKU-{i:03d}" for i in range(6)]


class AllocationsReader:
    """Follows the allocations topic: the latest record (highest version) per (SKU, channel)."""

    def __init__(self, settings: Settings) -> None:
        self.topic = settings.topic(ALLOCATIONS.name)
        self.consumer = Consumer({"bootstrap.servers": settings.bootstrap_servers, "group.id": "test-allocations",
                                  "enable.auto.commit": False})
        self.consumer.assign([TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in range(settings.partitions)])
        self.latest: dict[tuple[str, str], dict] = {}

    def poll(self) -> None:
        for message in self.consumer.consume(num_messages=1000, timeout=0.5):
            if message.error() is not None:
                continue
            record = codec.decode(message.value(), ALLOCATION_CHANGE)
            assert message.key().decode() == record["sku"]
            key = (record["sku"], record["channel"])
            if key not in self.latest or record["version"] > self.latest[key]["version"]:
                self.latest[key] = record

    def quantities(self) -> dict[tuple[str, str], int]:
        return {key: record["quantity"] for key, record in self.latest.items()}

    def wait_for(self, expected: dict[tuple[str, str], int], timeout: float, worker: WorkerProcess) -> dict:
        """Polls until every expected (SKU, channel) shows its quantity; returns what differs at timeout."""
        deadline = time.monotonic() + timeout
        while True:
            self.poll()
            got = self.quantities()
            wrong = {key: (got.get(key), want) for key, want in expected.items() if got.get(key) != want}
            if not wrong or time.monotonic() > deadline:
                return wrong
            assert worker.alive, f"worker died:\n{worker.log_tail()}"

    def close(self) -> None:
        self.consumer.close()


def rules_cli(settings: Settings, tmp_path: Path, rules: dict, *target: str) -> str:
    path = tmp_path / f"rules-{time.monotonic_ns()}.json"
    path.write_text(json.dumps(rules))
    done = subprocess.run(
        [sys.executable, "-m", "stockstream", "rules", "set", *target, "--file", str(path)],
        env=settings.to_env(), capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def expected(rules_for: Callable[[str], AllocationRules], ats_of: Callable[[str], int]) -> dict[tuple[str, str], int]:
    return {(sku, channel): q for sku in SKUS for channel, q in allocation_targets(ats_of(sku), rules_for(sku)).items()}


def test_orders_allocate_per_channel_and_rule_changes_reallocate_live(settings, tmp_path):
    shops = [ShopCredentials(platform="tmall", shop_id="tmall-flagship", app_key="k", app_secret="s"),
             ShopCredentials(platform="jd", shop_id="jd-1", app_key="k", app_secret="s")]
    settings = settings.model_copy(update={"shops": shops})
    ensure_topics(settings)
    defaults = {"version": 1, "mode": "split", "channels": [{"channel": TMALL, "weight": 1}, {"channel": JD, "weight": 1}]}
    rules_cli(settings, tmp_path, defaults, "--default")  # before any worker: read from the topic at start

    traffic = TmallTraffic(skus=SKUS, duplicate_rate=0.2, seed=5, receipt_units=500)
    publisher = RawPublisher(settings)
    publisher.publish("warehouse", traffic.receipts())
    assert publisher.publish("tmall", traffic.messages(400)) == 400

    worker = WorkerProcess(settings).start()
    reader = AllocationsReader(settings)
    try:
        worker.wait_ready()
        wrong = wait_for_expected(worker, SKUS, traffic.truth.ats, timeout=90)
        assert not wrong, f"ATS differs from ground truth: {wrong}\n{worker.log_tail()}"
        default_rules = AllocationRules.from_dict(defaults)
        wrong = reader.wait_for(expected(lambda _: default_rules, traffic.truth.ats), 20, worker)
        assert not wrong, f"allocations (got, expected): {wrong}\n{worker.log_tail()}"
        assert all(r["movement_ids"] and r["rule_version"] == 1 and r["mode"] == "split" for r in reader.latest.values())
        total = {sku: sum(q for (s, _), q in reader.quantities().items() if s == sku) for sku in SKUS}
        assert total == {sku: max(traffic.truth.ats(sku), 0) for sku in SKUS}

        # One SKU's split changes: only it is re-allocated, under rule version 1 + 1.
        override = {"channels": [{"channel": TMALL, "weight": 3}]}
        started = time.monotonic()
        out = rules_cli(settings, tmp_path, override, "--sku", SKUS[0])
        assert "v1 published" in out
        sku_rules = merge_rules(default_rules, {**override, "version": 1})
        want = expected(lambda sku: sku_rules if sku == SKUS[0] else default_rules, traffic.truth.ats)
        wrong = reader.wait_for(want, 10, worker)
        assert not wrong, f"after the SKU override (got, expected): {wrong}\n{worker.log_tail()}"
        assert reader.latest[(SKUS[0], TMALL)]["rule_version"] == 2
        assert reader.latest[(SKUS[1], TMALL)]["rule_version"] == 1

        # New defaults (version 2 picked by the CLI) reach every SKU on every partition.
        new_defaults = {"mode": "split", "channels": [{"channel": TMALL, "weight": 1}, {"channel": JD, "weight": 4}]}
        rules_cli(settings, tmp_path, new_defaults, "--default")
        default_rules = AllocationRules.from_dict({**new_defaults, "version": 2})
        sku_rules = merge_rules(default_rules, {**override, "version": 1})
        want = expected(lambda sku: sku_rules if sku == SKUS[0] else default_rules, traffic.truth.ats)
        wrong = reader.wait_for(want, 10, worker)
        assert not wrong, f"after new defaults (got, expected): {wrong}\n{worker.log_tail()}"
        assert time.monotonic() - started < 30
        assert {r["rule_version"] for (sku, _), r in reader.latest.items() if sku != SKUS[0]} == {2}

        with urllib.request.urlopen(f"{worker.url}/metrics", timeout=10) as response:
            exposition = response.read().decode()
        assert f'stockstream_allocation_changes_total{{channel="{JD}"}}' in exposition

        shown = subprocess.run([sys.executable, "-m", "stockstream", "rules", "show", "--sku", SKUS[0]],
                               env=settings.to_env(), capture_output=True, text=True, timeout=60)
        assert json.loads(shown.stdout)["effective"]["version"] == 3
    finally:
        reader.close()
        worker.stop()
