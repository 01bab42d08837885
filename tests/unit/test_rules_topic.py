"""The allocation-rules and allocation-commands record formats, the rules book a worker keeps
from them, and how `stockstream rules set` picks versions."""

from __future__ import annotations

import orjson
import pytest

from stockstream.core.allocation import AllocationMode, AllocationRules
from stockstream.rules_cli import next_record
from stockstream.rules_topic import (
    DEFAULTS_KEY,
    ReallocateCommand,
    RulesRecord,
    decode,
    decode_command,
    encode,
    settings_default_rules,
)
from stockstream.settings import Settings
from streams.allocation_commands import keys_to_reallocate
from streams.partitioning import partition_for
from streams.rules_feed import RulesBook

SHOPS = [
    {"platform": "tmall", "shop_id": "flagship", "app_key": "k", "app_secret": "s"},
    {"platform": "pdd", "shop_id": "777", "app_key": "k", "app_secret": "s"},
]
DEFAULTS = {"version": 3, "mode": "split", "channels": [{"channel": "tmall:flagship", "weight": 2}, {"channel": "pdd:777"}]}


def test_settings_defaults_list_every_shop_shared_at_full_ats():
    rules = settings_default_rules(Settings(shops=SHOPS))
    assert rules.version == 0 and rules.mode is AllocationMode.SHARED
    assert [(r.channel, r.percentage, r.buffer) for r in rules.channels] == [("tmall:flagship", 1.0, 0), ("pdd:777", 1.0, 0)]


def test_records_round_trip_and_tombstones():
    key, value = encode(RulesRecord(DEFAULTS_KEY, DEFAULTS))
    record = decode(key, value)
    assert record.is_defaults and record.version == 3
    assert AllocationRules.from_dict(record.data) == AllocationRules.from_dict(DEFAULTS)
    override = {"version": 1, "channels": [{"channel": "pdd:777", "reserve": 5}]}
    assert decode(*encode(RulesRecord("SKU-1", override))) == RulesRecord("SKU-1", override)
    assert decode(b"SKU-1", None) == RulesRecord("SKU-1") and decode(b"SKU-1", None).version is None


@pytest.mark.parametrize("key, value", [
    (b"", b'{"version": 1}'),
    (b"SKU-1", b"not json"),
    (b"SKU-1", b"[1]"),
    (b"SKU-1", b'{"mode": "split"}'),  # no version
    (b"SKU-1", b'{"version": -1}'),
    (b"SKU-1", b'{"version": 1, "colour": "red"}'),
    (b"SKU-1", b'{"version": 1, "channels": [{"channel": "jd:1", "weight": -1}]}'),
    (b"*", b'{"version": 1, "mode": "lottery"}'),
])
def test_bad_records_are_refused(key, value):
    with pytest.raises(ValueError):
        decode(key, value)


def test_commands_round_trip_and_bad_ones_are_refused():
    for command in (ReallocateCommand(4, "SKU-1"), ReallocateCommand(2)):
        assert decode_command(command.to_json()) == command
    assert ReallocateCommand(2).rules_key == DEFAULTS_KEY and ReallocateCommand(4, "SKU-1").rules_key == "SKU-1"
    for bad in (b"", b"{}", b'{"rule_version": "1", "sku": "A"}', b'{"rule_version": 1}', b'{"rule_version": 1, "sku": ""}'):
        with pytest.raises(ValueError):
            decode_command(bad)


def test_all_sku_command_takes_the_stored_keys_of_its_partition_only():
    keys = [f"SKU-{i}".encode() for i in range(40)]
    per_partition = [keys_to_reallocate(ReallocateCommand(1), keys, p, 4) for p in range(4)]
    assert sorted(k for part in per_partition for k in part) == sorted(keys)
    assert all(partition_for(k, 4) == p for p, part in enumerate(per_partition) for k in part)
    assert keys_to_reallocate(ReallocateCommand(1, "X"), keys, 0, 4) == [b"X"]


def test_rules_book_merges_overrides_over_defaults_and_tracks_versions():
    fallback = settings_default_rules(Settings(shops=SHOPS))
    book = RulesBook(fallback)
    assert book.rules_for("SKU-1") is fallback and not book.has_seen(DEFAULTS_KEY, 0)

    book.apply(b"*", orjson.dumps(DEFAULTS))
    book.apply(b"SKU-1", orjson.dumps({"version": 2, "channels": [{"channel": "pdd:777", "reserve": 5}]}))
    rules = book.rules_for("SKU-1")
    assert rules.version == 5 and rules.mode is AllocationMode.SPLIT  # 3 + 2
    assert (rules.channel("pdd:777").reserve, rules.channel("tmall:flagship").weight) == (5, 2)
    assert book.rules_for("SKU-2").version == 3
    assert set(book._merged) == {"SKU-1"}  # SKUs on the defaults are not cached one by one
    assert book.has_seen(DEFAULTS_KEY, 3) and book.has_seen("SKU-1", 2) and not book.has_seen("SKU-1", 3)

    # New defaults reach the cached merge; a tombstone drops the override but not the version seen.
    book.apply(b"*", orjson.dumps({**DEFAULTS, "version": 4, "mode": "shared"}))
    assert (book.rules_for("SKU-1").version, book.rules_for("SKU-1").mode) == (6, AllocationMode.SHARED)
    book.apply(b"SKU-1", None)
    assert book.rules_for("SKU-1").version == 4 and book.has_seen("SKU-1", 2)
    book.apply(b"*", None)
    assert book.rules_for("SKU-1") is fallback

    assert book.apply(b"SKU-3", b"garbage") is None and book.bad_records == 1


def test_rules_set_numbers_versions_and_refuses_stale_or_invalid_ones():
    assert next_record("SKU-1", {"mode": "split"}, None).version == 1
    assert next_record("SKU-1", {"mode": "split"}, 4).version == 5
    assert next_record(DEFAULTS_KEY, {**DEFAULTS, "version": 9}, 4).version == 9
    with pytest.raises(ValueError, match="above the current"):
        next_record("SKU-1", {"version": 4}, 4)
    with pytest.raises(ValueError):
        next_record(DEFAULTS_KEY, {"mode": "lottery"}, None)
    with pytest.raises(ValueError):
        next_record("SKU-1", ["not", "an", "object"], None)
