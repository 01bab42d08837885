"""The adapter-side delivery log (connectors/dedupe.py): states, bounds, restoring."""

from __future__ import annotations

from connectors.adapters.runner import parse_options
from connectors.dedupe import DeliveryLog, RecentDelivery, Seen, restore


def test_ids_move_from_new_to_written_to_complete_and_never_back():
    log = DeliveryLog()
    assert log.state("m1") == Seen.NEW and log.state(None) == Seen.NEW and log.state("") == Seen.NEW
    log.mark(["m1"], Seen.WRITTEN)
    assert log.state("m1") == Seen.WRITTEN
    log.mark(["m1"], Seen.COMPLETE)
    log.mark(["m1"], Seen.WRITTEN)  # e.g. a later push carrying the same id: no downgrade
    assert log.state("m1") == Seen.COMPLETE
    log.mark([None, ""], Seen.COMPLETE)  # deliveries without an id are never remembered
    assert len(log) == 1


def test_ids_older_than_the_window_are_forgotten():
    log = DeliveryLog(window_s=60)
    log.mark(["old"], Seen.COMPLETE, at=1_000)
    log.mark(["recent"], Seen.COMPLETE, at=1_050)
    assert log.state("old", now=1_070) == Seen.NEW
    assert log.state("recent", now=1_070) == Seen.COMPLETE


def test_the_least_recently_seen_ids_go_first_when_full():
    log = DeliveryLog(max_ids=2)
    log.mark(["a", "b"], Seen.COMPLETE)
    assert log.state("a") == Seen.COMPLETE  # seen again: now the most recent
    log.mark(["c"], Seen.COMPLETE)
    assert (log.state("a"), log.state("b"), log.state("c")) == (Seen.COMPLETE, Seen.NEW, Seen.COMPLETE)


def test_restore_marks_complete_only_deliveries_whose_follow_up_was_written():
    log = DeliveryLog(window_s=10**10)
    n = restore(log, [
        RecentDelivery("m1", "order-1", "shop", 1_000, complete=True),
        RecentDelivery("m2", "order-2", "shop", 2_000, complete=False),
    ])
    assert n == 2 and log.state("m1") == Seen.COMPLETE and log.state("m2") == Seen.WRITTEN


def test_adapter_options_from_the_command_line():
    assert parse_options(["idle_wait_s=0.2", "batch_size=200", "fetch-fullinfo=false", "path=/push"]) == {
        "idle_wait_s": 0.2, "batch_size": 200, "fetch_fullinfo": False, "path": "/push",
    }
