"""End-to-end latency at fixed offered rates: from a raw record produced (its Kafka timestamp) to
the output record published (allocations, else ats: its Kafka timestamp), p50/p95/p99 over the
latency probes (bench/feed.py) offered with four-platform traffic at 1k, 5k and 10k events/s.

A rate is *sustained* when the workers keep up: the backlog at the end of the offered window is
below one second of traffic and the normalizer's processing rate over the second half of the
window is at least 95% of the offered rate. For a rate that is not sustained the latency only
measures how long the queue has grown, so the report gives the backlog (lag) instead.

    python -m bench.latency [--rates 1000 5000 10000] [--seconds 20 10 8] [--workers 1]
"""

from __future__ import annotations

import argparse

from bench import harness
from bench.feed import Phase, traffic_pool
from bench.paced import lag_between, run_paced
from bench.stats import slope, summarize_ms


def assess(run: dict, rate: float) -> dict:
    """Achieved rates, backlog and latency summary of one paced run at one offered rate."""
    phase = run["phases"][0]
    start, end = phase["start_s"], phase["end_s"]
    window = [(t, processed) for t, _p, processed in run["lag_samples"] if start <= t <= end]
    half = [(t, n) for t, n in window if t >= (start + end) / 2]
    processing_rate = slope(half) if len(half) >= 2 else 0.0
    lags = lag_between(run["lag_samples"], start, end + 0.5)
    end_lag = lags[-1][1] if lags else None
    drained_after = None if run["drained_at_s"] is None else run["drained_at_s"] - end
    # Kept up: the normalizer's backlog stayed under a second of traffic, and the whole pipeline
    # (the stock agent too, whose backlog the normalizer's count does not see) was drained
    # within max(2 s, 10% of the window) of the producer stopping.
    sustained = (
        end_lag is not None
        and end_lag <= max(phase["achieved_per_s"], 1)
        and processing_rate >= 0.95 * phase["achieved_per_s"]
        and drained_after is not None
        and drained_after <= max(2.0, 0.1 * phase["seconds"])
    )
    probes = [(t, ms) for t, ms in run["probe_latencies"] if start <= t <= end]
    in_window = [ms for _, ms in probes]
    last = [ms for _, ms in probes[-10:]]
    return {
        "offered_per_s": rate,
        "achieved_offered_per_s": phase["achieved_per_s"],
        "processing_per_s": round(processing_rate, 1),
        "window_s": phase["seconds"],
        "sustained": sustained,
        "max_lag_events": max((lag for _, lag in lags), default=None),
        "lag_at_end_events": end_lag,
        "lag_growth_per_s": round(slope(lags), 1) if len(lags) >= 2 else None,
        "latency": summarize_ms(in_window),
        "probes_through": len(in_window),
        "probes_sent": round(phase["records"] / 100),
        # How far behind the output was when the offer stopped: the last probes' latency.
        "delay_at_end_ms": round(sorted(last)[len(last) // 2]) if last else None,
        "drained_after_s": None if drained_after is None else round(drained_after, 1),
    }


def run(bootstrap: str, rates=(1000, 5000, 10000), seconds=(20, 10, 8), workers: int = 1, drain_timeout: float = 45,
        builds: tuple[str, ...] = harness.BUILDS) -> dict:
    pool = traffic_pool(max(int(r * s * 1.05) + 1000 for r, s in zip(rates, seconds)))
    result = {"benchmark": "latency", "workers": workers, "load_start": harness.machine_load(), "levels": [], "runs": []}
    for build, (rate, secs) in ((b, level) for b in builds for level in zip(rates, seconds)):
        paced = run_paced(bootstrap, f"lat{rate}", pool, [Phase(secs, rate, f"{rate}/s")], workers, drain_timeout,
                          build=build)
        level = assess(paced, rate)
        level["build"] = build
        level["output_topic"] = paced["output_topic"]
        level["load"] = paced["load_before"]
        result["levels"].append(level)
        result["runs"].append(paced)
        lat = level["latency"]
        print(f"latency ({build}): {rate}/s offered ({level['achieved_offered_per_s']}/s achieved), processing "
              f"{level['processing_per_s']}/s, sustained={level['sustained']}, p50/p95/p99 "
              f"{lat['p50_ms']}/{lat['p95_ms']}/{lat['p99_ms']} ms, lag at end {level['lag_at_end_events']}", flush=True)
        harness.save("latency", result)
    return result


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rates", type=int, nargs="+", default=[1000, 5000, 10000])
    parser.add_argument("--seconds", type=float, nargs="+", default=[20, 10, 8])
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--builds", nargs="+", default=list(harness.BUILDS), choices=harness.BUILDS)
    parser.add_argument("--bootstrap", default=None)
    args = parser.parse_args(argv)
    if len(args.seconds) != len(args.rates):
        parser.error("one --seconds per --rates")
    with harness.broker(args.bootstrap) as bootstrap:
        run(bootstrap, tuple(args.rates), tuple(args.seconds), args.workers, builds=tuple(args.builds))


if __name__ == "__main__":
    main()
