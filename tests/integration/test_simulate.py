"""`stockstream simulate` against the real broker: a short spiky run. Every order event the
simulators generated is in the raw topics at least once (JD: every order's final version, as in
test_adapter_all), every warehouse document it sent is in raw.warehouse, and the truth file is
written and agrees with the events and with itself."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from connectors import warehouse as feed
from stockstream.simulate import SimulateOptions, simulate
from tests.support.adapters import assert_no_pii, message_ids, read_raw, read_topic

pytestmark = pytest.mark.integration


async def test_short_spiky_simulation_fills_raw_topics_and_records_truth(settings, tmp_path):
    truth_path = tmp_path / "truth.json"
    opts = SimulateOptions(
        rate=4, shape="spike", spike_factor=5, spike_start_s=5, spike_minutes=5 / 60, duration_s=20, seed=3,
        truth_out=truth_path, shops=2, skus=6, faults=True, step_delay_s=(0.1, 1.0), settle_s=60,
    )
    returned = await simulate(settings, opts)
    truth = json.loads(truth_path.read_text())
    assert truth == json.loads(json.dumps(returned))
    assert truth["settled"], truth["counters"]

    # Roughly 4/s for 15 s plus 20/s for 5 s; Poisson-free, so close to the integral.
    c = truth["counters"]
    assert 130 <= c["orders_attempted"] <= 170 and c["orders"] == c["orders_attempted"]
    assert c["cancellations"] > 0 and c["returns"] > 0 and c["partial_refunds"] > 0

    # Every event each simulator generated is in its raw topic.
    for platform in ("tmall", "douyin", "pdd"):
        records = await read_raw(settings, platform)
        assert_no_pii(records)
        expected = {e["event_id"] for e in truth["events"][platform]}
        got = set(message_ids(records))
        assert expected and expected <= got, f"{platform}: {len(expected - got)} events missing"
    jd_records = await read_raw(settings, "jd")
    assert set(truth["jd_final_versions"].values()) <= set(message_ids(jd_records))
    assert {r.key for r in jd_records} == {o["order_id"] for o in truth["orders"]["jd"]}

    # Every warehouse document sent was accepted and is in raw.warehouse, keyed by its id.
    docs = truth["warehouse_documents"]
    assert docs and all(d["status"] == 200 for d in docs)
    assert {d["type"] for d in docs} >= {"RECEIPT", "RETURN_RECEIVED"}
    wh = await read_topic(settings, "raw.warehouse")
    by_key = {r.key: r for r in wh}
    assert set(by_key) == {d["document_id"] for d in docs}
    for d in docs:
        events = feed.parse(by_key[d["document_id"]].value, by_key[d["document_id"]].headers)
        assert [(e.sku, e.quantity, e.event_type.value) for e in events] == [
            (line["sku"], line["quantity"], line["event_type"]) for line in d["lines"]
        ]

    # The truth agrees with itself: events name known orders; per-SKU numbers re-derive from orders.
    for platform, orders in truth["orders"].items():
        ids = {o["order_id"] for o in orders}
        assert ids and {e["order_id"] for e in truth["events"][platform]} <= ids
        if platform != "jd":
            assert {e["order_id"] for e in truth["events"][platform]} == ids
    reserved, shipped, returned_units = Counter(), Counter(), Counter()
    for orders in truth["orders"].values():
        for o in orders:
            for line in o["lines"]:
                if line["status"] == "PAID":
                    reserved[line["merchant_code"]] += line["quantity"]
                if line["shipped"]:
                    shipped[line["merchant_code"]] += line["quantity"]
                    if line["status"] == "CLOSED":
                        returned_units[line["merchant_code"]] += line["quantity"]
    received_returns = Counter()
    for d in docs:
        if d["type"] == "RETURN_RECEIVED":
            for line in d["lines"]:
                received_returns[line["sku"]] += line["quantity"]
    for sku, entry in truth["skus"].items():
        assert entry["reserved"] == reserved[sku] and entry["shipped"] == shipped[sku], sku
        assert entry["returned"] == returned_units[sku] and entry["returns_received"] == received_returns[sku]
        assert entry["returns_received"] <= entry["returned"]  # the last return documents may not be sent yet
        assert sum(ch["reserved"] for ch in entry["channels"].values()) == entry["reserved"]
        assert entry["expected_on_hand"]["main"] == opts.initial_stock - entry["shipped"] + entry["returns_restocked"]
        assert entry["expected_ats"] == max(entry["expected_on_hand"]["main"] - entry["reserved"], 0)
    assert sum(e["reserved"] for e in truth["skus"].values()) > 0


async def test_simulate_drives_simulators_already_running(settings, free_port, tmp_path):
    """As in docker-compose: four `stockstream simulator run` processes, the adapters in front of
    them (here: in the test process), and `simulate` with the simulators' URLs driving them
    through their control API. Every event they generated reaches the raw topics."""
    import asyncio
    import os
    import subprocess
    import sys
    import urllib.request
    import uuid

    from connectors.adapters import make_adapter
    from connectors.publisher import RawPublisher
    from stockstream.settings import ShopCredentials
    from tests.support.adapters import cancel, ensure_raw_topics, wait_until

    ports = {p: free_port() for p in ("tmall", "jd", "douyin", "pdd")}
    urls = {p: f"http://127.0.0.1:{port}" for p, port in ports.items()}
    push_port = free_port()
    shops = [
        ShopCredentials(platform=p, shop_id=f"{p}-shop-{i}", app_key=f"{p}-app-{i}", app_secret=f"{p}-{uuid.uuid4().hex[:8]}",
                        access_token=f"{p}-token-{i}", api_base_url=urls[p])
        for p in ports for i in range(2)
    ]
    settings = settings.model_copy(update={"shops": shops})
    ensure_raw_topics(settings)
    env = {**os.environ, **settings.to_env(), "PYTHONUNBUFFERED": "1"}
    processes = []
    for p, port in ports.items():
        args = [sys.executable, "-m", "stockstream", "simulator", "run", "--platform", p, "--port", str(port), "--faults", "--seed", "1"]
        if p == "tmall":
            args += ["--option", "visibility_timeout_s=1"]
        if p == "douyin":
            args += ["--callback-url", f"http://127.0.0.1:{push_port}/douyin/push", "--option", "retry_interval_s=0.3"]
        with open(tmp_path / f"sim-{p}.log", "ab") as log:
            processes.append(subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True))

    def serving(url: str) -> bool:
        assert all(process.poll() is None for process in processes), "a simulator process exited (see sim-*.log)"
        try:
            with urllib.request.urlopen(f"{url}/_sim/stats", timeout=1):
                return True
        except OSError:
            return False

    publisher = RawPublisher(settings)
    by_platform = {p: [s for s in shops if s.platform == p] for p in ports}
    adapters = {
        "tmall": make_adapter("tmall", by_platform["tmall"], publisher, idle_wait_s=0.1),
        "jd": make_adapter("jd", by_platform["jd"], publisher, overlap_s=5, lag_s=0, poll_interval_s=0.3, initial_lookback_s=60),
        "douyin": make_adapter("douyin", by_platform["douyin"], publisher, port=push_port),
        "pdd": make_adapter("pdd", by_platform["pdd"], publisher, heartbeat_s=1),
    }
    tasks = []
    try:
        for url in urls.values():
            await wait_until(lambda url=url: asyncio.to_thread(serving, url), 30, interval=0.3, what=f"simulator at {url}")
        await adapters["douyin"].start()
        tasks = [asyncio.create_task(adapters[p].run()) for p in ("tmall", "jd", "pdd")]
        opts = SimulateOptions(
            rate=3, duration_s=8, seed=5, truth_out=tmp_path / "truth.json", shops=2, skus=4,
            step_delay_s=(0.1, 0.8), settle_s=40, simulator_urls=urls,
        )
        truth = await simulate(settings, opts)
    finally:
        for task in tasks:
            await cancel(task)
        await adapters["douyin"].stop()
        for adapter in adapters.values():
            await adapter.close()
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(10)

    assert truth["settled"], truth["counters"]
    assert truth["counters"]["orders"] >= 15
    assert {p: sorted(ids) for p, ids in truth["shops"].items()} == {p: [f"{p}-shop-0", f"{p}-shop-1"] for p in ports}
    for platform in ("tmall", "douyin", "pdd"):
        expected = {e["event_id"] for e in truth["events"][platform]}
        got = set(message_ids(await read_raw(settings, platform)))
        assert expected and expected <= got, f"{platform}: {len(expected - got)} events missing"
    jd_ids = set(message_ids(await read_raw(settings, "jd")))
    assert truth["jd_final_versions"] and set(truth["jd_final_versions"].values()) <= jd_ids
    assert {r.key for r in await read_raw(settings, "jd")} >= {o["order_id"] for o in truth["orders"]["jd"]}
