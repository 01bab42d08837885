"""Raw events/s through the whole pipeline (raw -> ingest -> movements -> stock/ATS) for one
worker process, next to a bare confluent-kafka consume-and-decode loop over the same topic, both
measured in the same run on the same broker (the machines are noisy: compare ratios).

    python -m bench.throughput --events 50000 [--bootstrap host:port]

Without --bootstrap it starts the embedded broker on free ports in a temp dir.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import uuid
from pathlib import Path

import orjson
from confluent_kafka import Consumer

from stockstream.lag import group_lag
from connectors.publisher import RawPublisher
from connectors.simulators.tmall_traffic import TmallTraffic
from stockstream.process import WorkerProcess
from stockstream.settings import Settings
from stockstream.topics import ensure_topics, raw_topic


def baseline_consume_decode(settings: Settings, topic: str, expected: int) -> float:
    """The Python ceiling: consume every record and JSON-decode its payload, nothing else."""
    consumer = Consumer({
        "bootstrap.servers": settings.bootstrap_servers, "group.id": f"baseline-{uuid.uuid4().hex[:6]}",
        "auto.offset.reset": "earliest", "enable.auto.commit": False,
    })
    consumer.subscribe([topic])
    seen, started = 0, None
    while seen < expected:
        for message in consumer.consume(num_messages=5000, timeout=1.0):
            if message.error() is None:
                started = started or time.perf_counter()
                envelope = orjson.loads(message.value())
                orjson.loads(envelope["content"])
                seen += 1
    elapsed = time.perf_counter() - started
    consumer.close()
    return seen / elapsed


def pipeline_rate(settings: Settings, events: int, timeout: float = 900) -> dict:
    worker = WorkerProcess(settings).start()
    try:
        worker.wait_ready(timeout=120)
        started = time.perf_counter()
        app_group = settings.topic(settings.app_id)
        checks = [
            (f"{app_group}-ingest", [settings.topic(raw_topic("tmall")), settings.topic("raw.warehouse")]),
            (app_group, [settings.topic("ingest"), settings.topic("movements")]),
        ]
        while time.perf_counter() - started < timeout:
            lags = [group_lag(settings.bootstrap_servers, g, t, settings.partitions) for g, t in checks]
            if sum(lags) == 0:
                break
            assert worker.alive, worker.log_tail()
            time.sleep(0.5)
        elapsed = time.perf_counter() - started
        return {"events": events, "seconds": round(elapsed, 2), "events_per_s": round(events / elapsed)}
    finally:
        worker.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--skus", type=int, default=2_000)
    parser.add_argument("--bootstrap", default=None)
    parser.add_argument("--out", default="bench/results/throughput.json")
    args = parser.parse_args()

    broker = None
    workdir = Path(tempfile.mkdtemp(prefix="stockstream-bench-"))
    if args.bootstrap is None:
        from stockstream.kafka.local import LocalKafka
        from tests.conftest import free_tcp_ports

        port, controller = free_tcp_ports(2)
        broker = LocalKafka.from_settings(Settings(), data_dir=workdir / "kafka", port=port, controller_port=controller,
                                          detach=False)
        broker.start()
        args.bootstrap = broker.bootstrap_servers
    try:
        settings = Settings(bootstrap_servers=args.bootstrap, topic_prefix=f"bench-{uuid.uuid4().hex[:6]}-",
                            data_dir=workdir / "worker", web_port=16066, partitions=4)
        ensure_topics(settings)
        traffic = TmallTraffic(skus=[f"SKU-{i:05d}" for i in range(args.skus)], duplicate_rate=0.2, seed=1)
        publisher = RawPublisher(settings)
        publisher.publish("warehouse", traffic.receipts())
        publisher.publish("tmall", traffic.messages(args.events))
        baseline = baseline_consume_decode(settings, settings.topic(raw_topic("tmall")), args.events)
        pipeline = pipeline_rate(settings, args.events)
        result = {
            "baseline_consume_decode_events_per_s": round(baseline),
            "pipeline_one_worker": pipeline,
            "ratio_pipeline_to_baseline": round(pipeline["events_per_s"] / baseline, 3),
        }
        print(json.dumps(result, indent=2))
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    finally:
        if broker is not None:
            broker.stop()


if __name__ == "__main__":
    main()
