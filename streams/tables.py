"""A dict-like view of a Faust table for the plain processors, which must not import Faust."""

from __future__ import annotations

from typing import Optional

import faust


class TableStore:
    """Reads and writes of one event's keys. Faust picks the store partition from the event being
    processed, so a TableStore is used only inside that event's iteration."""

    __slots__ = ("_table",)

    def __init__(self, table: faust.Table) -> None:
        self._table = table

    def get(self, key: bytes) -> Optional[bytes]:
        return self._table.get(key)

    def put(self, key: bytes, value: bytes) -> None:
        self._table[key] = value
