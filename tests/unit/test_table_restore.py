"""Which table partitions the bulk restore takes on, and from where (streams/table_restore.py);
the restore itself runs against the real broker in tests/integration/test_changelog_restore.py."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Optional

from faust.types import TP

from streams.table_restore import BulkRestorer


class FakeStore:
    offset_key = b"__faust\0offset__"

    def __init__(self, persisted: dict[int, int]) -> None:
        self.persisted = persisted

    def persisted_offset(self, tp: TP) -> Optional[int]:
        return self.persisted.get(tp.partition)

    def _db_for_partition(self, partition: int) -> object:
        return object()


def recovery(highwaters: dict[TP, int], persisted: dict[int, int]) -> SimpleNamespace:
    table = SimpleNamespace(data=FakeStore(persisted), name="stock")
    return SimpleNamespace(tp_to_table={tp: table for tp in highwaters}, active_highwaters=highwaters)


def test_only_partitions_missing_enough_records_are_restored_from_the_offset_after_the_state():
    fresh, nearly_current, kept_partly, empty = (TP("stock-changelog", p) for p in range(4))
    highwaters = {fresh: 4_999, nearly_current: 10_000, kept_partly: 9_000, empty: -1}
    faust_offsets = {fresh: -1, nearly_current: 9_500, kept_partly: 1_000, empty: -1}
    # The store's own offset counts too: Faust's may be from before an interrupted restore.
    rec = recovery(highwaters, persisted={2: 3_000})
    ranges = BulkRestorer("unused:9092", min_records=1_000, budget_s=10).ranges(rec, set(highwaters), faust_offsets)
    by_partition = {r.partition: (r.first, r.last) for r in ranges}
    assert by_partition == {0: (0, 4_999), 2: (3_001, 9_000)}
