"""The multi-platform traffic generator: parseable records, determinism, duplicates, reordering,
no personal data, every lifecycle and warehouse flow present."""

from __future__ import annotations

from collections import Counter, defaultdict

import pytest

from connectors import warehouse
from connectors.base import RawHeader, Rejected, loads_json
from connectors.registry import get_connector
from connectors.simulators.traffic import LIFECYCLES, Traffic, generate
from stockstream.core.model import LineStatus, WarehouseEventType

SMALL = dict(skus=300, events=6000, seed=21, duplicate_rate=0.2, reorder=0.3)


@pytest.fixture(scope="module")
def traffic() -> Traffic:
    return generate(**SMALL)


def identity(record) -> tuple:
    return (record.key, record.value, tuple(sorted(record.headers.items())))


def parse(platform: str, record):
    if platform == warehouse.PLATFORM:
        return warehouse.parse(record.value, record.headers)
    return get_connector(platform).parse(record.value, record.headers)


def originals(traffic: Traffic):
    seen = set()
    for platform, record in traffic:
        key = identity(record)
        if key not in seen:
            seen.add(key)
            yield platform, record


def test_every_record_parses(traffic: Traffic) -> None:
    outcomes = Counter()
    for platform, record in traffic:
        assert record.headers[RawHeader.PLATFORM] == platform
        assert record.headers[RawHeader.KIND]
        assert int(record.headers[RawHeader.RECEIVED_AT]) > 0
        out = parse(platform, record)
        assert not isinstance(out, Rejected), (platform, record.headers, out, record.value[:300])
        outcomes[(platform, record.headers[RawHeader.KIND], bool(out))] += 1
        if platform in ("jd", "pdd"):  # sellers never see unpaid orders there
            assert all(line.status != LineStatus.CREATED for update in out for line in update.lines)
        if platform == warehouse.PLATFORM:
            assert all(event.document_id == record.key for event in out)
        else:
            assert all(update.order_id == record.key for update in out)
    # Every kind of every platform occurs and means something (refund requests mean nothing).
    for platform, kind in [
        ("tmall", "tmc"), ("tmall", "fullinfo"), ("jd", "order"), ("douyin", "push"), ("douyin", "detail"),
        ("pdd", "frame"), ("pdd", "order"), ("warehouse", "json"), ("warehouse", "csv"),
    ]:
        assert outcomes[(platform, kind, True)] > 0, (platform, kind, outcomes)


def test_tmall_messages_carry_line_fields(traffic: Traffic) -> None:
    """The generator must not depend on the core resolving status-only TMC messages."""
    for platform, record in traffic:
        if platform == "tmall" and record.headers[RawHeader.KIND] == "tmc":
            for update in parse(platform, record):
                for line in update.lines:
                    assert line.quantity and line.merchant_code and line.platform_sku_id, update


def test_every_push_and_frame_is_followed_by_a_snapshot(traffic: Traffic) -> None:
    kinds = defaultdict(list)
    for platform, record in originals(traffic):
        if platform in ("douyin", "pdd"):
            kinds[(platform, record.key)].append(record.headers[RawHeader.KIND])
    for (platform, _), seen in kinds.items():
        notification, snapshot = ("push", "detail") if platform == "douyin" else ("frame", "order")
        assert seen.count(notification) == seen.count(snapshot), seen


def test_deterministic_per_seed() -> None:
    a = generate(skus=100, events=1500, seed=5)
    b = generate(skus=100, events=1500, seed=5)
    c = generate(skus=100, events=1500, seed=6)
    assert [(p, identity(r)) for p, r in a] == [(p, identity(r)) for p, r in b]
    assert [a.truth.ats(s) for s in a.skus] == [b.truth.ats(s) for s in b.skus]
    assert [(p, identity(r)) for p, r in a] != [(p, identity(r)) for p, r in c]


@pytest.mark.parametrize("rate", [0.0, 0.2, 0.5])
def test_duplicate_rate_and_total(rate: float) -> None:
    t = generate(skus=200, events=3000, seed=3, duplicate_rate=rate)
    assert len(t) == 3000
    seen = set()
    redelivered = 0
    for _, record in t:
        key = identity(record)
        redelivered += key in seen
        seen.add(key)
    assert redelivered == t.duplicates
    assert abs(redelivered / len(t) - rate) < 0.01


def test_reordering_is_bounded_within_an_order(traffic: Traffic) -> None:
    """Within an order's stream a record is overtaken by at most `reorder_window` records
    emitted after it; without reordering, never."""

    def inversions(t: Traffic) -> list[int]:
        emitted = defaultdict(list)
        worst = []
        for platform, record in originals(t):
            if platform == warehouse.PLATFORM:
                continue
            at = int(record.headers[RawHeader.RECEIVED_AT])
            before = emitted[(platform, record.key)]
            worst.append(sum(1 for x in before if x > at))
            before.append(at)
        return worst

    shuffled = inversions(traffic)
    assert 0 < max(shuffled) <= traffic.config.reorder_window
    assert max(inversions(generate(**{**SMALL, "events": 2000, "reorder": 0.0}))) == 0


def personal_leaves(value, out: list) -> list:
    if isinstance(value, dict):
        for v in value.values():
            personal_leaves(v, out)
    elif isinstance(value, list):
        for v in value:
            personal_leaves(v, out)
    elif isinstance(value, str) and value[:1] in "{[":
        try:
            personal_leaves(loads_json(value), out)
        except ValueError:
            out.append(value)
    else:
        out.append(str(value))
    return out


def test_no_personal_data_in_any_record(traffic: Traffic) -> None:
    checked = 0
    for platform, record in traffic:
        if platform == warehouse.PLATFORM:
            continue
        buyer = traffic.buyers[record.key]
        text = record.value.decode("utf-8") + "".join(record.headers.values())
        leaves = set(personal_leaves(loads_json(record.value), []))
        for secret in buyer.personal_strings():
            if secret.isdigit() and len(secret) < 11:
                # a 6-digit zip may occur inside long ids by chance: compare whole values
                assert secret not in leaves, (platform, record.headers, secret)
            else:
                assert secret not in text, (platform, record.headers, secret)
        checked += 1
    assert checked > 1000


def test_lifecycles_and_warehouse_flows_present(traffic: Traffic) -> None:
    assert set(traffic.lifecycles) == set(LIFECYCLES)
    types = Counter(e.event_type for e in traffic.truth.events)
    assert set(types) == set(WarehouseEventType)
    document_ids = [record.key for platform, record in originals(traffic) if platform == warehouse.PLATFORM]
    assert len(document_ids) == len(set(document_ids))  # unique document ids; re-sends are duplicates
    truth = traffic.truth
    stocks = [truth.stock(sku) for sku in traffic.skus]
    assert any(loc.customs_hold > 0 for s in stocks for loc in s.locations.values())
    assert any(loc.in_transit > 0 for s in stocks for loc in s.locations.values())
    assert any(loc.inspection > 0 for s in stocks for loc in s.locations.values())
    ordered = [s for s in stocks if any(line.sku == s.sku for line in truth.lines)]
    positive = sum(s.ats > 0 for s in ordered)
    assert 0.8 * len(ordered) < positive < len(ordered)  # most SKUs in stock, some run out
    channels = {line.channel for line in truth.lines if line.reserves}
    assert len(channels) == len(traffic.config.shops)
