"""Allocation: targets per mode against simple oracles, the no-oversell bounds, change emission
(versions, replays, hysteresis), bundles, signals, serialization."""

from __future__ import annotations

import itertools
import math
import os
from fractions import Fraction
from dataclasses import replace
from typing import Optional

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stockstream.core.allocation import (
    AllocationChangeIntent,
    AllocationMode,
    AllocationRules,
    AllocationState,
    ChannelRule,
    allocate,
    allocation_targets,
    bundle_allocation,
    largest_remainder,
    merge_rules,
    publish,
    reallocation_signal,
    replenishment_signal,
)
from stockstream.core.stock import DAY_MS

DERANDOMIZE = not os.environ.get("STOCKSTREAM_HYPOTHESIS_RANDOM")
HEAVY = settings(max_examples=300, derandomize=DERANDOMIZE, deadline=None, suppress_health_check=[HealthCheck.too_slow])
LIGHT = settings(max_examples=150, derandomize=DERANDOMIZE, deadline=None, suppress_health_check=[HealthCheck.too_slow])

CHANNELS = ("tmall:flagship", "jd:10086001", "pdd:777", "douyin:42", "tmall:outlet", "jd:2")
MODES = list(AllocationMode)
HOUR_MS = 3600 * 1000


# --- generation ---------------------------------------------------------------------------------


@st.composite
def channel_rules(draw, name: str, plain: bool = False, integer_weights: bool = False) -> ChannelRule:
    """`plain`: no buffer, cap, min_to_list or presale (the rules under which split is exact)."""
    if integer_weights:
        weight = draw(st.sampled_from([0, 1, 1, 2, 3, 5]))
    else:
        weight = draw(st.sampled_from([0, 1, 1, 2, 3, 5, 0.1, 0.29, 1 / 3, 2.5, 1e-9]))
    fields = dict(
        weight=weight,
        percentage=draw(st.sampled_from([0, 0.1, 0.25, 0.29, 0.5, 0.7, 1 / 3, 0.999, 1.0, 1.0])),
        reserve=draw(st.sampled_from([0, 0, 0, 1, 3, 10, 40])),
        floor=draw(st.sampled_from([0, 0, 1, 2, 5, 0.05, 0.1, 0.3])),
    )
    if not plain:
        fields.update(
            buffer=draw(st.sampled_from([0, 0, 1, 3])),
            max_quantity=draw(st.sampled_from([None, None, 0, 5, 30])),
            min_to_list=draw(st.sampled_from([0, 0, 1, 4])),
            presale=draw(st.booleans()),
        )
    return ChannelRule(name, **fields)


@st.composite
def rule_sets(
    draw, mode: Optional[AllocationMode] = None, version: int = 1, plain: bool = False, integer_weights: bool = False
) -> AllocationRules:
    names = draw(st.permutations(CHANNELS))[: draw(st.integers(1, len(CHANNELS)))]
    return AllocationRules(
        version=version,
        mode=draw(st.sampled_from(MODES)) if mode is None else mode,
        channels=tuple(draw(channel_rules(name, plain, integer_weights)) for name in names),
        hysteresis_units=draw(st.sampled_from([0, 0, 1, 3])),
        hysteresis_fraction=draw(st.sampled_from([0.0, 0.0, 0.05, 0.2])),
        velocity_half_life_ms=draw(st.sampled_from([HOUR_MS, DAY_MS, 3 * DAY_MS])),
    )


rates_by_channel = st.dictionaries(st.sampled_from(CHANNELS), st.one_of(st.just(0.0), st.floats(0.001, 500)), max_size=len(CHANNELS))


@st.composite
def ats_and_allowance(draw) -> tuple[int, int]:
    allowance = draw(st.sampled_from([0, 0, 0, 5, 20]))
    ats = draw(st.integers(-30, 300))
    return max(ats, -allowance), allowance  # stock.ats never goes below -allowance


# --- oracles ------------------------------------------------------------------------------------


def oracle_largest_remainder(total: int, names: list[str], weights: list[int]) -> list[int]:
    """Exact quotas; of all ways to round `left` of them up, the one whose rounded-up set is first
    when each set is listed by (remainder descending, name)."""
    weight_sum = sum(weights)
    if total <= 0 or weight_sum <= 0:
        return [0] * len(weights)
    quotas = [Fraction(total * w, weight_sum) for w in weights]
    floors = [math.floor(q) for q in quotas]
    left = total - sum(floors)
    key = {i: (-(quotas[i] - floors[i]), names[i]) for i in range(len(weights))}
    best = min(itertools.combinations(range(len(weights)), left), key=lambda up: sorted(key[i] for i in up))
    return [floors[i] + (i in best) for i in range(len(weights))]


def oracle_reserves(stock: int, rules: AllocationRules) -> tuple[list[int], int]:
    taken, rest = [], stock
    for rule in rules.channels:
        t = min(rule.reserve, rest)
        taken.append(t)
        rest -= t
    return taken, rest


def oracle_velocity(rest: int, rates: list[float], floors: list[int]) -> list[float]:
    """max(floor, lambda x rate) summing to `rest`, lambda by bisection."""
    if sum(floors) >= rest or not any(r > 0 for r in rates):
        return [float(f) for f in floors]
    lo, hi = 0.0, rest / min(r for r in rates if r > 0) + 1
    for _ in range(200):
        mid = (lo + hi) / 2
        if sum(max(f, mid * r) for f, r in zip(floors, rates)) < rest:
            lo = mid
        else:
            hi = mid
    return [max(f, hi * r) for f, r in zip(floors, rates)]


def check_bounds(quantities: dict[str, int], rules: AllocationRules, ats: int, allowance: int) -> None:
    """The no-oversell invariants for what is published."""
    stock = max(ats, 0)
    with_presale = max(ats + allowance, 0)
    assert all(q >= 0 for q in quantities.values())
    presale = {rule.channel for rule in rules.channels if rule.presale}
    if rules.mode is AllocationMode.SHARED:
        for rule in rules.channels:
            pool = with_presale if rule.presale else stock
            assert quantities.get(rule.channel, 0) <= max(pool - rule.buffer, 0), rule
        assert all(q == 0 for ch, q in quantities.items() if rules.channel(ch) is None)
    else:
        assert sum(quantities.values()) <= with_presale
        assert sum(q for ch, q in quantities.items() if ch not in presale) <= stock


# --- targets: bounds and determinism ------------------------------------------------------------


@HEAVY
@given(rules=rule_sets(), pools=ats_and_allowance(), rates=rates_by_channel)
def test_targets_never_oversell(rules, pools, rates):
    ats, allowance = pools
    targets = allocation_targets(ats, rules, daily_rates=rates, presale_allowance=allowance)
    assert list(targets) == [rule.channel for rule in rules.channels]
    check_bounds(targets, rules, ats, allowance)
    for rule in rules.channels:
        q = targets[rule.channel]
        assert q == 0 or q >= rule.min_to_list
        assert rule.max_quantity is None or q <= rule.max_quantity
    if ats <= 0:  # nothing in stock: only presale channels may list
        assert all(targets[r.channel] == 0 for r in rules.channels if not r.presale)
    # Deterministic: again, and from rules that went through serialization.
    again = AllocationRules.from_dict(orjson.loads(orjson.dumps(rules.to_dict())))
    assert again == rules
    assert allocation_targets(ats, again, daily_rates=dict(rates), presale_allowance=allowance) == targets


@HEAVY
@given(rules=rule_sets(AllocationMode.SHARED), pools=ats_and_allowance(), percentage=st.floats(0, 1))
def test_shared_is_floor_of_percentage_minus_buffer(rules, pools, percentage):
    ats, allowance = pools
    rules = replace(rules, channels=(replace(rules.channels[0], percentage=percentage), *rules.channels[1:]))
    targets = allocation_targets(ats, rules, presale_allowance=allowance)
    for rule in rules.channels:
        pool = max(ats + allowance, 0) if rule.presale else max(ats, 0)
        q = math.floor(pool * Fraction(repr(rule.percentage))) - rule.buffer
        if rule.max_quantity is not None:
            q = min(q, rule.max_quantity)
        assert targets[rule.channel] == (q if q >= max(rule.min_to_list, 1) else 0)


def test_shared_percentage_is_read_as_written():
    channels = (ChannelRule("tmall:a", percentage=0.29), ChannelRule("jd:b", percentage=0.5, buffer=2, min_to_list=10))
    rules = AllocationRules(1, "shared", channels)
    assert allocation_targets(100, rules) == {"tmall:a": 29, "jd:b": 48}  # 100 x 0.29 is 28.999... in floats
    assert allocation_targets(23, rules) == {"tmall:a": 6, "jd:b": 0}  # 11 - 2 = 9 < min_to_list


# --- split --------------------------------------------------------------------------------------


@HEAVY
@given(total=st.integers(-5, 500), weights=st.lists(st.integers(0, 9), min_size=1, max_size=6))
def test_largest_remainder_matches_brute_force(total, weights):
    names = list(CHANNELS[: len(weights)])
    got = largest_remainder(total, names, weights)
    assert got == oracle_largest_remainder(total, names, weights)
    if total > 0 and sum(weights) > 0:
        assert sum(got) == total
        assert all(abs(g - Fraction(total * w, sum(weights))) < 1 for g, w in zip(got, weights))
    assert all(g == 0 for g, w in zip(got, weights) if w == 0)


@HEAVY
@given(rules=rule_sets(AllocationMode.SPLIT, plain=True, integer_weights=True), ats=st.integers(-30, 300))
def test_split_is_reserves_then_largest_remainder(rules, ats):
    targets = allocation_targets(ats, rules)
    taken, rest = oracle_reserves(max(ats, 0), rules)
    names = [rule.channel for rule in rules.channels]
    expected = oracle_largest_remainder(rest, names, [rule.weight for rule in rules.channels])
    assert list(targets.values()) == [t + e for t, e in zip(taken, expected)]
    if any(rule.weight > 0 for rule in rules.channels):
        assert sum(targets.values()) == max(ats, 0)  # nothing left over
    else:
        assert sum(targets.values()) == sum(taken)


@HEAVY
@given(rules=rule_sets(AllocationMode.SPLIT, plain=True), ats=st.integers(0, 300))
def test_split_with_float_weights_hands_out_everything(rules, ats):
    targets = allocation_targets(ats, rules)
    taken, rest = oracle_reserves(ats, rules)
    weight_sum = sum(rule.weight for rule in rules.channels)
    if weight_sum > 0 and max(rule.weight for rule in rules.channels) > 0:
        assert sum(targets.values()) == ats
        for t, rule in zip(taken, rules.channels):
            assert abs(targets[rule.channel] - t - rest * rule.weight / weight_sum) < 1 + 1e-6


def test_split_reserves_come_off_the_top_in_rule_order():
    rules = AllocationRules(
        3, "split", (ChannelRule("tmall:flagship", weight=0, reserve=8), ChannelRule("jd:1", reserve=5), ChannelRule("pdd:1", weight=1))
    )
    assert allocation_targets(30, rules) == {"tmall:flagship": 8, "jd:1": 5 + 9, "pdd:1": 8}  # 17 split 1:1, tie to jd:1
    assert allocation_targets(10, rules) == {"tmall:flagship": 8, "jd:1": 2 + 0, "pdd:1": 0}  # reserves capped by ATS
    assert allocation_targets(-4, rules) == {"tmall:flagship": 0, "jd:1": 0, "pdd:1": 0}


def test_split_ties_go_to_the_smaller_channel_name():
    rules = AllocationRules(1, "split", tuple(ChannelRule(name) for name in ("pdd:1", "jd:1", "tmall:1")))
    assert allocation_targets(4, rules) == {"pdd:1": 1, "jd:1": 2, "tmall:1": 1}
    assert allocation_targets(5, rules) == {"pdd:1": 2, "jd:1": 2, "tmall:1": 1}


# --- presale ------------------------------------------------------------------------------------


def test_presale_channels_list_the_unused_allowance():
    rules = AllocationRules(1, "split", (ChannelRule("tmall:a", presale=True), ChannelRule("jd:b")))
    assert allocation_targets(-3, rules, presale_allowance=10) == {"tmall:a": 7, "jd:b": 0}
    assert allocation_targets(-10, rules, presale_allowance=10) == {"tmall:a": 0, "jd:b": 0}
    assert allocation_targets(6, rules, presale_allowance=10) == {"tmall:a": 3 + 10, "jd:b": 3}
    assert allocation_targets(-3, rules) == {"tmall:a": 0, "jd:b": 0}  # no allowance: nothing
    shared = AllocationRules(1, "shared", (ChannelRule("tmall:a", presale=True, buffer=1), ChannelRule("jd:b")))
    assert allocation_targets(-3, shared, presale_allowance=10) == {"tmall:a": 6, "jd:b": 0}
    assert allocation_targets(4, shared, presale_allowance=10) == {"tmall:a": 13, "jd:b": 4}


@HEAVY
@given(
    rules=rule_sets(AllocationMode.SPLIT, plain=True, integer_weights=True),
    pools=ats_and_allowance(),
    presale=st.sets(st.sampled_from(CHANNELS)),
)
def test_split_presale_pool_goes_to_presale_channels_by_weight(rules, pools, presale):
    ats, allowance = pools
    rules = replace(rules, channels=tuple(replace(r, presale=r.channel in presale) for r in rules.channels))
    without = allocation_targets(ats, rules)
    got = allocation_targets(ats, rules, presale_allowance=allowance)
    pool = max(ats + allowance, 0) - max(ats, 0)
    names = [r.channel for r in rules.channels]
    extra = oracle_largest_remainder(pool, names, [r.weight if r.presale else 0 for r in rules.channels])
    assert list(got.values()) == [w + e for w, e in zip(without.values(), extra)]


# --- allocate: versions, replays, hysteresis ------------------------------------------------------


@st.composite
def histories(draw, mode: Optional[AllocationMode] = None):
    """Steps of (ats, ats_version, rules, now_ms, sales, allowance), some of them replays of an
    earlier step (at-least-once delivery) and some switching to another rule set (new version),
    possibly with channels dropped."""
    pool = [draw(rule_sets(mode)) for _ in range(draw(st.integers(1, 3)))]
    rules = pool[0]
    ats_version, now, ats, steps = 0, 0, draw(st.integers(0, 150)), []
    for _ in range(draw(st.integers(1, 20))):
        kind = draw(st.sampled_from("aaaaarp"))
        if kind == "p" and steps:
            steps.append(steps[draw(st.integers(0, len(steps) - 1))])
            continue
        if kind == "r":
            base = pool[draw(st.integers(0, len(pool) - 1))]
            rules = replace(base, version=rules.version + 1, channels=base.channels[: draw(st.integers(0, len(base.channels)))])
        else:
            ats_version += draw(st.integers(1, 3))
        now += draw(st.sampled_from([0, 1000, HOUR_MS, 6 * HOUR_MS, DAY_MS]))
        allowance = draw(st.sampled_from([0, 0, 5]))
        # Mostly small moves (orders, receipts: where hysteresis matters), sometimes a jump.
        step = draw(st.integers(-12, 12))
        ats = max(draw(st.integers(-10, 150)) if step == 12 else ats + step, -allowance)
        sales = {draw(st.sampled_from(CHANNELS)): draw(st.integers(0, 8))}
        steps.append((ats, ats_version, rules, now, sales, allowance))
    return steps


def run(steps, state: Optional[AllocationState] = None, restore_every: int = 0):
    state = state or AllocationState("SKU-1")
    emitted = []
    for i, (ats, ats_version, rules, now, sales, allowance) in enumerate(steps):
        state, changes = allocate(state, ats, ats_version, rules, now, sales_by_channel=sales, presale_allowance=allowance)
        emitted.append(changes)
        if restore_every and i % restore_every == 0:
            state = AllocationState.from_dict(orjson.loads(orjson.dumps(state.to_dict())))
    return state, emitted


@HEAVY
@given(steps=histories())
def test_allocate_never_oversells_and_versions_increase(steps):
    state = AllocationState("SKU-1")
    last_applied: Optional[tuple[int, int]] = None
    for ats, ats_version, rules, now, sales, allowance in steps:
        before = state.to_dict()
        published_before = dict(state.quantities)
        versions_before = dict(state.versions)
        state, changes = allocate(state, ats, ats_version, rules, now, sales_by_channel=sales, presale_allowance=allowance)

        if last_applied is not None and (ats_version, rules.version) <= last_applied:
            assert changes == [] and state.to_dict() == before  # a replay changes nothing, sales included
            continue
        last_applied = (ats_version, rules.version)

        # Every published quantity respects the bounds of the ATS it was computed from: hysteresis
        # never oversells. Channels that left the rules are delisted.
        check_bounds(state.quantities, rules, ats, allowance)
        assert set(state.quantities) == set(published_before) | {r.channel for r in rules.channels}

        # Changes: exactly the channels whose quantity changed (or that were never published),
        # each one version above the previous, with the previous quantity.
        changed = {c.channel: c for c in changes}
        assert len(changed) == len(changes)
        for channel, quantity in state.quantities.items():
            if channel not in published_before or published_before[channel] != quantity:
                c = changed[channel]
                assert (c.quantity, c.previous_quantity) == (quantity, published_before.get(channel, 0))
                assert c.version == versions_before.get(channel, 0) + 1
                assert (c.ats, c.ats_version, c.rule_version, c.mode) == (ats, ats_version, rules.version, rules.mode.value)
                assert c.computed_at_ms == now
            else:
                assert channel not in changed
                assert state.versions[channel] == versions_before[channel]

        # Against the targets: equal without hysteresis, within the tolerance with it.
        rates = state.daily_rates(now) if rules.mode is AllocationMode.VELOCITY else None
        targets = allocation_targets(ats, rules, daily_rates=rates, presale_allowance=allowance)
        for rule in rules.channels:
            got, target = state.quantities[rule.channel], targets[rule.channel]
            if got != target:
                current = published_before.get(rule.channel)
                assert rules.hysteresis_units or rules.hysteresis_fraction
                assert got == current and got > 0 and target > 0  # held, never listed or delisted by holding
                assert abs(target - got) <= max(rules.hysteresis_units, rules.hysteresis_fraction * got)


@LIGHT
@given(steps=histories())
def test_allocate_is_deterministic_idempotent_and_survives_serialization(steps):
    """Each step delivered twice, the state through orjson after every step: the same changes as
    one delivery with the state in memory, none from the second deliveries, the same state."""
    state_once, emitted_once = run(steps)
    state_twice, emitted_twice = run([step for step in steps for _ in range(2)], restore_every=1)
    assert emitted_twice[1::2] == [[] for _ in steps]
    assert emitted_twice[0::2] == emitted_once
    assert state_twice.to_dict() == state_once.to_dict()


def test_first_allocation_publishes_every_channel_even_zero():
    rules = AllocationRules(1, "split", (ChannelRule("tmall:a", reserve=5), ChannelRule("jd:b", weight=0)))
    state, changes = allocate(AllocationState("S"), 3, 1, rules, 0)
    assert [(c.channel, c.quantity, c.previous_quantity, c.version) for c in changes] == [("tmall:a", 3, 0, 1), ("jd:b", 0, 0, 1)]
    state, changes = allocate(state, 4, 2, rules, 0)
    assert [(c.channel, c.quantity, c.previous_quantity, c.version) for c in changes] == [("tmall:a", 4, 3, 2)]


def test_channel_dropped_from_rules_is_delisted_and_keeps_its_version():
    both = AllocationRules(1, "shared", (ChannelRule("tmall:a"), ChannelRule("jd:b")))
    state, _ = allocate(AllocationState("S"), 10, 1, both, 0)
    state, changes = allocate(state, 10, 1, AllocationRules(2, "shared", (ChannelRule("tmall:a"),)), 0)  # same ATS, newer rules
    assert [(c.channel, c.quantity, c.version) for c in changes] == [("jd:b", 0, 2)]
    state, changes = allocate(state, 10, 2, both.__class__(3, "shared", both.channels), 0)
    assert [(c.channel, c.quantity, c.version) for c in changes] == [("jd:b", 10, 3)]


def test_older_ats_is_ignored_even_with_newer_rules():
    rules = AllocationRules(1, "shared", (ChannelRule("tmall:a"),))
    state, _ = allocate(AllocationState("S"), 10, 5, rules, 0)
    assert allocate(state, 50, 4, AllocationRules(2, "shared", rules.channels), 0)[1] == []
    state, changes = allocate(state, 7, 6, rules, 0)  # newer ATS with older rules still applies: it is the safe side
    assert [c.quantity for c in changes] == [7]


def test_hysteresis_holds_small_moves_but_never_oversells():
    rules = AllocationRules(1, "split", (ChannelRule("tmall:a"), ChannelRule("jd:b")), hysteresis_units=3)
    state, _ = allocate(AllocationState("S"), 100, 1, rules, 0)
    assert state.quantities == {"tmall:a": 50, "jd:b": 50}
    state, changes = allocate(state, 104, 2, rules, 0)  # targets 52/52: within 3, held
    assert changes == [] and state.quantities == {"tmall:a": 50, "jd:b": 50}
    state, changes = allocate(state, 99, 3, rules, 0)  # held 100 > 99: decreases go out at once
    assert state.quantities == {"tmall:a": 49, "jd:b": 50} and [c.channel for c in changes] == ["tmall:a"]  # tie: jd:b
    state, changes = allocate(state, 112, 4, rules, 0)  # targets 56/56: both move by more than 3
    assert state.quantities == {"tmall:a": 56, "jd:b": 56}
    state, changes = allocate(state, 2, 5, rules, 0)
    assert state.quantities == {"tmall:a": 1, "jd:b": 1}
    state, changes = allocate(state, 0, 6, rules, 0)  # delisting is never held
    assert state.quantities == {"tmall:a": 0, "jd:b": 0}
    state, changes = allocate(state, 2, 7, rules, 0)  # nor is listing
    assert state.quantities == {"tmall:a": 1, "jd:b": 1}


def test_hysteresis_in_shared_mode_is_bounded_per_channel():
    rules = AllocationRules(1, "shared", (ChannelRule("tmall:a", buffer=2), ChannelRule("jd:b", percentage=0.5)), hysteresis_fraction=0.1)
    state, _ = allocate(AllocationState("S"), 100, 1, rules, 0)
    assert state.quantities == {"tmall:a": 98, "jd:b": 50}
    state, _ = allocate(state, 105, 2, rules, 0)  # 103 (+5, tolerance 9.8) held; 52 (+2, tolerance 5) held
    assert state.quantities == {"tmall:a": 98, "jd:b": 50}
    state, _ = allocate(state, 98, 3, rules, 0)  # 98 > 98 - 2: over the channel's bound, published at once
    assert state.quantities == {"tmall:a": 96, "jd:b": 50}


def test_rule_change_bypasses_hysteresis():
    rules = AllocationRules(1, "split", (ChannelRule("tmall:a"), ChannelRule("jd:b")), hysteresis_units=10)
    state, _ = allocate(AllocationState("S"), 100, 1, rules, 0)
    tweaked = AllocationRules(2, "split", (ChannelRule("tmall:a", weight=1.1), ChannelRule("jd:b")), hysteresis_units=10)
    state, changes = allocate(state, 100, 1, tweaked, 0)
    assert state.quantities == {"tmall:a": 52, "jd:b": 48} and len(changes) == 2


def test_publish_versions_bundle_quantities():
    components = {"A": {"tmall:a": 7, "jd:b": 3}, "B": {"tmall:a": 2}}
    quantities = bundle_allocation(components, [("A", 2), ("B", 1)])
    assert quantities == {"jd:b": 0, "tmall:a": 2}
    state, changes = publish(AllocationState("BUNDLE"), quantities, ats=2, ats_version=3, rule_version=1, mode="shared", now_ms=5)
    assert {(c.channel, c.quantity, c.version) for c in changes} == {("jd:b", 0, 1), ("tmall:a", 2, 1)}
    assert publish(state, quantities, ats=2, ats_version=3, rule_version=1, mode="shared", now_ms=6)[1] == []
    state, changes = publish(state, {"jd:b": 1}, ats=1, ats_version=4, rule_version=1, mode="shared", now_ms=7)
    assert [(c.channel, c.quantity, c.previous_quantity, c.version) for c in changes] == [("jd:b", 1, 0, 2), ("tmall:a", 0, 2, 2)]


# --- bundles ------------------------------------------------------------------------------------


@HEAVY
@given(
    allocations=st.dictionaries(
        st.sampled_from(["A", "B", "C"]), st.dictionaries(st.sampled_from(CHANNELS), st.integers(0, 60), max_size=4)
    ),
    components=st.lists(
        st.tuples(st.sampled_from(["A", "B", "C", "D"]), st.integers(1, 5)), min_size=1, max_size=3, unique_by=lambda c: c[0]
    ),
)
def test_bundle_allocation_is_the_most_that_fits_every_component(allocations, components):
    got = bundle_allocation(allocations, components)
    assert set(got) == {ch for sku, _ in components for ch in allocations.get(sku, {})}
    for channel, n in got.items():
        have = [allocations.get(sku, {}).get(channel, 0) for sku, _ in components]
        assert n >= 0
        assert all(n * units <= q for (_, units), q in zip(components, have))
        assert any((n + 1) * units > q for (_, units), q in zip(components, have))
    assert bundle_allocation(allocations, components) == got


def test_bundle_allocation_rejects_non_positive_units():
    with pytest.raises(ValueError):
        bundle_allocation({"A": {"t:1": 3}}, [("A", 0)])
    assert bundle_allocation({"A": {"t:1": 3}}, []) == {}


# --- rules --------------------------------------------------------------------------------------


def test_merge_rules_field_by_field():
    defaults = AllocationRules(
        4,
        "split",
        (ChannelRule("tmall:flagship", weight=3, reserve=10), ChannelRule("jd:1"), ChannelRule("pdd:1", buffer=2)),
        hysteresis_units=2,
    )
    overrides = {"version": 7, "mode": "velocity", "channels": [{"channel": "jd:1", "floor": 0.2}, {"channel": "douyin:9", "weight": 2}]}
    merged = merge_rules(defaults, overrides)
    assert merged.version == 11
    assert merged.mode is AllocationMode.VELOCITY and merged.hysteresis_units == 2
    assert [r.channel for r in merged.channels] == ["tmall:flagship", "jd:1", "pdd:1", "douyin:9"]
    assert merged.channel("tmall:flagship") == defaults.channel("tmall:flagship")
    assert merged.channel("jd:1") == ChannelRule("jd:1", floor=0.2)
    assert merged.channel("douyin:9") == ChannelRule("douyin:9", weight=2)
    assert merge_rules(defaults, None) is defaults
    assert AllocationRules.from_dict(merged.to_dict()) == merged


@pytest.mark.parametrize(
    "bad",
    [
        dict(weight=-1),
        dict(percentage=1.5),
        dict(buffer=-1),
        dict(max_quantity=-1),
        dict(floor=2.5),
        dict(floor=-0.1),
        dict(weight=float("nan")),
        dict(floor=float("inf")),
        dict(percentage=float("nan")),
    ],
)
def test_channel_rule_validation(bad):
    with pytest.raises(ValueError):
        ChannelRule("tmall:a", **bad)


def test_rules_validation():
    with pytest.raises(ValueError):
        AllocationRules(1, "split", (ChannelRule("a:1"), ChannelRule("a:1")))
    with pytest.raises(ValueError):
        AllocationRules(1, "auction")
    with pytest.raises(ValueError):
        merge_rules(None, {"version": 1, "hysteresis": 3})
    with pytest.raises(ValueError):
        ChannelRule.from_dict({"channel": "a:1", "wieght": 2})


# --- signals ------------------------------------------------------------------------------------


def test_reallocation_signal():
    quantities = {"tmall:a": 3, "jd:b": 100, "pdd:c": 40}
    rates = {"tmall:a": 12.0, "jd:b": 2.0, "pdd:c": 10.0}
    signal = reallocation_signal("S", quantities, rates, sellout_within_hours=24, donor_cover_days=7)
    assert signal is not None
    assert (signal.short_channel, signal.hours_to_sellout) == ("tmall:a", 6.0)
    assert (signal.donor_channel, signal.donor_days_of_cover) == ("jd:b", 50.0)
    assert signal.units == min(100 - 14, 84 - 3)
    assert reallocation_signal("S", quantities, rates, sellout_within_hours=5, donor_cover_days=7) is None
    assert reallocation_signal("S", quantities, rates, sellout_within_hours=24, donor_cover_days=60) is None
    idle = reallocation_signal("S", {"tmall:a": 0, "jd:b": 5}, {"tmall:a": 1.0}, sellout_within_hours=1, donor_cover_days=30)
    assert idle is not None and idle.donor_days_of_cover == math.inf and idle.units == 5


@LIGHT
@given(
    quantities=st.dictionaries(st.sampled_from(CHANNELS), st.integers(0, 200), min_size=1),
    rates=st.dictionaries(st.sampled_from(CHANNELS), st.floats(0, 50)),
    hours=st.sampled_from([1, 12, 48]),
    days=st.sampled_from([1, 7, 30]),
)
def test_reallocation_signal_fires_exactly_when_a_pair_qualifies(quantities, rates, hours, days):
    def sells_out(ch):
        r = rates.get(ch, 0.0)
        return r > 0 and quantities[ch] / r * 24 <= hours

    def has_cover(ch):
        r = rates.get(ch, 0.0)
        cover = quantities[ch] / r if r > 0 else (math.inf if quantities[ch] else 0)
        return cover > days and quantities[ch] - math.ceil(days * r) >= 1

    shorts = [ch for ch in quantities if sells_out(ch)]
    signal = reallocation_signal("S", quantities, rates, sellout_within_hours=hours, donor_cover_days=days)
    if not shorts:
        assert signal is None
        return
    soonest = min(shorts, key=lambda ch: (quantities[ch] / rates[ch], ch))
    donors = [ch for ch in quantities if ch != soonest and has_cover(ch)]
    assert (signal is None) == (not donors)
    if signal is not None:
        assert signal.short_channel == soonest and signal.donor_channel in donors and signal.units >= 1


@LIGHT
@given(ats=st.integers(-20, 500), rate=st.floats(0, 100), lead=st.integers(0, 30), safety=st.integers(0, 14))
def test_replenishment_signal(ats, rate, lead, safety):
    signal = replenishment_signal("S", ats, rate, lead_time_days=lead, safety_days=safety)
    if rate <= 0 or ats / rate >= lead + safety:
        assert signal is None
    else:
        assert signal is not None and signal.days_of_cover < signal.threshold_days == lead + safety
        assert (ats + signal.units) / rate >= lead + safety - 1e-9


# --- serialization ------------------------------------------------------------------------------


def test_state_roundtrip_is_compact():
    rules = AllocationRules(1, "velocity", (ChannelRule("tmall:a"), ChannelRule("jd:b")))
    state, _ = allocate(AllocationState("S"), 10, 1, rules, 1000, sales_by_channel={"jd:b": 2})
    data = orjson.loads(orjson.dumps(state.to_dict()))
    assert set(data) == {"k", "q", "n", "s", "a"}
    assert AllocationState.from_dict(data) == state
    assert AllocationState.from_dict(AllocationState("E").to_dict()) == AllocationState("E")
    assert isinstance(allocate(state, 11, 2, rules, 2000)[1][0], AllocationChangeIntent)


def test_a_channel_whose_orders_moved_its_listing_is_published_again():
    """Split 10 -> 5/5; a sale of 1 on jd (the marketplace now shows 4) leaves jd's share at 5
    (ATS 9: the tie goes to the smaller name): jd is published again so that its listing shows 5."""
    rules = AllocationRules(1, "split", (ChannelRule("tmall:a"), ChannelRule("jd:b")))
    state, _ = allocate(AllocationState("S"), 10, 1, rules, 0)
    assert state.quantities == {"tmall:a": 5, "jd:b": 5}
    state, changes = allocate(state, 9, 2, rules, 0, sales_by_channel={"jd:b": 1}, republish=["jd:b"])
    assert [(c.channel, c.quantity, c.previous_quantity, c.version) for c in changes] == [("tmall:a", 4, 5, 2), ("jd:b", 5, 5, 2)]
    # A replay re-publishes nothing; a channel never published has nothing of ours to correct.
    assert allocate(state, 9, 2, rules, 0, republish=["jd:b"])[1] == []
    assert allocate(state, 9, 3, rules, 0, republish=["pdd:never"])[1] == []
