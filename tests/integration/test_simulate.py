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
