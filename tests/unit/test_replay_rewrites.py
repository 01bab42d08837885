"""A replayed input rewrites the table values it touches, unchanged.

Why: a worker killed after a table write but before that write's changelog record reached Kafka
keeps the write in its local state. Started again on the same disk, it re-processes the input
(the offset was not committed), and the marks in the local value say "applied": a replay. If
the replay wrote nothing, the changelog would never get the value, and a worker recovering the
partition from it later would miss what the committed input applied.
"""

from __future__ import annotations

from connectors.simulators.traffic import generate
from schemas.batches import encode_ingest
from stockstream.settings import Settings
from streams.normalize import IdentityCatalog, Normalizer
from streams.partitioning import partition_for
from tests.support.stores import RecordingStore

PARTITIONS = 4


def test_a_replayed_ingest_batch_writes_its_orders_and_documents_again_unchanged():
    traffic = generate(skus=50, events=300, duplicate_rate=0.0, counts=2, count_skus=10, seed=3, reorder=0.0, jd_missed_polls=0.0)
    settings = Settings(partitions=PARTITIONS, shops=traffic.shop_settings())
    normalizer = Normalizer(settings, IdentityCatalog())
    raws = []
    for offset, (platform, record) in enumerate(traffic):
        key = record.key.encode()
        raws.append({
            "topic": f"raw.{platform}", "partition": partition_for(key, PARTITIONS), "offset": offset,
            "timestamp_ms": int(record.headers["received-at"]), "key": key, "value": record.value,
            "headers": dict(record.headers),
        })
    batch = encode_ingest(raws)
    store = RecordingStore()
    first = normalizer.process(batch, 0, store)
    written, values = set(store.writes), dict(store)
    assert any(k.startswith(b"o|") for k in written) and any(k.startswith(b"w|") for k in written)

    store.writes.clear()
    again = normalizer.process(batch, 0, store)

    assert dict(store) == values  # nothing applied twice
    assert set(store.writes) == written  # every value the first pass wrote, written again
    assert again.movement_batches == first.movement_batches  # the same movements, for the lost sends
