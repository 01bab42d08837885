"""Every benchmark in one command, then BENCHMARKS.md:

    python -m bench run [--quick] [--only throughput latency ...] [--bootstrap host:port]
    python -m bench report            # BENCHMARKS.md and plots from bench/results/*.json

Each benchmark also runs alone: python -m bench.throughput | latency | spike | scale | oversell | profile.
--quick: smaller loads and shorter windows (minutes, not an hour); the full run follows the issue
where the machine's time allows (see BENCHMARKS.md for what was run).
"""

from __future__ import annotations

import argparse
import sys
import time

from bench import harness

ORDER = ("throughput", "profile", "latency", "spike", "scale", "oversell")

# Loads per mode: quick keeps the whole run within ~15 minutes on 2 cores.
PLANS = {
    "quick": {
        # Backlogs large enough that the pipeline's fill and the last commit (~1-2 s) weigh little.
        "throughput": {"events": 60_000, "workers": (1, 2)},
        "profile": {"events": 60_000, "seconds": 6},
        # 200/s added below the rates: on a loaded 2-core machine 1k/s may not be sustained,
        # and a latency needs a rate that is.
        "latency": {"rates": (200, 1000, 5000, 10000), "seconds": (15, 15, 8, 6)},
        "spike": {"steady_rate": 300, "factor": 10, "spike_seconds": 20, "steady_seconds": 15, "after_seconds": 60},
        "scale": {"sizes": (10_000, 30_000), "extrapolate_to": (100_000, 1_000_000)},
    },
    "full": {
        # Three runs per configuration, the median kept: single runs here vary by +-20%.
        "throughput": {"events": 150_000, "workers": (1, 2), "repeats": 3},
        # A backlog the worker takes longer than the sampling window to drain: lock time only.
        "profile": {"events": 150_000, "seconds": 12},
        "latency": {"rates": (200, 1000, 5000, 10000), "seconds": (30, 30, 20, 10)},
        # The spike: 10x for five minutes.
        "spike": {"steady_rate": 300, "factor": 10, "spike_seconds": 300, "steady_seconds": 30, "after_seconds": 120},
        # The top size: a million SKUs x 5 locations (5M movements, ~7 min to load here).
        "scale": {"sizes": (10_000, 100_000, 1_000_000), "extrapolate_to": ()},
    },
}


def run_all(bootstrap: str, quick: bool, only) -> None:
    from bench import latency, oversell, profile, scale, spike, throughput

    plan = PLANS["quick" if quick else "full"]
    names = [n for n in ORDER if not only or n in only]
    meta = {"mode": "quick" if quick else "full", "started": time.strftime("%Y-%m-%d %H:%M:%S"),
            "load_start": harness.machine_load(), "command": " ".join(["python -m bench"] + sys.argv[1:])}
    for name in names:
        began = time.monotonic()
        print(f"== {name}", flush=True)
        try:
            if name == "throughput":
                throughput.run(bootstrap, **plan["throughput"])
            elif name == "profile":
                profile.run(bootstrap, **plan["profile"])
            elif name == "latency":
                latency.run(bootstrap, **plan["latency"])
            elif name == "spike":
                spike.run(bootstrap, **plan["spike"])
            elif name == "scale":
                scale.run(bootstrap, **plan["scale"])
            elif name == "oversell":
                samples, source = oversell.latencies_from_results()
                harness.save("oversell", oversell.run(samples, source))
        except Exception as exc:  # one failed benchmark must not lose the others' results
            print(f"!! {name} failed: {type(exc).__name__}: {exc}", flush=True)
            meta.setdefault("failed", {})[name] = f"{type(exc).__name__}: {exc}"[:500]
        meta.setdefault("seconds", {})[name] = round(time.monotonic() - began, 1)
    meta["load_end"] = harness.machine_load()
    previous = harness.load("run") or {}
    if only and previous:  # a partial run keeps what the earlier run recorded for the others
        previous.setdefault("seconds", {}).update(meta["seconds"])
        previous["failed"] = {**previous.get("failed", {}), **meta.get("failed", {})}
        for name in names:
            if name not in meta.get("failed", {}):
                previous["failed"].pop(name, None)
        previous["load_end"] = meta["load_end"]
        meta = previous
    harness.save("run", meta)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the benchmarks, then write BENCHMARKS.md")
    run.add_argument("--quick", action="store_true")
    run.add_argument("--only", nargs="+", choices=ORDER)
    run.add_argument("--bootstrap", default=None)
    sub.add_parser("report", help="write BENCHMARKS.md and the plots from bench/results")
    args = parser.parse_args(argv)
    if args.command == "run":
        with harness.broker(args.bootstrap) as bootstrap:
            run_all(bootstrap, args.quick, args.only)
    from bench.report import write_report

    print(f"wrote {write_report()}")


if __name__ == "__main__":
    main()
