"""ERP on-hand import: CSV parsing and the comparison with stockstream's on_hand."""

from __future__ import annotations

import pytest

from streams.erp_reconcile import Discrepancy, discrepancies, read_onhand_lines, stockstream_on_hand


def test_csv_rows_add_up_per_sku_and_location():
    rows = []
    got = read_onhand_lines(["sku,location,on_hand", "A,wh1,5", "A,wh1,2", " B , wh2 , 0"], on_row=lambda: rows.append(1))
    assert got == {("A", "wh1"): 7, ("B", "wh2"): 0}
    assert len(rows) == 3


@pytest.mark.parametrize("lines, message", [
    (["sku,on_hand", "A,1"], "no column"),
    (["sku,location,on_hand", "A,wh1,x"], "line 2"),
    (["sku,location,on_hand", ",wh1,1"], "required"),
])
def test_bad_csv_is_refused_with_the_line(lines, message):
    with pytest.raises(ValueError, match=message):
        read_onhand_lines(lines)


def test_discrepancies_count_a_missing_side_as_zero():
    snapshots = {
        "A": {"version": 7, "locations": {"wh1": {"on_hand": 5}, "wh2": {"on_hand": 0}}},
        "B": {"version": 2, "locations": {"wh1": {"on_hand": 3}}},
    }
    ours, versions = stockstream_on_hand(snapshots)
    erp = {("A", "wh1"): 5, ("A", "wh2"): 1, ("C", "wh1"): 4}
    found = discrepancies(erp, ours, versions)
    assert found == [
        Discrepancy("A", "wh2", 1, 0, 7),
        Discrepancy("B", "wh1", 0, 3, 2),
        Discrepancy("C", "wh1", 4, 0, None),
    ]
    assert [d.difference for d in found] == [-1, 3, -4]
    assert found[0].to_record("x.csv", 1)["kind"] == "erp_on_hand"
