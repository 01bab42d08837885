"""TableStore reads and writes a partition's RocksDB directly: what it writes, Faust's own Table
reads back (for an event of that partition, and outside any event, like the HTTP API), and every
write sends its changelog record first, to the partition it was written in."""

from __future__ import annotations

import weakref

import faust
import pytest
from faust.streams import _current_event

from stockstream.settings import Settings
from streams.app import _bytes_table
from streams.changelog import ChangelogSender
from streams.tables import TableStore


class _Message:
    def __init__(self, partition: int) -> None:
        self.partition = partition
        self.topic = "movements"


class _Event:
    def __init__(self, partition: int) -> None:
        self.message = _Message(partition)


class _Outputs:
    """The part of streams.outputs.Outputs the changelog sender uses; records what is sent and
    what the store held for that key at that moment."""

    def __init__(self) -> None:
        self.table = None
        self.sent: list[tuple] = []

    def track_offsets(self, topic: str) -> None:
        pass

    def send_now(self, topic, value, key, partition) -> None:
        self.sent.append((partition, key, value, self.table.data._db_for_partition(partition).get(key)))


@pytest.fixture
def table(tmp_path):
    settings = Settings(data_dir=tmp_path, partitions=4)
    app = faust.App("table-store-test", broker="kafka://127.0.0.1:1", store="rocksdb://", datadir=str(tmp_path))
    table = _bytes_table(app, "stock", settings)
    outputs = _Outputs()
    outputs.table = table
    ChangelogSender(outputs).attach(table)  # the worker's changelog path (streams/app.py)
    table.sent = outputs.sent
    yield table
    for db in table.data._dbs.values():
        db.close()


def test_what_it_writes_faust_reads_back_and_the_changelog_has_it_first(table):
    TableStore(table, 2).put(b"SKU-1", b"v1")
    TableStore(table, 2).put(b"SKU-1", b"v2")
    TableStore(table, 3).put(b"SKU-9", b"x")

    assert table.sent == [(2, b"SKU-1", b"v1", None), (2, b"SKU-1", b"v2", b"v1"), (3, b"SKU-9", b"x", None)]
    assert TableStore(table, 2).get(b"SKU-1") == b"v2"
    assert TableStore(table, 2).get(b"SKU-9") is None  # another partition's key
    token = _current_event.set(weakref.ref(event := _Event(2)))
    try:
        assert table.get(b"SKU-1") == b"v2"  # Faust, inside an event of partition 2
    finally:
        _current_event.reset(token)
    assert event.message.partition == 2
    # Outside an event (the HTTP API): Faust probes the partitions' DBs.
    assert table.get(b"SKU-1") == b"v2" and table.get(b"SKU-9") == b"x" and table.get(b"nope") is None


def test_what_faust_wrote_it_reads(table):
    token = _current_event.set(weakref.ref(event := _Event(1)))
    try:
        table[b"SKU-5"] = b"from-faust"
    finally:
        _current_event.reset(token)
    assert event is not None
    assert table.sent == [(1, b"SKU-5", b"from-faust", None)]
    assert TableStore(table, 1).get(b"SKU-5") == b"from-faust"


def test_writes_reach_the_apps_sensors(table):
    """The HTTP API's ATS history is such a sensor (streams/api_history.py)."""
    seen = []

    class Recorder(faust.Sensor):
        def on_table_set(self, table, key, value) -> None:
            seen.append((table.name, key, value))

    table.app.sensors.add(Recorder())
    TableStore(table, 0).put(b"SKU-7", b"v")
    assert seen == [("stock", b"SKU-7", b"v")]
