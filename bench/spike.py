"""The 618 spike: a steady load, then `factor` x that load for a window, then steady again.
Reported: the largest backlog (raw events offered but not yet normalized), the time from the
spike's end until the output has caught up (a probe produced then comes out about as fast as
before the spike; the normalizer's own backlog clears earlier and is reported too), and the
probes' end-to-end latency before, during and after the spike.

The issue's spike is 5 minutes; `--spike-seconds` sets it (shorter in --quick).

    python -m bench.spike [--steady-rate 500] [--factor 10] [--spike-seconds 300]
"""

from __future__ import annotations

import argparse

from bench import harness
from bench.feed import Phase, traffic_pool
from bench.paced import run_paced
from bench.stats import summarize_ms


def assess(run: dict, steady_rate: float) -> dict:
    before, spike, after = run["phases"]
    threshold = max(steady_rate, 1)  # one second of steady traffic behind
    lags = [(t, produced - processed) for t, produced, processed in run["lag_samples"]]
    drained_at = next((t for t, lag in lags if t >= spike["end_s"] and lag <= threshold), None)
    windows = {"before": before, "spike": spike, "after": after}
    latency = {
        name: summarize_ms(ms for t, ms in run["probe_latencies"] if w["start_s"] <= t <= w["end_s"])
        for name, w in windows.items()
    }
    # The output caught up when a probe produced after the spike came out about as fast as before
    # it: the queue was empty when it was produced. The normalizer's count alone misses the stock
    # agent's backlog behind it.
    quick_ms = max(1000.0, 2 * (latency["before"]["p50_ms"] or 0))
    caught_up = next((t for t, ms in run["probe_latencies"] if t >= spike["end_s"] and ms <= quick_ms), None)
    return {
        "steady_per_s": steady_rate,
        "spike_per_s": spike["offered_per_s"],
        "spike_achieved_per_s": spike["achieved_per_s"],
        "spike_seconds": spike["seconds"],
        "max_lag_events": max((lag for _, lag in lags), default=None),
        "drain_threshold_events": threshold,
        "normalizer_drained_after_spike_s": None if drained_at is None else round(drained_at - spike["end_s"], 1),
        "caught_up_latency_ms": quick_ms,
        "drained_after_spike_s": None if caught_up is None else round(caught_up - spike["end_s"], 1),
        "after_window_s": after["seconds"],
        "latency": latency,
    }


def run(bootstrap: str, steady_rate: float = 500, factor: float = 10, spike_seconds: float = 300,
        steady_seconds: float = 30, after_seconds: float = 90, workers: int = 1) -> dict:
    phases = [
        Phase(steady_seconds, steady_rate, "steady"),
        Phase(spike_seconds, steady_rate * factor, "spike"),
        Phase(after_seconds, steady_rate, "steady after"),
    ]
    events = int(sum(p.seconds * p.rate for p in phases) * 1.05) + 1000
    paced = run_paced(bootstrap, "spike", traffic_pool(events), phases, workers, drain_timeout=after_seconds)
    summary = assess(paced, steady_rate)
    result = {"benchmark": "spike", "workers": workers, "factor": factor, "summary": summary, "run": paced,
              "load_start": paced["load_before"]}
    harness.save("spike", result)
    lat = summary["latency"]["spike"]
    print(f"spike: {steady_rate}/s -> {steady_rate * factor}/s for {spike_seconds}s: max lag {summary['max_lag_events']}, "
          f"drained {summary['drained_after_spike_s']} s after, p99 in spike {lat['p99_ms']} ms", flush=True)
    return result


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steady-rate", type=float, default=500)
    parser.add_argument("--factor", type=float, default=10)
    parser.add_argument("--spike-seconds", type=float, default=300)
    parser.add_argument("--steady-seconds", type=float, default=30)
    parser.add_argument("--after-seconds", type=float, default=90)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--bootstrap", default=None)
    args = parser.parse_args(argv)
    with harness.broker(args.bootstrap) as bootstrap:
        run(bootstrap, args.steady_rate, args.factor, args.spike_seconds, args.steady_seconds, args.after_seconds, args.workers)


if __name__ == "__main__":
    main()
