"""One paced run, shared by the latency and spike benchmarks: fresh topics, workers joined, traffic
offered phase by phase at fixed rates (with latency probes), the backlog sampled every 0.5 s
from the workers' own counters, then a bounded wait for the pipeline to drain, then the probes'
latencies read back from the topics."""

from __future__ import annotations

import itertools
import threading
import time
from dataclasses import dataclass, field
from typing import Optional, Sequence

from bench import harness
from bench.feed import PacedProducer, Phase, probe_latencies
from connectors.publisher import RawPublisher
from connectors.simulators.traffic import Traffic


@dataclass
class LagSampler:
    """(seconds since start, produced, processed) every `interval`: lag = produced - processed,
    in raw events (the normalizer's count; the stock agent behind it is checked at the end)."""

    workers: list
    interval: float = 0.5
    produced: int = 0
    samples: list[tuple[float, int, int]] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)
    started_wall: float = field(default_factory=time.time)
    _stop: threading.Event = field(default_factory=threading.Event)

    def start(self) -> "LagSampler":
        self._thread = threading.Thread(target=self._loop, name="lag-sampler", daemon=True)
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            processed = harness.processed_events(self.workers)
            self.samples.append((round(time.monotonic() - self.started, 2), self.produced, processed))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)


def run_paced(
    bootstrap: str, name: str, traffic: Traffic, phases: Sequence[Phase], workers: int = 1,
    drain_timeout: float = 60, probe_every: int = 100, build: str = "pure",
) -> dict:
    settings = harness.fresh_settings(bootstrap, name, traffic.shop_settings())
    procs = harness.start_workers(settings, workers, build=build)
    drained_at: Optional[float] = None
    try:
        # The traffic opens with the initial stock receipts (every SKU at every location): they
        # go through with the warm-up, so the measured window holds the steady mix only.
        opening = sum(1 for _ in itertools.takewhile(lambda item: item[0] == "warehouse", traffic.records))
        RawPublisher(settings).publish_all(traffic.records[:opening])
        records = iter(traffic.records[opening:])
        harness.warm_up(settings, procs)  # joined, assigned, recovered: no rebalance in the window
        load_before = harness.machine_load()
        sampler = LagSampler(procs).start()
        producer = PacedProducer(settings, records, probe_every=probe_every)

        def on_tick(produced: int) -> None:
            sampler.produced = produced

        feed = producer.run(phases, on_tick=on_tick)
        sampler.produced = feed.produced
        offered_end = time.monotonic() - sampler.started
        deadline = time.monotonic() + drain_timeout
        while time.monotonic() < deadline:
            if sampler.samples and sampler.samples[-1][2] >= feed.produced and harness.pipeline_lag(settings) == 0:
                drained_at = time.monotonic() - sampler.started
                break
            time.sleep(0.5)
        sampler.stop()
    finally:
        harness.stop_workers(procs)
    output = harness.output_topic()
    latencies = probe_latencies(settings, output)
    start_wall = sampler.started_wall  # every time below: seconds since the sampler started
    for phase in feed.phases:
        phase["start_s"] = round(phase.pop("start_wall") - start_wall, 2)
        phase["end_s"] = round(phase.pop("end_wall") - start_wall, 2)
    return {
        "name": name,
        "workers": workers,
        "build": build,
        "output_topic": output,
        "phases": feed.phases,
        "produced": feed.produced,
        "probes": feed.probes,
        # (s since the sampler started, ms); warm-up probes came before it
        "probe_latencies": [(round(t - start_wall, 3), ms) for t, ms in latencies if t >= start_wall],
        "lag_samples": sampler.samples,
        "offered_end_s": round(offered_end, 2),
        "drained_at_s": None if drained_at is None else round(drained_at, 2),
        "load_before": load_before,
        "load_after": harness.machine_load(),
    }


def lag_between(samples: Sequence[tuple[float, int, int]], start: float, end: float) -> list[tuple[float, int]]:
    return [(t, produced - processed) for t, produced, processed in samples if start <= t <= end]
