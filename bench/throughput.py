"""Highest sustained raw events/s through the whole pipeline (raw -> ingest -> movements ->
stock/ATS -> allocations) for 1 and 2 worker processes, next to a bare confluent-kafka
consume-and-decode loop over the same raw topics with as many processes, measured in the same
run on the same broker (the machine is noisy: compare ratios).

How: the workers start, join and carry a few warm-up records end to end first (so the measured
window holds no rebalance or standby recovery); then a backlog of four-platform traffic (the seeded
generator: Tmall, JD, Douyin, PDD and warehouse documents, 20% redeliveries) is published at
once, and the pipeline's rate is events / (drained - first record published). A backlog drained
as fast as the workers go is the highest rate they can sustain.

Each worker count runs twice: on the sources as installed ("pure") and on the compiled build of
the hot path (stockstream/compiled.py), same run, same broker.

    python -m bench.throughput [--events 50000] [--workers 1 2] [--builds pure compiled] [--bootstrap host:port]
"""

from __future__ import annotations

import argparse
import multiprocessing
import time
import uuid

import orjson
from confluent_kafka import Consumer, TopicPartition

from bench import harness
from bench.feed import traffic_pool
from connectors.publisher import RawPublisher
from stockstream.settings import Settings
from stockstream.topics import raw_topic

RAW_PLATFORMS = ("tmall", "jd", "douyin", "pdd", "warehouse")


def _decode(value: bytes) -> object:
    """What any consumer must do at least: parse the payload, and the JSON platforms nest
    (Tmall TMC `content`, Douyin `data`); warehouse CSV is split into rows."""
    try:
        doc = orjson.loads(value)
    except orjson.JSONDecodeError:
        return value.decode("utf-8", "replace").splitlines()
    if isinstance(doc, dict):
        for nested in ("content", "data"):
            inner = doc.get(nested)
            if isinstance(inner, str) and inner[:1] in ("{", "["):
                doc[nested] = orjson.loads(inner)
    return doc


def _consume_partitions(bootstrap: str, topics: list[str], partitions: list[int], expected: int, out) -> None:
    consumer = Consumer({
        "bootstrap.servers": bootstrap, "group.id": f"baseline-{uuid.uuid4().hex[:6]}",
        "enable.auto.commit": False, "fetch.min.bytes": 1,
    })
    consumer.assign([TopicPartition(t, p, 0) for t in topics for p in partitions])
    seen, started = 0, None
    idle_since = time.monotonic()
    while seen < expected and time.monotonic() - idle_since < 10:
        messages = consumer.consume(num_messages=5000, timeout=0.5)
        if messages:
            idle_since = time.monotonic()
        for message in messages:
            if message.error() is None:
                started = started or time.time()
                _decode(message.value())
                seen += 1
    out.put((seen, started, time.time()))
    consumer.close()


def baseline_consume_decode(settings: Settings, processes: int, expected: int) -> dict:
    """The Python ceiling: `processes` bare consumers sharing the raw topics' partitions, each
    record consumed and decoded, nothing else."""
    topics = [settings.topic(raw_topic(p)) for p in RAW_PLATFORMS]
    counts = _partition_counts(settings, topics)
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    procs = []
    for i in range(processes):
        mine = [p for p in range(settings.partitions) if p % processes == i]
        share = sum(counts[p] for p in mine)
        procs.append(ctx.Process(target=_consume_partitions, args=(settings.bootstrap_servers, topics, mine, share, out)))
    for proc in procs:
        proc.start()
    results = [out.get(timeout=300) for _ in procs]
    for proc in procs:
        proc.join(30)
    seen = sum(r[0] for r in results)
    elapsed = max(r[2] for r in results) - min(r[1] for r in results if r[1])
    return {"processes": processes, "events": seen, "seconds": round(elapsed, 3), "events_per_s": round(seen / elapsed)}


def _partition_counts(settings: Settings, topics: list[str]) -> dict[int, int]:
    consumer = Consumer({"bootstrap.servers": settings.bootstrap_servers, "group.id": "bench-watermarks"})
    try:
        counts = {p: 0 for p in range(settings.partitions)}
        for topic in topics:
            for p in range(settings.partitions):
                low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
                counts[p] += high - low
        return counts
    finally:
        consumer.close()


def pipeline_rate(bootstrap: str, workers: int, events: int, skus: int, profile_seconds: float = 0,
                  build: str = "pure") -> dict:
    """One run on fresh topics: `workers` processes drain a backlog of `events` raw records;
    then the baseline reads the same topics with as many processes."""
    traffic = traffic_pool(events, skus)
    settings = harness.fresh_settings(bootstrap, f"tp{workers}", traffic.shop_settings())
    procs = harness.start_workers(settings, workers, build=build)
    profiler = None
    try:
        warmup = harness.warm_up(settings, procs)
        events_total = events + warmup
        load_before = harness.machine_load()
        publisher = RawPublisher(settings)
        cpu = harness.CpuMeter([proc.process.pid for proc in procs]).start()
        started = time.monotonic()
        samples = []
        publisher.publish_all(traffic.records)
        if profile_seconds:
            from bench.profile import start_profiler

            profiler = start_profiler(procs[0].process.pid, profile_seconds)
        stage_lags = []
        while True:
            samples.append((time.monotonic() - started, harness.processed_events(procs)))
            if samples[-1][1] >= events_total:
                parts = harness.lag_parts(settings)
                stage_lags.append((round(time.monotonic() - started, 2), parts))
                if sum(parts.values()) == 0:
                    break
            for proc in procs:
                if not proc.alive:
                    raise RuntimeError(f"worker died:\n{proc.log_tail()}")
            if time.monotonic() - started > 1800:
                raise TimeoutError("pipeline not drained after 30 min")
            time.sleep(0.5)
        elapsed = time.monotonic() - started
        cpu_seconds = cpu.stop()
        rss = _rss_mb(procs)
    finally:
        if profiler is not None:
            profiler.finish()
        harness.stop_workers(procs)
    baseline = baseline_consume_decode(settings, workers, events)
    rate = events / elapsed
    return {
        "workers": workers,
        "build": build,
        "events": events,
        "skus": skus,
        "seconds": round(elapsed, 2),
        "events_per_s": round(rate),
        "events_per_s_per_worker": round(rate / workers),
        "baseline": baseline,
        "ratio_to_baseline": round(rate / baseline["events_per_s"], 4),
        "progress": [(round(t, 2), n) for t, n in samples],
        "stage_lags_after_normalized": stage_lags,
        "worker_rss_mb": rss,
        "cpu": cpu_seconds,
        "load_before": load_before,
        "load_after": harness.machine_load(),
    }


def _rss_mb(procs) -> list[float]:
    from bench.scale import rss_bytes

    return [round(rss_bytes(p.process.pid) / 2**20, 1) for p in procs]


def run(bootstrap: str, events: int = 50_000, workers: tuple[int, ...] = (1, 2), skus: int = 2000,
        builds: tuple[str, ...] = harness.BUILDS, repeats: int = 1) -> dict:
    """Each (workers, build) `repeats` times, interleaved so that a slow spell of the machine does
    not fall on one build; the row kept is the run with the median rate, the others' rates with it."""
    result = {"benchmark": "throughput", "load_start": harness.machine_load(), "repeats": repeats, "runs": []}
    measured: dict[tuple[int, str], list[dict]] = {}
    for _ in range(repeats):
        for n in workers:
            for build in builds:
                run_result = pipeline_rate(bootstrap, n, events, skus, build=build)
                print(f"throughput: {n} worker(s), {build}: {run_result['events_per_s']} events/s, baseline "
                      f"{run_result['baseline']['events_per_s']}/s, ratio {run_result['ratio_to_baseline']}", flush=True)
                measured.setdefault((n, build), []).append(run_result)
                result["runs"] = [_median_run(measured[(w, b)]) for b in builds for w in workers if (w, b) in measured]
                harness.save("throughput", result)
    return result


def _median_run(runs: list[dict]) -> dict:
    ordered = sorted(runs, key=lambda r: r["events_per_s"])
    return {**ordered[(len(ordered) - 1) // 2], "all_events_per_s": [r["events_per_s"] for r in runs]}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--skus", type=int, default=2_000)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--builds", nargs="+", default=list(harness.BUILDS), choices=harness.BUILDS)
    parser.add_argument("--repeats", type=int, default=1, help="runs per configuration; the median is kept")
    parser.add_argument("--bootstrap", default=None, help="an existing broker; default: start the embedded one")
    args = parser.parse_args(argv)
    with harness.broker(args.bootstrap) as bootstrap:
        run(bootstrap, args.events, tuple(args.workers), args.skus, tuple(args.builds), args.repeats)


if __name__ == "__main__":
    main()
