"""The README's first command, `stockstream demo`, on the test broker: simulated traffic of the
four marketplaces and the warehouse goes in, every SKU's ATS and its allocation to every shop come
out on the live board."""

from __future__ import annotations

import pytest

from stockstream.demo import SKUS, run_demo

pytestmark = pytest.mark.integration


def test_demo_shows_ats_and_allocations_for_every_sku(settings):
    board = run_demo(settings, rate_per_second=400, duration=40)
    assert board is not None
    assert len(board.latest) == SKUS, sorted(board.latest)
    shops = {channel for channels in board.allocated.values() for channel in channels}
    assert {channel.split(":")[0] for channel in shops} == {"tmall", "jd", "douyin", "pdd"}
    for sku, snapshot in board.latest.items():
        assert snapshot["sellable_on_hand"] >= 0
        assert set(board.allocated.get(sku, {})) == shops, sku
