"""The REST API's answers as plain functions: list filters and merges (the same whichever worker
merges), allocation and provenance bodies, SKUs at risk, the dashboard's history."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, strategies as st

from stockstream.core.allocation import AllocationRules, ChannelRule
from stockstream.core.stock import DAY_MS, LocationStock, StockState
from stockstream.core.velocity import DecayedRate
from streams import api_views as views
from streams.api_history import History
from streams.sku_allocation import SkuValue

TMALL, JD = "tmall:flagship", "jd:1"
NOW = 1_731_254_400_000


def sku_value(sku: str, on_hand: int, reserved: dict | None = None, allocated: dict | None = None,
              location: str = "main", sold_per_day: dict | None = None) -> SkuValue:
    value = SkuValue.new(sku)
    value.stock.locations[location] = LocationStock(on_hand=on_hand)
    value.stock.reserved = dict(reserved or {})
    value.stock.version = 3
    for channel, quantity in (allocated or {}).items():
        value.allocation.quantities[channel] = quantity
        value.allocation.versions[channel] = 2
    if allocated:
        value.allocation.ats, value.allocation.ats_version, value.allocation.rule_version = on_hand, 3, 1
    for channel, per_day in (sold_per_day or {}).items():
        rate = DecayedRate(3 * DAY_MS)
        # A steady flow for a long time settles at level = rate x half-life / ln 2.
        rate.level, rate.at_ms = per_day / (0.6931471805599453 * DAY_MS / rate.half_life_ms), NOW
        value.allocation.rates[channel] = rate
    return value


def test_a_table_value_round_trips_and_old_plain_stock_values_still_read():
    value = sku_value("A", 10, allocated={TMALL: 7})
    assert views.read_sku_value(value.encode()).allocation.quantities == {TMALL: 7}
    import orjson

    plain = StockState("B", version=1)
    read = views.read_sku_value(orjson.dumps(plain.to_dict()))
    assert read.stock.sku == "B" and read.allocation.quantities == {}


def test_list_filters():
    values = [
        sku_value("SKU-1", 10, reserved={TMALL: 2}, allocated={TMALL: 8}),
        sku_value("SKU-2", 50, allocated={JD: 50}, location="bonded"),
        sku_value("OTHER", 3),
    ]
    def skus(**params):
        query = views.parse_ats_query({k: str(v) for k, v in params.items()})
        return [item["sku"] for item in views.local_ats_answer(values, query, [0])["items"]]

    assert skus() == ["OTHER", "SKU-1", "SKU-2"]
    assert skus(channel=TMALL) == ["SKU-1"]
    assert skus(location="bonded") == ["SKU-2"]
    assert skus(below=10) == ["OTHER", "SKU-1"]  # ATS 3 and 8
    assert skus(q="sku") == ["SKU-1", "SKU-2"]
    assert skus(limit=1) == ["OTHER"]
    assert skus(after="SKU-1") == ["SKU-2"]
    item = views.local_ats_answer(values, views.AtsQuery(channel=TMALL), [0])["items"][0]
    assert item["ats"] == 8 and item["allocated"] == {TMALL: 8} and item["reserved_by_channel"] == {TMALL: 2}


@pytest.mark.parametrize("params, problem", [
    ({"limit": "0"}, "limit"), ({"limit": "1001"}, "limit"), ({"below": "x"}, "below"), ({"history": "maybe"}, "history"),
])
def test_bad_list_parameters_name_the_parameter(params, problem):
    with pytest.raises(ValueError, match=problem):
        views.parse_ats_query(params)


def test_query_parameters_round_trip():
    query = views.AtsQuery(channel=TMALL, location="main", below=5, q="a", limit=7, history=True, after="SKU-9")
    assert views.parse_ats_query(query.params()) == query


@given(st.lists(st.tuples(st.integers(0, 3), st.integers(-5, 40)), min_size=0, max_size=40, unique_by=lambda t: t),
       st.integers(1, 10), st.randoms())
def test_merging_does_not_depend_on_who_merges(cells, limit, rnd):
    """Split SKUs over 4 'workers' by partition: the merged answer is the one a single worker
    holding everything gives, in whatever order the parts arrive."""
    values = [sku_value(f"S{i:03d}", on_hand) for i, (_, on_hand) in enumerate(cells)]
    query = views.AtsQuery(below=20, limit=limit)
    parts = [views.local_ats_answer([v for v, (p, _) in zip(values, cells) if p == worker], query, [worker])
             for worker in range(4)]
    rnd.shuffle(parts)
    merged = views.merge_ats_answers(parts, limit)
    whole = views.local_ats_answer(values, query, [0, 1, 2, 3])
    assert merged["items"] == whole["items"] and merged["total"] == whole["total"]
    assert merged["partitions"] == [0, 1, 2, 3] and merged["truncated"] == (whole["total"] > limit)


def test_allocation_body_is_the_same_whenever_asked():
    value = sku_value("A", 100, allocated={TMALL: 60, JD: 40}, sold_per_day={TMALL: 12.0})
    rules = AllocationRules(version=1, mode="split", channels=(ChannelRule(TMALL, weight=3), ChannelRule(JD, weight=2)))
    body = views.allocation_body(value, rules)
    assert body["channels"][TMALL] == {"quantity": 60, "version": 2, "units_per_day": pytest.approx(12.0), "last_sale_at_ms": NOW}
    assert body["channels"][JD]["units_per_day"] is None
    assert body["allocated_from"] == {"ats": 100, "ats_version": 3, "rule_version": 1}
    assert body["rules"]["mode"] == "split"
    assert views.allocation_body(value, rules) == body


def test_provenance_explains_the_number():
    value = sku_value("A", 50, reserved={TMALL: 10}, allocated={TMALL: 37})
    value.stock.safety_stock, value.stock.safety_stock_ms = 0, 1
    value.allocation.ats = 40
    rules = AllocationRules(version=1, channels=(ChannelRule(TMALL, buffer=3),))
    change = {"sku": "A", "channel": TMALL, "quantity": 37, "previous_quantity": 30, "version": 2, "ats": 40,
              "ats_version": 3, "rule_version": 1, "mode": "shared", "movement_ids": ["m-1", "m-2"], "computed_at_ms": NOW}
    body = views.provenance_body(value, TMALL, rules, change)
    assert body["published"] == {"quantity": 37, "version": 2}
    assert body["target"] == 37 and body["ats"]["ats"] == 40
    assert body["rule"]["channel_rule"] == {"channel": TMALL, "buffer": 3}
    text = body["explanation"]
    assert text.startswith(f"{TMALL} shows 37 (version 2).")
    assert "ATS of A is 40 = on hand 50 - reserved 10 - safety stock 0" in text
    assert "shared mode: 100% of the stock pool, minus buffer 3: target 37." in text
    assert "m-1, m-2" in text


def test_provenance_says_when_hysteresis_holds_a_quantity():
    value = sku_value("A", 40, allocated={TMALL: 38})
    rules = AllocationRules(version=1, channels=(ChannelRule(TMALL),), hysteresis_units=5)
    assert "Held at 38 by hysteresis (target 40)." in views.provenance_body(value, TMALL, rules, None)["explanation"]


def test_skus_at_risk_by_days_of_cover():
    fast = sku_value("FAST", 20, sold_per_day={TMALL: 10.0})  # 2 days
    slow = sku_value("SLOW", 1000, sold_per_day={TMALL: 1.0})  # 1000 days
    idle = sku_value("IDLE", 0)  # sells nothing: not at risk, whatever the stock
    risk = views.RiskCandidate.of
    part = views.local_summary_answer(3, [risk(fast), risk(slow), risk(idle)], NOW, 21.0, [], [0], read_at_ms=NOW - 5)
    assert [r["sku"] for r in part["at_risk"]] == ["FAST"] and part["skus"] == 3
    assert part["at_risk"][0]["days_of_cover"] == pytest.approx(2.0, rel=1e-3)
    other = views.local_summary_answer(1, [risk(sku_value("X", 1, sold_per_day={JD: 1.0}))], NOW, 21.0, [], [1],
                                       read_at_ms=NOW - 9, at_risk_not_listed=5)
    merged = views.merge_summaries([part, other])
    assert [r["sku"] for r in merged["at_risk"]] == ["X", "FAST"] and merged["skus"] == 4 and merged["partitions"] == [0, 1]
    assert merged["at_risk_total"] == 1 + 1 + 5
    assert merged["read_at_ms"] == NOW - 9  # the oldest part's


def test_a_candidate_no_longer_at_risk_is_left_out():
    """Candidates kept from an earlier read are re-checked at the moment asked: a SKU that stopped
    selling drifts out of the list as its rate decays."""
    fading = views.RiskCandidate.of(sku_value("FADING", 20, sold_per_day={TMALL: 10.0}))  # 2 days of cover at NOW
    assert views.local_summary_answer(1, [fading], NOW, 21.0, [], [0])["at_risk_total"] == 1
    assert views.local_summary_answer(1, [fading], NOW + 30 * DAY_MS, 21.0, [], [0])["at_risk_total"] == 0


def test_history_is_bounded_and_records_channel_changes():
    history = History(points_per_sku=3, max_skus=2)
    value = sku_value("A", 10, allocated={TMALL: 10})
    value.allocation.versions[TMALL] = 1
    history.observe(value, 1)  # a first listing (version 1) is a change
    value.allocation.quantities[TMALL], value.allocation.versions[TMALL] = 8, 2
    value.stock.locations["main"].on_hand = 8
    history.observe(value, 2)
    history.observe(value, 3)  # same version again: no change
    history.observe(value, 4)
    assert [p[1] for p in history.points("A")] == [8, 8, 8] and len(history.points("A")) == 3
    assert [(c["previous_quantity"], c["quantity"], c["version"]) for c in history.recent_changes(lambda s: True)] == [
        (None, 10, 1), (10, 8, 2)]
    later = sku_value("B", 5, allocated={JD: 5})  # version 2 on first sight: seen after a restart, not a change
    history.observe(later, 5)
    history.observe(sku_value("C", 1), 6)  # a third SKU evicts the least recently changed (A)
    assert history.points("A") == [] and history.points("B") and history.points("C")
    assert len(history.recent_changes(lambda s: s == "B")) == 0


def test_partition_lists():
    assert views.parse_partitions(None, 4) == [0, 1, 2, 3]
    assert views.parse_partitions("2,0,2", 4) == [0, 2]
    for bad in ("4", "-1", "a"):
        with pytest.raises(ValueError):
            views.parse_partitions(bad, 4)


def test_random_values_render(seed=3):
    rnd = random.Random(seed)
    values = [sku_value(f"R{i}", rnd.randint(0, 50), allocated={TMALL: rnd.randint(0, 5)}) for i in range(20)]
    answer = views.local_ats_answer(values, views.AtsQuery(limit=5), [0])
    assert len(answer["items"]) == 5 and answer["total"] == 20


def test_the_sampler_takes_a_bounded_number_of_writes_per_tick():
    from streams.api_history import StockWrites, record_pending

    table, other = object(), object()
    writes = StockWrites(table)
    for i in range(5):
        writes.on_table_set(table, f"S{i}".encode(), sku_value(f"S{i}", i).encode())
    writes.on_table_set(other, b"order", b"{}")  # another table: not the stock
    history = History()
    assert record_pending(writes, history, 1, views.read_sku_value, limit=3) == 3
    assert [bool(history.points(f"S{i}")) for i in range(5)] == [True, True, True, False, False]
    assert record_pending(writes, history, 2, views.read_sku_value, limit=3) == 2
    assert record_pending(writes, history, 3, views.read_sku_value, limit=3) == 0


def test_the_values_waiting_for_the_sampler_are_bounded():
    from streams.api_history import StockWrites

    table = object()
    writes = StockWrites(table, max_pending=3)
    for i in range(10):
        writes.on_table_set(table, f"S{i}".encode(), b"v1")
    writes.on_table_set(table, b"S0", b"v2")  # a SKU already waiting keeps its newest value
    assert writes.pending == {b"S0": b"v2", b"S1": b"v1", b"S2": b"v1"} and writes.skipped == 7


def test_answers_of_older_workers_still_merge():
    """A rolling upgrade: an older worker's part has neither `complete` nor `resume_after` (it read
    everything), and a newer part's `total` stays an int for an older worker to add up."""
    new_part = views.local_ats_answer([sku_value("B", 1)], views.AtsQuery(), [1], read_to="B")
    assert isinstance(new_part["total"], int) and new_part["complete"] is False
    old_part = {"items": [views.list_item(sku_value("A", 1))], "total": 1, "partitions": [0]}
    merged = views.merge_ats_answers([old_part, new_part], 10)
    assert [item["sku"] for item in merged["items"]] == ["A", "B"] and merged["total"] is None
    assert merged["next_after"] == "B"
    assert views.merge_ats_answers([old_part], 10)["total"] == 1
