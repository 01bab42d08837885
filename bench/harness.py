"""What every benchmark needs around the pipeline: a broker, fresh settings per run, workers,
progress from the workers' own metrics, output-record timestamps, and the JSON results.

Each benchmark gets its own topic prefix, data directory and ports, so runs never see each
other's records or state. Results carry the machine's load average: this machine has 2 cores
shared with other jobs, so only ratios against a baseline measured in the same run compare.
"""

from __future__ import annotations

import functools
import json
import os
import socket
import tempfile
import time
import urllib.request
import uuid
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Iterator, Optional, Sequence

from confluent_kafka import Consumer, TopicPartition

from stockstream.lag import group_lag
from stockstream.process import WorkerProcess
from stockstream.settings import Settings, ShopCredentials
from stockstream.topics import ALL_TOPICS, ensure_topics

RESULTS_DIR = Path(__file__).resolve().parent / "results"
PROCESSED_METRIC = "stockstream_raw_records_processed_total"
# What a worker runs: the sources as installed, or the compiled build of its hot path.
BUILDS = ("pure", "compiled")


def free_ports(count: int) -> list[int]:
    """Distinct free ports: every socket stays bound until all are picked."""
    with ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) for _ in range(count)]
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]


@contextmanager
def broker(bootstrap: Optional[str] = None, workdir: Optional[Path] = None) -> Iterator[str]:
    """`bootstrap` if given, else an embedded single-node broker on free ports for the block."""
    if bootstrap:
        yield bootstrap
        return
    from stockstream.kafka.local import LocalKafka

    workdir = workdir or Path(tempfile.mkdtemp(prefix="stockstream-bench-kafka-"))
    port, controller = free_ports(2)
    kafka = LocalKafka.from_settings(Settings(), data_dir=workdir, port=port, controller_port=controller, detach=False)
    kafka.start()
    try:
        yield kafka.bootstrap_servers
    finally:
        kafka.stop()


def fresh_settings(bootstrap: str, name: str, shops: Sequence[dict] = (), partitions: int = 4) -> Settings:
    """Settings of one benchmark run: own topic prefix and data dir, topics created."""
    run = f"bench-{name}-{uuid.uuid4().hex[:6]}"
    settings = Settings(
        # By its env name: the field's validation alias makes pydantic ignore the keyword.
        STOCKSTREAM_BOOTSTRAP_SERVERS=bootstrap,
        topic_prefix=f"{run}-",
        data_dir=Path(tempfile.mkdtemp(prefix=f"stockstream-{run}-")),
        web_port=free_ports(1)[0],
        partitions=partitions,
        shops=[ShopCredentials(**shop) for shop in shops],
    )
    ensure_topics(settings)
    return settings


def worker_settings(settings: Settings, index: int) -> Settings:
    """Worker `index` of a run: same topics and app, own port (so own instance id) and state dir."""
    if index == 0:
        return settings
    return settings.model_copy(update={"web_port": free_ports(1)[0], "data_dir": Path(settings.data_dir) / f"w{index}"})


@functools.cache
def _compiled_dir() -> Path:
    from stockstream import compiled

    target = RESULTS_DIR / "cache" / "compiled"
    if target.exists():
        import shutil

        shutil.rmtree(target)  # built from the sources of this run, never an older copy
    print(f"building the compiled hot path into {target} ...", flush=True)
    return compiled.build_tree(target)


def code_dir(build: str) -> Optional[Path]:
    """Where workers of `build` run from: None (the installed sources) or the compiled copy, built
    once per benchmark process from the current sources."""
    if build not in BUILDS:
        raise ValueError(f"build {build!r}: one of {BUILDS}")
    return _compiled_dir() if build == "compiled" else None


def start_workers(settings: Settings, count: int, ready_timeout: float = 180, build: str = "pure") -> list[WorkerProcess]:
    directory = code_dir(build)
    workers = [WorkerProcess(worker_settings(settings, i), code_dir=directory).start() for i in range(count)]
    try:
        for worker in workers:
            worker.wait_ready(timeout=ready_timeout)
    except Exception:
        stop_workers(workers)
        raise
    return workers


def warm_up(settings: Settings, workers: Sequence[WorkerProcess], records: int = 16, timeout: float = 300) -> int:
    """Send `records` probe receipts through and wait until they are processed and the group has
    committed everything: the workers have joined, been assigned and recovered, so a measurement
    that starts now holds no rebalance. Returns the records sent (the processed counter has them)."""
    from bench.feed import PROBE_DOC_PREFIX, probe_record
    from connectors.publisher import RawPublisher

    now = int(time.time() * 1000)
    RawPublisher(settings).publish_all(("warehouse", probe_record(9_000_000 + n, now)) for n in range(records))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if processed_events(workers) >= records and pipeline_lag(settings) == 0:
            time.sleep(2)  # a join seen late still rebalances: give it a moment, then check again
            if pipeline_lag(settings) == 0:
                return records
        for worker in workers:
            if not worker.alive:
                raise RuntimeError(f"worker died:\n{worker.log_tail()}")
        time.sleep(0.5)
    raise TimeoutError(f"warm-up records not through after {timeout}s ({PROBE_DOC_PREFIX} probes)")


def stop_workers(workers: Sequence[WorkerProcess]) -> None:
    for worker in workers:
        worker.stop()


def processed_events(workers: Sequence[WorkerProcess]) -> int:
    """Raw records the normalizers have processed, summed over the workers' /metrics."""
    total = 0
    for worker in workers:
        try:
            with urllib.request.urlopen(f"{worker.url}/metrics", timeout=5) as response:
                text = response.read().decode()
        except OSError:
            continue  # a worker busy or restarting: counted at the next sample
        for line in text.splitlines():
            if line.startswith(PROCESSED_METRIC + "{"):
                total += int(float(line.rsplit(" ", 1)[1]))
    return total


def lag_parts(settings: Settings) -> dict[str, int]:
    """Records not yet committed, per stage: raw topics by the ingest batcher, the ingest topic by
    the normalizer, the movements topic by the stock agent."""
    app = settings.topic(settings.app_id)
    raw = [settings.topic(spec.name) for spec in ALL_TOPICS if spec.name.startswith("raw.")]
    bootstrap, partitions = settings.bootstrap_servers, settings.partitions
    return {
        "raw": group_lag(bootstrap, f"{app}-ingest", raw, partitions),
        "ingest": group_lag(bootstrap, app, [settings.topic("ingest")], partitions),
        "movements": group_lag(bootstrap, app, [settings.topic("movements")], partitions),
    }


def pipeline_lag(settings: Settings) -> int:
    return sum(lag_parts(settings).values())


def wait_drained(settings: Settings, workers: Sequence[WorkerProcess], timeout: float, poll: float = 0.5) -> float:
    """Until every group has committed everything; returns the monotonic time it was seen."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pipeline_lag(settings) == 0:
            return time.monotonic()
        for worker in workers:
            if not worker.alive:
                raise RuntimeError(f"worker died:\n{worker.log_tail()}")
        time.sleep(poll)
    raise TimeoutError(f"pipeline not drained after {timeout}s")


def end_offsets(bootstrap: str, topic: str, partitions: int) -> dict[int, int]:
    """Each partition's high watermark now: what a later `read_timestamps(since=...)` skips."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"bench-ends-{uuid.uuid4().hex[:6]}"})
    try:
        return {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in range(partitions)}
    finally:
        consumer.close()


def read_timestamps(
    bootstrap: str, topic: str, partitions: int, key_prefix: Optional[bytes] = None, since: Optional[dict[int, int]] = None,
) -> list[tuple[bytes, int]]:
    """(key, Kafka timestamp in ms) of every record now in `topic` (from the offsets `since`, if
    given: reading millions of earlier records would time the reader), keys filtered by prefix."""
    consumer = Consumer({
        "bootstrap.servers": bootstrap, "group.id": f"bench-read-{uuid.uuid4().hex[:6]}",
        "enable.auto.commit": False, "enable.partition.eof": False,
    })
    try:
        ends = {}
        assignment = []
        for p in range(partitions):
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            start = max(low, (since or {}).get(p, low))
            if high > start:
                ends[p] = high
                assignment.append(TopicPartition(topic, p, start))
        consumer.assign(assignment)
        out: list[tuple[bytes, int]] = []
        done: set[int] = set()
        idle_deadline = time.monotonic() + 60
        while len(done) < len(ends) and time.monotonic() < idle_deadline:
            for message in consumer.consume(num_messages=10_000, timeout=1.0):
                if message.error() is not None:
                    continue
                key = message.key() or b""
                if key_prefix is None or key.startswith(key_prefix):
                    out.append((key, message.timestamp()[1]))
                if message.offset() + 1 >= ends[message.partition()]:
                    done.add(message.partition())
                idle_deadline = time.monotonic() + 60
        return out
    finally:
        consumer.close()


def output_topic() -> str:
    """Where the pipeline's last step publishes: `allocations` once the stock processor emits
    allocation changes, `ats` before that."""
    from streams.stock import StockOutput

    return "allocations" if hasattr(StockOutput(), "allocation_records") else "ats"


class CpuMeter:
    """CPU seconds spent over a window: each worker's main thread (the agents) and its other threads
    (ingest batcher, Faust's consumer thread, librdkafka), the local broker's JVM, the machine."""

    def __init__(self, worker_pids: Sequence[int]) -> None:
        import psutil

        self._psutil = psutil
        self.workers = [psutil.Process(pid) for pid in worker_pids]
        brokers = [p for p in psutil.process_iter(["cmdline"]) if "kafka.Kafka" in " ".join(p.info["cmdline"] or ())]
        self.broker = brokers[0] if len(brokers) == 1 else None  # a remote or ambiguous broker: not measured

    def _sample(self) -> dict:
        times = self._psutil.cpu_times()
        sample = {"at": time.monotonic(), "machine_busy": sum(times) - times.idle - getattr(times, "iowait", 0.0),
                  "machine_total": sum(times), "workers": []}
        for worker in self.workers:
            threads = {t.id: t.user_time + t.system_time for t in worker.threads()}
            sample["workers"].append((threads.pop(worker.pid, 0.0), sum(threads.values())))
        if self.broker is not None:
            cpu = self.broker.cpu_times()
            sample["broker"] = cpu.user + cpu.system
        return sample

    def start(self) -> "CpuMeter":
        self._first = self._sample()
        return self

    def stop(self) -> dict:
        last, first = self._sample(), self._first
        seconds = last["at"] - first["at"]
        busy = (last["machine_busy"] - first["machine_busy"]) / max(last["machine_total"] - first["machine_total"], 1e-9)
        result = {
            "seconds": round(seconds, 2),
            "machine_busy_pct": round(100 * busy, 1),  # of all the machine's cores
            "workers": [{"main_thread_s": round(m1 - m0, 2), "other_threads_s": round(o1 - o0, 2)}
                        for (m0, o0), (m1, o1) in zip(first["workers"], last["workers"])],
        }
        if "broker" in first:
            result["broker_s"] = round(last["broker"] - first["broker"], 2)
        return result


def machine_load() -> dict:
    one, five, fifteen = os.getloadavg()
    return {"loadavg_1m": round(one, 2), "loadavg_5m": round(five, 2), "loadavg_15m": round(fifteen, 2), "cpus": os.cpu_count()}


def invocation() -> str:
    """The command line that is running, as a reader would type it (python -m bench...)."""
    import sys

    program = Path(sys.argv[0])
    module = "bench" if program.name == "__main__.py" and program.parent.name == "bench" else f"bench.{program.stem}"
    return " ".join(["python -m", module] + sys.argv[1:])


def save(name: str, result: dict) -> Path:
    """Writes `result`, stamped with when and by which command it was recorded (first save)."""
    result.setdefault("recorded", {"at": time.strftime("%Y-%m-%d %H:%M"), "command": invocation()})
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    return path


def load(name: str) -> Optional[dict]:
    path = RESULTS_DIR / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None
