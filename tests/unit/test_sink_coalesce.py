"""The sink's pure core: version ordering, coalescing, bundles, commit positions."""

from __future__ import annotations

from hypothesis import given, settings as hsettings, strategies as st

from sinks.coalesce import Allocation, SinkState, Verdict
from sinks.listings import Listing
from sinks.offsets import OffsetTracker
from sinks.targets import TargetIndex

CH = "jd:shop1"
BUNDLE = {"GIFT-1": (("SKU-1", 1), ("SKU-2", 2))}


def listing(sku_id: str, code: str, channel: str = CH) -> Listing:
    platform, shop = channel.split(":")
    return Listing(platform, shop, "L1", sku_id, code)


def resolve(l: Listing):
    return BUNDLE.get(l.merchant_code) or ((l.merchant_code, 1),)


def make_state(listings=None) -> SinkState:
    listings = listings or [listing("p1", "SKU-1"), listing("p2", "SKU-2"), listing("pg", "GIFT-1")]
    return SinkState(TargetIndex(listings, resolve), lambda ch: ch.startswith("jd:"), OffsetTracker())


def alloc(sku: str, version: int, quantity: int, channel: str = CH, at: int = 1000) -> Allocation:
    return Allocation(sku, channel, quantity, version, at + version)


def take_all(state: SinkState) -> dict:
    return {p.key[1]: p for p in state.take(CH, 100, now=0.0)}


def test_newer_versions_apply_duplicates_and_older_are_stale():
    state = make_state()
    assert state.apply(alloc("SKU-1", 2, 20), (0, 0)) is Verdict.APPLIED
    assert state.apply(alloc("SKU-1", 2, 20), (0, 1)) is Verdict.STALE
    assert state.apply(alloc("SKU-1", 1, 10), (0, 2)) is Verdict.STALE
    assert state.allocations[("SKU-1", CH)].quantity == 20


def test_channels_not_served_and_unlisted_skus():
    state = make_state()
    assert state.apply(alloc("SKU-1", 1, 5, channel="tmall:x"), (0, 0)) is Verdict.ELSEWHERE
    assert state.apply(alloc("SKU-9", 1, 5), (0, 1)) is Verdict.UNLISTED
    assert state.tracker.unsettled() == 0


def test_coalesces_to_one_push_with_the_latest_quantity():
    state = make_state([listing("p1", "SKU-1")])
    for v in (1, 2, 3):
        state.apply(alloc("SKU-1", v, v * 10), (0, v))
    (push,) = state.take(CH, 10, now=0.0)
    assert push.quantity == 30 and push.positions == ((0, 1), (0, 2), (0, 3))
    assert state.tracker.committable() == {}  # nothing marked consumed in this test
    state.written(push)
    assert state.tracker.unsettled() == 0 and state.pushed[push.key] == 30


def test_a_newer_version_during_a_push_is_pushed_after_it():
    state = make_state([listing("p1", "SKU-1")])
    state.apply(alloc("SKU-1", 1, 10), (0, 0))
    (first,) = state.take(CH, 10, now=0.0)
    state.apply(alloc("SKU-1", 2, 20), (0, 1))
    assert state.take(CH, 10, now=0.0) == []  # one push per listing in flight
    state.written(first)
    (second,) = state.take(CH, 10, now=0.0)
    assert (first.quantity, second.quantity) == (10, 20)


def test_unchanged_quantity_settles_without_a_call_but_retry_forces_it():
    state = make_state([listing("p1", "SKU-1")])
    state.apply(alloc("SKU-1", 1, 10), (0, 0))
    state.written(state.take(CH, 10, 0.0)[0])
    state.apply(alloc("SKU-1", 2, 10), (0, 1))  # new version, same quantity
    assert state.take(CH, 10, 0.0) == [] and state.tracker.unsettled() == 0
    assert state.apply(alloc("SKU-1", 2, 10), (0, 2), retry=True) is Verdict.RETRY
    (forced,) = state.take(CH, 10, 0.0)
    assert forced.force and forced.quantity == 10
    assert state.apply(alloc("SKU-1", 1, 10), (0, 3), retry=True) is Verdict.STALE  # an older retry


def test_bundle_quantity_follows_its_components():
    state = make_state()
    state.apply(alloc("SKU-1", 1, 7), (0, 0))
    state.apply(alloc("SKU-2", 1, 9), (1, 0))
    pushes = take_all(state)
    assert pushes["pg"].quantity == 4  # min(7 // 1, 9 // 2)
    assert {a.sku for a in pushes["pg"].allocations} == {"SKU-1", "SKU-2"}
    assert pushes["pg"].positions == ((0, 0), (1, 0))
    for p in pushes.values():
        state.written(p)
    state.apply(alloc("SKU-2", 2, 3), (1, 1))
    pushes = take_all(state)
    assert pushes["pg"].quantity == 1 and set(pushes) == {"p2", "pg"}


def test_throttled_push_is_requeued_with_its_positions_and_a_delay():
    state = make_state([listing("p1", "SKU-1")])
    state.apply(alloc("SKU-1", 1, 10), (0, 0))
    (push,) = state.take(CH, 10, now=0.0)
    state.again(push, 2.0, now=0.0, failed=False)
    assert state.take(CH, 10, now=1.0) == []
    state.apply(alloc("SKU-1", 2, 20), (0, 1))
    (later,) = state.take(CH, 10, now=2.5)
    assert later.quantity == 20 and later.positions == ((0, 0), (0, 1)) and later.attempts == 0
    state.again(later, 0.5, now=2.5, failed=True)
    assert state.take(CH, 10, now=3.1)[0].attempts == 1


def test_warm_up_rebuilds_memory_without_pushing():
    state = make_state()
    state.apply(alloc("SKU-1", 1, 7), live=False)
    state.apply(alloc("SKU-2", 1, 9), live=False)
    assert state.take(CH, 10, 0.0) == [] and state.pushed[(CH, "pg")] == 4
    state.apply(alloc("SKU-1", 1, 7), (0, 5))  # a replay of a warm version
    assert state.take(CH, 10, 0.0) == []


def test_catalog_change_makes_changed_listings_due():
    state = make_state([listing("p1", "SKU-1"), listing("pg", "GIFT-1")])
    state.apply(alloc("SKU-1", 1, 7), live=False)
    two_pack = {"GIFT-1": (("SKU-1", 2),)}
    rebuilt = TargetIndex(
        [listing("p1", "SKU-1"), listing("pg", "GIFT-1")], lambda l: two_pack.get(l.merchant_code) or ((l.merchant_code, 1),)
    )
    changed = state.set_index(rebuilt)
    assert changed == [(CH, "pg")]
    (push,) = state.take(CH, 10, 0.0)
    assert push.quantity == 3


def test_commit_position_stops_below_unsettled_records():
    tracker = OffsetTracker()
    state = SinkState(TargetIndex([listing("p1", "SKU-1")], resolve), lambda ch: True, tracker)
    tracker.start_at(0, 0)
    for offset, (sku, v) in enumerate([("SKU-1", 1), ("SKU-9", 1), ("SKU-1", 2)]):
        tracker.consumed(0, offset)
        state.apply(alloc(sku, v, v), (0, offset))
    assert tracker.committable() == {0: 0}
    (push,) = state.take(CH, 10, 0.0)
    assert tracker.committable() == {0: 0}
    state.parked_push(push)
    assert tracker.committable() == {0: 3}


@hsettings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 12), st.booleans()), min_size=1, max_size=40))
def test_pushed_versions_never_go_backwards(deliveries):
    """Any delivery order with duplicates, pushes completing or being throttled at random: the
    versions behind successive pushes of a listing never decrease, and the last push is the max."""
    state = make_state([listing("p1", "SKU-1")])
    pushed_versions = []
    for offset, (version, complete) in enumerate(deliveries):
        state.apply(alloc("SKU-1", version, version * 10), (0, offset))
        for push in state.take(CH, 10, now=float(offset)):
            if complete:
                state.written(push)
                pushed_versions.append(push.quantity // 10)
            else:
                state.again(push, 0.0, now=float(offset), failed=False)
    for push in state.take(CH, 10, now=1e9):
        state.written(push)
        pushed_versions.append(push.quantity // 10)
    assert pushed_versions == sorted(pushed_versions)
    assert pushed_versions[-1] == max(v for v, _ in deliveries)
    assert state.tracker.unsettled() == 0
