"""A dict standing in for a table store in processor tests, remembering which keys were written."""

from __future__ import annotations


class RecordingStore(dict):
    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []

    def put(self, key: bytes, value: bytes) -> None:
        self.writes.append(key)
        self[key] = value
