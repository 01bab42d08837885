"""Where a worker's time goes while it drains a backlog: py-spy samples the worker process during a
throughput run (its own run: the sampler costs CPU, so it never times the measured runs) and
writes a flame graph (`bench/results/profile.svg`) plus raw stacks, from which the top frames by
share of samples and the share per layer (our code, Faust, aiokafka, RocksDB, Avro...) are
computed.

    python -m bench.profile [--events 30000] [--seconds 20]
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from bench import harness

# Layer of a frame, by the file py-spy names (first match wins).
LAYERS = (
    ("rocksdb (rocksdict)", ("rocksdict",)),
    ("avro (fastavro)", ("fastavro",)),
    ("aiokafka", ("aiokafka",)),
    ("confluent-kafka (ingest batcher)", ("confluent_kafka",)),
    ("faust / mode", ("faust", "mode/", "mode.")),
    ("asyncio / stdlib", ("asyncio", "selectors", "threading", "queue.py", "concurrent", "socket", "ssl")),
    ("stockstream: connectors (platform parsing)", ("connectors/",)),
    ("stockstream: core (domain logic)", ("stockstream/core",)),
    ("stockstream: streams (agents, processors)", ("streams/",)),
    ("stockstream: schemas (codec, mappers)", ("schemas/",)),
    ("stockstream: other", ("stockstream/",)),
)
_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^:()]+)(?::\d+)?\)$")


def py_spy() -> str:
    path = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(path).exists():
        raise FileNotFoundError("py-spy is not installed: pip install 'stockstream[bench]'")
    return path


@dataclass
class Profiler:
    processes: list[subprocess.Popen]
    raw_path: Path
    svg_path: Path

    def finish(self, timeout: float = 120) -> None:
        for proc in self.processes:
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.terminate()


def start_profiler(pid: int, seconds: float) -> Profiler:
    """Two samplers at 200 Hz of the thread holding the interpreter lock (`--gil`; non-blocking,
    so the worker is not paused): a flame graph and raw collapsed stacks to compute shares from.
    A worker is bound by that lock (its agents, the ingest batcher thread and Faust's consumer
    thread share it), so shares of lock time are shares of what limits it. Sampling every thread
    instead counted idle waits and, at 50 Hz, left ~150 samples per run."""
    harness.RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    raw_path, svg_path = harness.RESULTS_DIR / "profile.txt", harness.RESULTS_DIR / "profile.svg"
    common = [py_spy(), "record", "--pid", str(pid), "--duration", str(int(seconds)), "--rate", "200", "--nonblocking", "--gil", "--function"]
    processes = [
        subprocess.Popen(common + ["--format", "raw", "-o", str(raw_path)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
        subprocess.Popen(common + ["-o", str(svg_path)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
    ]
    return Profiler(processes, raw_path, svg_path)


def parse_collapsed(text: str) -> list[tuple[list[str], int]]:
    """py-spy raw output: one `frame;frame;...;leaf count` line per distinct stack."""
    stacks = []
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            stacks.append((stack.split(";"), int(count)))
    return stacks


def layer_of(frame: str) -> str:
    match = _FRAME.match(frame)
    where = match.group("file") if match else frame
    for layer, needles in LAYERS:
        if any(needle in where for needle in needles):
            return layer
    return "other (python, other libraries)"


def shares(stacks: list[tuple[list[str], int]], top: int = 40) -> dict:
    """Self time per frame (the leaf) and per layer, inclusive time per frame, as % of samples.
    Thread-name frames py-spy puts at the root are skipped."""
    total = sum(count for _, count in stacks) or 1
    self_frames: Counter = Counter()
    inclusive: Counter = Counter()
    layers: Counter = Counter()
    for frames, count in stacks:
        frames = [f for f in frames if _FRAME.match(f)]
        if not frames:
            continue
        leaf = frames[-1]
        self_frames[leaf] += count
        layers[layer_of(leaf)] += count
        for frame in set(frames):
            inclusive[frame] += count
    pct = lambda n: round(100 * n / total, 1)  # noqa: E731
    return {
        "samples": total,
        "self_top": [(frame, pct(n)) for frame, n in self_frames.most_common(top)],
        "inclusive_top": [(frame, pct(n)) for frame, n in inclusive.most_common(top)],
        "layers": [(layer, pct(n)) for layer, n in layers.most_common()],
    }


def run(bootstrap: str, events: int = 30_000, seconds: float = 20, skus: int = 2000) -> dict:
    from bench.processors import run_build as processors_alone
    from bench.throughput import pipeline_rate

    measured = pipeline_rate(bootstrap, 1, events, skus, profile_seconds=seconds)
    raw = harness.RESULTS_DIR / "profile.txt"
    analysis = shares(parse_collapsed(raw.read_text())) if raw.exists() else {}
    result = {
        "benchmark": "profile", "events": events, "seconds_sampled": seconds,
        "events_per_s_while_sampled": measured["events_per_s"], "analysis": analysis,
        "flamegraph": "bench/results/profile.svg", "load": harness.machine_load(),
        # The same traffic through the normalizer and stock processor alone: the ceiling of our Python.
        "processors_alone": processors_alone("pure", events, skus),
        # ... and on the compiled build of the hot path (stockstream/compiled.py)
        "processors_alone_compiled": processors_alone("compiled", events, skus),
    }
    harness.save("profile", result)
    for layer, pct in analysis.get("layers", []):
        print(f"profile: {pct:5.1f}%  {layer}", flush=True)
    for key in ("processors_alone", "processors_alone_compiled"):
        alone = result[key]
        print(f"profile: processors alone ({alone['build']}) {alone['events_per_s']:,} events/s (normalize "
              f"{alone['normalize_events_per_s']:,}/s, stock {alone['stock_events_per_s']:,}/s)", flush=True)
    return result


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=30_000)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--bootstrap", default=None)
    args = parser.parse_args(argv)
    with harness.broker(args.bootstrap) as bootstrap:
        run(bootstrap, args.events, args.seconds)


if __name__ == "__main__":
    main()
