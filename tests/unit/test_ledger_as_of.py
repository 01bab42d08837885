"""Time travel over the ledger (`streams.ledger.rebuild` with `as_of_ms`): movements are filtered
by event time; a re-dated shipment counts at its corrected time."""

from __future__ import annotations

import itertools

import pytest

from stockstream.core.movements import Movement, MovementType as T
from stockstream.core.stock import ats
from streams.ledger import rebuild

SKU = "SKU-1"
_ids = itertools.count()


def mv(kind: T, quantity: int, t: int, **fields) -> Movement:
    return Movement(f"m{next(_ids)}", kind, SKU, quantity, t, **fields)


# Received 10 at 0, reserved 2 at 1, shipped at 50 but first dated 150 (no ship time in the
# first evidence), then re-dated; a chain re-dates it once more, to 30.
HISTORY = [
    mv(T.RECEIPT, 10, 0, location="WH"),
    mv(T.RESERVE, 2, 1, channel="tmall:1"),
    mv(T.SHIP, 2, 150, location="WH", channel="tmall:1"),
    mv(T.SHIP_REDATE, 2, 50, location="WH", channel="tmall:1", previous_event_time_ms=150),
]


@pytest.mark.parametrize(
    "as_of, on_hand, reserved",
    [(10, 10, 2), (49, 10, 2), (50, 8, 0), (100, 8, 0), (150, 8, 0), (200, 8, 0)],
)
def test_a_redated_shipment_counts_from_its_corrected_time(as_of, on_hand, reserved):
    state = rebuild(HISTORY, as_of_ms=as_of)[SKU]
    assert (state.locations["WH"].on_hand, state.total_reserved, ats(state)) == (on_hand, reserved, on_hand - reserved)


@pytest.mark.parametrize("as_of, on_hand", [(20, 10), (30, 8), (40, 8), (60, 8), (200, 8)])
def test_a_chain_of_redates(as_of, on_hand):
    chain = [*HISTORY, mv(T.SHIP_REDATE, 2, 30, location="WH", channel="tmall:1", previous_event_time_ms=50)]
    state = rebuild(chain, as_of_ms=as_of)[SKU]
    assert state.locations["WH"].on_hand == on_hand
    assert state.total_reserved == (2 if on_hand == 10 else 0)


def test_without_as_of_everything_applies():
    state = rebuild(HISTORY)[SKU]
    assert (state.locations["WH"].on_hand, state.total_reserved) == (8, 0)
