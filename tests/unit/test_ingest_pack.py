"""The ingest batcher's packing: per target partition, batches under the size limit, per-key
order kept, and records too large for any batch set aside for quarantine."""

from __future__ import annotations

from streams.ingest import MAX_BATCH_BYTES, MAX_RECORD_BYTES, pack
from streams.partitioning import partition_for


class FakeMessage:
    def __init__(self, key: bytes, value: bytes, offset: int, partition: int = 0, topic: str = "raw.tmall") -> None:
        self._key, self._value, self._offset, self._partition, self._topic = key, value, offset, partition, topic

    def key(self): return self._key
    def value(self): return self._value
    def offset(self): return self._offset
    def partition(self): return self._partition
    def topic(self): return self._topic
    def timestamp(self): return (1, 1_700_000_000_000)
    def headers(self): return [("platform", b"tmall")]


def test_batches_stay_under_the_limit_and_keep_per_key_order():
    messages = [FakeMessage(f"order-{i % 7}".encode(), b"x" * 40_000, offset=i) for i in range(200)]
    packed = pack(messages, 4)
    for partition, batches in packed.items():
        for batch in batches:
            assert sum(len(r["value"]) + len(r["key"]) + 64 for r in batch) <= MAX_BATCH_BYTES
            assert all(partition_for(r["key"], 4) == partition for r in batch)
        offsets = [r["offset"] for batch in batches for r in batch]
        assert offsets == sorted(offsets)
    assert sum(len(b) for batches in packed.values() for b in batches) == 200


def test_a_record_too_large_for_any_batch_is_set_aside():
    big = FakeMessage(b"big", b"{" + b" " * MAX_RECORD_BYTES + b"}", offset=5)
    small = FakeMessage(b"small", b"{}", offset=6)
    oversized: list[dict] = []
    packed = pack([big, small], 4, oversized)
    assert [r["offset"] for r in oversized] == [5]
    assert [r["offset"] for batches in packed.values() for b in batches for r in b] == [6]
