"""The Python ceiling of our own processing: the normalizer and the stock processor over the
benchmark traffic in one process, without Kafka, Faust or RocksDB (dict stores), ingest batches of
the size the ingest batcher forms under a backlog. A worker cannot be faster than this; the gap
between this and the pipeline rate is what Kafka, Faust and the ingest batcher cost.

    python -m bench.processors [--events 30000] [--build pure|compiled]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from bench import harness
from bench.feed import traffic_pool

PARTITIONS = 4
BATCH = 500


class _DictStore(dict):
    def put(self, key: bytes, value: bytes) -> None:
        self[key] = value


def _ingest_batches(traffic, settings) -> list[tuple[int, bytes]]:
    from schemas.batches import encode_ingest
    from streams.partitioning import partition_for

    prefix = settings.topic("raw.")
    by_partition: dict[int, list[dict]] = {p: [] for p in range(PARTITIONS)}
    for offset, (platform, record) in enumerate(traffic.records):
        key = record.key.encode()
        by_partition[partition_for(key, PARTITIONS)].append({
            "topic": prefix + platform, "partition": 0, "offset": offset, "timestamp_ms": 0, "key": key,
            "value": record.value, "headers": dict(record.headers),
        })
    return [(p, encode_ingest(records[i:i + BATCH])) for p, records in by_partition.items()
            for i in range(0, len(records), BATCH)]


def _once(batches, settings) -> tuple[float, float, int]:
    from streams.normalize import Normalizer
    from streams.stock import StockProcessor

    normalizer, stock = Normalizer(settings), StockProcessor(settings)
    orders = {p: _DictStore() for p in range(PARTITIONS)}
    skus = {p: _DictStore() for p in range(PARTITIONS)}
    started = time.perf_counter()
    movement_batches = []
    for partition, value in batches:
        movement_batches.extend(normalizer.process(value, partition, orders[partition]).movement_batches)
    normalized = time.perf_counter()
    for offset, (partition, value) in enumerate(movement_batches):
        stock.process(value, ("movements", partition, offset), skus[partition])
    done = time.perf_counter()
    return normalized - started, done - normalized, len(movement_batches)


def run(events: int = 30_000, skus: int = 2000, repeats: int = 3) -> dict:
    from stockstream.settings import Settings

    traffic = traffic_pool(events, skus)
    settings = Settings(partitions=PARTITIONS, shops=traffic.shop_settings())
    batches = _ingest_batches(traffic, settings)
    runs = [_once(batches, settings) for _ in range(repeats)]
    normalize_s, stock_s, movement_batches = min(runs, key=lambda r: r[0] + r[1])  # least disturbed
    return {
        "events": events, "ingest_batches": len(batches), "movement_batches": movement_batches, "repeats": repeats,
        "normalize_s": round(normalize_s, 3), "stock_s": round(stock_s, 3),
        "normalize_events_per_s": round(events / normalize_s), "stock_events_per_s": round(events / stock_s),
        "events_per_s": round(events / (normalize_s + stock_s)),
        "load": harness.machine_load(),
    }


def run_build(build: str, events: int = 30_000, skus: int = 2000) -> dict:
    """`run` on the sources of `build` (bench/harness.py), in a process of its own."""
    directory = harness.code_dir(build)
    if directory is None:
        return {**run(events, skus), "build": build}
    from stockstream import compiled

    repo = Path(__file__).resolve().parent.parent  # after the compiled copy: for bench/ itself
    out = subprocess.run([sys.executable, "-m", "bench.processors", "--events", str(events), "--skus", str(skus), "--json"],
                         **compiled.runs_from(directory, os.environ, also=(repo,)), check=True, capture_output=True,
                         text=True).stdout
    return {**json.loads(out.splitlines()[-1]), "build": build}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=30_000)
    parser.add_argument("--skus", type=int, default=2000)
    parser.add_argument("--build", default="pure", choices=harness.BUILDS)
    parser.add_argument("--json", action="store_true", help="print the result as one JSON line")
    args = parser.parse_args(argv)
    result = run_build(args.build, args.events, args.skus)
    if args.json:
        print(json.dumps(result))
        return
    print(f"processors alone ({args.build}): {result['events_per_s']:,} events/s (normalize "
          f"{result['normalize_events_per_s']:,}/s, stock {result['stock_events_per_s']:,}/s)")


if __name__ == "__main__":
    main()
