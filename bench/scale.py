"""How a worker's footprint grows with the catalogue: N master SKUs x 5 locations x 4 channels.

Every SKU is reached cheaply with warehouse receipts (one document per location and chunk of
SKUs), so each SKU gets a stock value with 5 locations and an allocation over 4 channels (one shop
per platform, the default shared rules). One worker loads them; then:

* RSS of the worker process (psutil, else /proc) and the RocksDB disk of its data dir (du);
* recovery: the worker is stopped and started again twice, once keeping its local state and once
  after its local state is deleted. Each time the time to the first outputs of fresh probe
  receipts (published as the worker starts) is taken: the agents process nothing until the
  tables are recovered. Recovery from the changelog = (state deleted) - (state kept), both
  measured in the same run.

Sizes that do not fit the time budget are left out and extrapolated (linear in SKUs), labelled
as such by `report`.

    python -m bench.scale [--skus 10000 100000 1000000]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import time
from pathlib import Path

from bench import harness
from bench.feed import probe_record
from connectors import warehouse
from connectors.base import raw_record
from connectors.publisher import RawPublisher
from stockstream.core.model import WarehouseEvent, WarehouseEventType
from stockstream.process import WorkerProcess
from stockstream.settings import Settings

LOCATIONS = ("SH-DC", "HZ-FTZ", "GZ-3PL", "BJ-DC", "CD-3PL")
SHOPS = (
    {"platform": "tmall", "app_key": "sim-tmall", "app_secret": "sim-secret", "shop_id": "2200754211234", "fulfilment_location": "SH-DC"},
    {"platform": "jd", "app_key": "sim-jd", "app_secret": "sim-secret", "shop_id": "10086001", "fulfilment_location": "BJ-DC"},
    {"platform": "douyin", "app_key": "sim-douyin", "app_secret": "sim-secret", "shop_id": "4463798", "fulfilment_location": "GZ-3PL", "reserve_unpaid": True},
    {"platform": "pdd", "app_key": "sim-pdd", "app_secret": "sim-secret", "shop_id": "987654321", "fulfilment_location": "CD-3PL"},
)
LINES_PER_DOCUMENT = 500
RECEIPT_MS = 1_730_000_000_000


def rss_bytes(pid: int) -> int:
    try:
        import psutil

        return psutil.Process(pid).memory_info().rss
    except ImportError:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise


def disk_bytes(path: Path) -> int:
    """du of a directory (apparent sizes), RocksDB's write-ahead logs (*.log) included, the
    worker's own log files (worker-<port>.log) left out."""
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            if not name.startswith("worker-"):
                try:
                    total += os.stat(os.path.join(root, name)).st_size
                except OSError:
                    pass
    return total


def receipts(skus: int, seed: int = 1, locations: int = len(LOCATIONS)):
    """(platform, RawRecord) warehouse receipts putting stock on every SKU at the first
    `locations` locations."""
    rng = random.Random(seed)
    for loc in LOCATIONS[:locations]:
        for start in range(0, skus, LINES_PER_DOCUMENT):
            doc = f"GRN-{loc}-{start // LINES_PER_DOCUMENT:07d}"
            events = [
                WarehouseEvent(WarehouseEventType.RECEIPT, doc, i + 1, loc, f"SKU-{n:07d}", rng.randint(1, 500), RECEIPT_MS)
                for i, n in enumerate(range(start, min(start + LINES_PER_DOCUMENT, skus)))
            ]
            yield warehouse.PLATFORM, raw_record(
                platform=warehouse.PLATFORM, shop=loc, kind=warehouse.KIND_JSON, key=doc,
                payload=warehouse.json_document(events), received_at_ms=RECEIPT_MS,
            )


def _time_to_probe_outputs(settings: Settings, worker: WorkerProcess, first_probe: int, probes: int, timeout: float) -> float:
    """Start `worker`, publish probes at once, and time until every probe has an output."""
    from bench.feed import PROBE_SKU_PREFIX
    from bench.harness import end_offsets, read_timestamps

    publisher = RawPublisher(settings)
    output = settings.topic(harness.output_topic())
    before = end_offsets(settings.bootstrap_servers, output, settings.partitions)
    started = time.monotonic()
    worker.start()
    numbers = range(first_probe, first_probe + probes)
    publisher.publish_all((warehouse.PLATFORM, probe_record(n, int(time.time() * 1000))) for n in numbers)
    wanted = {f"{PROBE_SKU_PREFIX}{n:07d}".encode() for n in numbers}
    while time.monotonic() - started < timeout:
        seen = {key for key, _ in read_timestamps(settings.bootstrap_servers, output, settings.partitions,
                                                  PROBE_SKU_PREFIX.encode(), since=before)}
        if wanted <= seen:
            return time.monotonic() - started
        if not worker.alive:
            raise RuntimeError(f"worker died:\n{worker.log_tail()}")
        time.sleep(0.5)
    raise TimeoutError(f"probes not through after {timeout}s")


def measure(bootstrap: str, skus: int, timeout: float = 3600, locations: int = len(LOCATIONS)) -> dict:
    settings = harness.fresh_settings(bootstrap, f"scale{skus}", SHOPS)
    worker = harness.start_workers(settings, 1)[0]
    try:
        publisher = RawPublisher(settings)
        started = time.monotonic()
        documents = publisher.publish_all(receipts(skus, locations=locations), timeout=1800)
        harness.wait_drained(settings, [worker], timeout=timeout, poll=1.0)
        load_seconds = time.monotonic() - started
        time.sleep(2)  # let RocksDB settle its memtables before RSS is read
        rss = rss_bytes(worker.process.pid)
        disk = disk_bytes(Path(settings.data_dir))
    finally:
        worker.stop()
    kept = _time_to_probe_outputs(settings, worker, 1, 16, timeout=600)
    worker.stop()
    tables = [p for p in Path(settings.data_dir).iterdir() if p.is_dir()]
    for path in tables:
        shutil.rmtree(path)  # the local RocksDB state: only the changelogs are left
    deleted = _time_to_probe_outputs(settings, worker, 101, 16, timeout=1200)
    rss_after_recovery = rss_bytes(worker.process.pid)
    restored = _bulk_restore(worker)
    worker.stop()
    keys = skus  # stock table keys; the orders table stays empty (documents only)
    return {
        "skus": skus, "locations": locations, "channels": len(SHOPS), "documents": documents,
        "movements": skus * locations, "load_seconds": round(load_seconds, 1),
        "movements_per_s": round(skus * locations / load_seconds),
        "rss_mb": round(rss / 2**20, 1), "rss_after_recovery_mb": round(rss_after_recovery / 2**20, 1),
        "disk_mb": round(disk / 2**20, 1), "disk_includes_wal": True,
        "restart_state_kept_s": round(kept, 1), "restart_state_deleted_s": round(deleted, 1),
        "recovery_s": round(max(deleted - kept, 0.0), 1), "recovered_keys": keys, **restored,
        "load": harness.machine_load(),
    }


def _bulk_restore(worker: WorkerProcess) -> dict:
    """What the worker's bulk restore (streams/table_restore.py) read and how long it took."""
    return {"bulk_restored_records": int(worker.metric("stockstream_table_restored_records_total")),
            "bulk_restore_s": round(worker.metric("stockstream_table_restore_seconds_total"), 1)}


def extrapolate(points: list[dict], skus: int) -> dict:
    """RSS and disk: a line through the two largest measured sizes (they have a fixed part).
    Recovery and load: proportional to the SKUs of the largest size (a line through two noisy
    recovery times, shortened by compaction at the larger size, can even go negative)."""
    a, b = sorted((p for p in points if p.get("locations", len(LOCATIONS)) == len(LOCATIONS)), key=lambda p: p["skus"])[-2:]
    out = {"skus": skus, "extrapolated": True, "from_skus": [a["skus"], b["skus"]]}
    for name in ("rss_mb", "disk_mb"):
        per_sku = (b[name] - a[name]) / (b["skus"] - a["skus"])
        out[name] = round(b[name] + per_sku * (skus - b["skus"]), 1)
    for name in ("recovery_s", "load_seconds"):
        out[name] = round(b[name] * skus / b["skus"], 1)
    return out


def parse_size(text: str) -> tuple[int, int]:
    """'100000' -> (100000, 5 locations); '1000000:1' -> (1000000, 1 location): a million SKUs
    at one location each is a fifth of the load of five, for a run that must fit an hour."""
    skus, _, locations = str(text).partition(":")
    return int(skus), int(locations) if locations else len(LOCATIONS)


def run(bootstrap: str, sizes: tuple = (10_000, 100_000), extrapolate_to: tuple[int, ...] = (1_000_000,)) -> dict:
    result = {"benchmark": "scale", "load_start": harness.machine_load(), "measured": [], "extrapolated": []}
    for size in sizes:
        skus, locations = parse_size(size)
        point = measure(bootstrap, skus, locations=locations)
        print(f"scale: {skus} SKUs x {locations} locations: RSS {point['rss_mb']} MB, disk {point['disk_mb']} MB, "
              f"recovery {point['recovery_s']} s (load {point['load_seconds']} s)", flush=True)
        result["measured"].append(point)
        harness.save("scale", result)
    full = [p for p in result["measured"] if p["locations"] == len(LOCATIONS)]
    if len(full) >= 2:
        for skus in extrapolate_to:
            if skus not in {p["skus"] for p in result["measured"]}:  # measured at any width: no guess
                result["extrapolated"].append(extrapolate(full, skus))
    harness.save("scale", result)
    return result


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--skus", nargs="+", default=["10000", "100000"],
                        help="sizes; N:L for N SKUs at L locations each (default 5)")
    parser.add_argument("--extrapolate-to", type=int, nargs="*", default=[1_000_000])
    parser.add_argument("--bootstrap", default=None)
    args = parser.parse_args(argv)
    with harness.broker(args.bootstrap) as bootstrap:
        run(bootstrap, tuple(args.skus), tuple(args.extrapolate_to))


if __name__ == "__main__":
    main()
