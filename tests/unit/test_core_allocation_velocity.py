"""Decayed sell-through rates and velocity-mode shares (floors, water-filling, hysteresis)."""

from __future__ import annotations

import math
import os
from dataclasses import replace

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stockstream.core.allocation import (
    AllocationMode,
    AllocationRules,
    AllocationState,
    ChannelRule,
    allocate,
    allocation_targets,
)
from stockstream.core.stock import DAY_MS
from stockstream.core.velocity import DecayedRate, half_life_for_window

from tests.unit.test_core_allocation import CHANNELS, check_bounds, oracle_reserves, oracle_velocity

DERANDOMIZE = not os.environ.get("STOCKSTREAM_HYPOTHESIS_RANDOM")
HEAVY = settings(max_examples=300, derandomize=DERANDOMIZE, deadline=None, suppress_health_check=[HealthCheck.too_slow])
HOUR_MS = 3600 * 1000


# --- DecayedRate --------------------------------------------------------------------------------


def test_a_sale_weighs_half_after_one_half_life():
    rate = DecayedRate(DAY_MS)
    rate.observe(4, 1000)
    assert rate.level_at(1000 + DAY_MS) == pytest.approx(2.0)
    assert rate.level_at(1000 + 3 * DAY_MS) == pytest.approx(0.5)
    assert rate.level_at(0) == 4.0  # no extrapolation backwards


def test_steady_sales_converge_to_their_rate():
    rate = DecayedRate(2 * DAY_MS)
    for hour in range(24 * 30):  # 3 units an hour for 30 days: 72 a day
        rate.observe(3, hour * HOUR_MS)
    assert rate.rate(30 * 24 * HOUR_MS) == pytest.approx(72, rel=0.03)
    # Switching the half-life keeps the estimate (from then on it decays at the new pace).
    last = rate.at_ms
    assert rate.with_half_life(DAY_MS).rate(last) == pytest.approx(rate.rate(last))


def test_cancellations_and_zeros_are_ignored():
    rate = DecayedRate(DAY_MS)
    rate.observe(0, 5)
    rate.observe(-3, 5)
    assert rate == DecayedRate(DAY_MS)
    with pytest.raises(ValueError):
        DecayedRate(0)


def test_half_life_for_window():
    assert half_life_for_window(DAY_MS) == round(DAY_MS * math.log(2))


@HEAVY
@given(
    sales=st.lists(st.tuples(st.integers(1, 20), st.integers(0, 10 * DAY_MS)), min_size=1, max_size=30),
    order=st.randoms(use_true_random=False),
    half_life=st.sampled_from([HOUR_MS, DAY_MS, 7 * DAY_MS]),
)
def test_arrival_order_does_not_matter(sales, order, half_life):
    in_order, shuffled = DecayedRate(half_life), DecayedRate(half_life)
    for units, at in sorted(sales, key=lambda s: s[1]):
        in_order.observe(units, at)
    mixed = list(sales)
    order.shuffle(mixed)
    for units, at in mixed:
        shuffled.observe(units, at)
    later = 11 * DAY_MS
    expected = sum(units * 0.5 ** ((later - at) / half_life) for units, at in sales)
    assert in_order.level_at(later) == pytest.approx(expected, rel=1e-9, abs=1e-300)
    assert shuffled.level_at(later) == pytest.approx(expected, rel=1e-9, abs=1e-300)
    assert DecayedRate.from_list(orjson.loads(orjson.dumps(shuffled.to_list()))) == shuffled


# --- velocity shares ----------------------------------------------------------------------------


@st.composite
def velocity_case(draw):
    names = draw(st.lists(st.sampled_from(CHANNELS), min_size=1, max_size=6, unique=True))
    rules = AllocationRules(
        1,
        "velocity",
        tuple(
            ChannelRule(
                name,
                weight=draw(st.integers(0, 4)),
                reserve=draw(st.sampled_from([0, 0, 0, 2, 20])),
                floor=draw(st.sampled_from([0, 0, 1, 3, 10, 0.05, 0.2, 0.5])),
            )
            for name in names
        ),
    )
    rates = {name: draw(st.one_of(st.just(0.0), st.floats(0.01, 1000))) for name in names if draw(st.booleans())}
    return rules, rates, draw(st.integers(-10, 400))


@HEAVY
@given(case=velocity_case())
def test_velocity_shares_follow_rates_above_floors(case):
    rules, rates, ats = case
    targets = allocation_targets(ats, rules, daily_rates=rates)
    check_bounds(targets, rules, ats, 0)
    taken, rest = oracle_reserves(max(ats, 0), rules)
    names = [r.channel for r in rules.channels]
    r = [rates.get(name, 0.0) for name in names]
    if not any(x > 0 for x in r):
        r = [float(rule.weight) for rule in rules.channels]  # nothing sold: weights stand in
    floors = [rule.floor_units(rest) for rule in rules.channels]
    shares = [targets[name] - t for name, t in zip(names, taken)]
    assert all(s >= 0 for s in shares)
    if sum(floors) >= rest:  # floors alone exhaust the rest: split in their proportion
        assert sum(shares) == rest and all(s <= f for s, f in zip(shares, floors))
        return
    assert all(s >= f for s, f in zip(shares, floors))  # a floor is a minimum share
    ideal = oracle_velocity(rest, r, floors)
    if any(x > 0 for x in r):
        assert sum(shares) == rest  # the rest is handed out in full
        assert all(abs(s - x) < 1 + 1e-6 for s, x in zip(shares, ideal))
    else:
        assert shares == floors


def test_velocity_floor_as_units_and_fraction():
    rules = AllocationRules(
        1, "velocity", (ChannelRule("tmall:a"), ChannelRule("jd:b", floor=5), ChannelRule("pdd:c", floor=0.25))
    )
    # pdd and jd never sold: floors of 25 (a quarter of 100) and 5 units; tmall gets the rest.
    assert allocation_targets(100, rules, daily_rates={"tmall:a": 30.0}) == {"tmall:a": 70, "jd:b": 5, "pdd:c": 25}
    # jd sells 1 for tmall's 3: its proportional share (75 x 1/4 = 18.75) is above its floor.
    assert allocation_targets(100, rules, daily_rates={"tmall:a": 30.0, "jd:b": 10.0}) == {"tmall:a": 56, "jd:b": 19, "pdd:c": 25}
    # Nothing sold anywhere: weights (1:1:1) stand in, floors still hold.
    assert allocation_targets(30, rules, daily_rates={}) == {"tmall:a": 10, "jd:b": 10, "pdd:c": 10}
    heavy = replace(rules, channels=(ChannelRule("tmall:a", weight=8), ChannelRule("jd:b", floor=5), ChannelRule("pdd:c", floor=0.25)))
    assert allocation_targets(40, heavy, daily_rates={}) == {"tmall:a": 25, "jd:b": 5, "pdd:c": 10}
    # Floors beyond the stock: the stock is split in proportion to the floors.
    crowded = AllocationRules(1, "velocity", (ChannelRule("tmall:a", floor=12), ChannelRule("jd:b", floor=4)))
    assert allocation_targets(8, crowded, daily_rates={"tmall:a": 1.0}) == {"tmall:a": 6, "jd:b": 2}


def _alternate_sales(rules, hours: int, state=None, version: int = 0, now: int = 0):
    """Both channels sell one unit every other hour, taking turns; ATS stays 100."""
    state = state or AllocationState("S")
    publications = 0
    for step in range(hours):
        version += 1
        now += HOUR_MS
        channel = "tmall:a" if step % 2 else "jd:b"
        state, changes = allocate(state, 100, version, rules, now, sales_by_channel={channel: 1})
        publications += len(changes)
        check_bounds(state.quantities, rules, 100, 0)
    return state, version, now, publications


def test_velocity_follows_sales_and_hysteresis_stops_flapping():
    channels = (ChannelRule("tmall:a", floor=2), ChannelRule("jd:b", floor=2))
    calm = AllocationRules(1, "velocity", channels, hysteresis_fraction=0.1, velocity_half_life_ms=DAY_MS)
    jumpy = replace(calm, hysteresis_fraction=0.0)
    # Warm up two days (the first sales swing the estimate: that is what floors are for) ...
    state, version, now, _ = _alternate_sales(calm, 48)
    state_jumpy, _, _, _ = _alternate_sales(jumpy, 48)
    # ... then both sell alike: targets wobble around 50/50 by a unit or two.
    state, version, now, publications = _alternate_sales(calm, 60, state, version, now)
    _, _, _, jumpy_publications = _alternate_sales(jumpy, 60, state_jumpy, version, now)
    assert publications == 0 and jumpy_publications >= 60
    assert 45 <= state.quantities["tmall:a"] <= 55 and sum(state.quantities.values()) <= 100
    # tmall takes over: shares move beyond the tolerance and follow.
    for _ in range(24):
        version += 1
        now += HOUR_MS
        state, changes = allocate(state, 100, version, calm, now, sales_by_channel={"tmall:a": 5})
        check_bounds(state.quantities, calm, 100, 0)
    assert state.quantities["tmall:a"] > 75 and state.quantities["jd:b"] >= 2


def test_velocity_rates_survive_a_half_life_change():
    rules = AllocationRules(1, "velocity", (ChannelRule("tmall:a"), ChannelRule("jd:b")), velocity_half_life_ms=DAY_MS)
    state, _ = allocate(AllocationState("S"), 100, 1, rules, 0, sales_by_channel={"tmall:a": 30, "jd:b": 10})
    before = state.daily_rates(0)
    longer = AllocationRules(2, "velocity", rules.channels, velocity_half_life_ms=7 * DAY_MS)
    state, _ = allocate(state, 100, 2, longer, 0)
    assert state.daily_rates(0) == pytest.approx(before)
    assert all(rate.half_life_ms == 7 * DAY_MS for rate in state.rates.values())
    assert state.quantities == {"tmall:a": 75, "jd:b": 25}


def test_velocity_presale_pool_follows_presale_rates():
    channels = (ChannelRule("tmall:a", presale=True), ChannelRule("jd:b", presale=True), ChannelRule("pdd:c"))
    rules = AllocationRules(1, AllocationMode.VELOCITY, channels)
    rates = {"tmall:a": 3.0, "jd:b": 1.0, "pdd:c": 100.0}
    assert allocation_targets(-2, rules, daily_rates=rates, presale_allowance=10) == {"tmall:a": 6, "jd:b": 2, "pdd:c": 0}
