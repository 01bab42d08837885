"""`stockstream demo`: the whole pipeline on one machine, in one command.

Starts the embedded Kafka broker (unless STOCKSTREAM_BOOTSTRAP_SERVERS points elsewhere and
answers), creates the topics, starts a worker process, stocks a warehouse, and lets simulated
Tmall shoppers order at a steady rate (with marketplace-style duplicates) while a live table shows
each SKU's available-to-sell as the worker publishes it. Ctrl-C stops everything it started.
"""

from __future__ import annotations

import signal
import threading
import time
import uuid
from dataclasses import dataclass, field

from confluent_kafka import Consumer
from rich.console import Console
from rich.live import Live
from rich.table import Table

from connectors.publisher import RawPublisher
from connectors.simulators.tmall_traffic import TmallTraffic
from schemas import codec
from schemas.names import ATS_SNAPSHOT
from stockstream.process import WorkerProcess
from stockstream.settings import Settings
from stockstream.topics import ATS, ensure_topics

SKUS = [f"SKU-{n:03d}" for n in range(1, 13)]


@dataclass
class AtsBoard:
    """Latest ATS snapshot per SKU, read from the compacted `ats` topic."""

    latest: dict[str, dict] = field(default_factory=dict)
    updates: int = 0

    def render(self, orders_sent: int, started: float) -> Table:
        table = Table(title=f"stockstream demo: live available-to-sell  ({orders_sent} raw messages sent, "
                      f"{self.updates} ATS updates, {time.monotonic() - started:.0f}s)  Ctrl-C to stop")
        for column in ("SKU", "ATS", "on hand", "reserved", "by channel", "version"):
            table.add_column(column, justify="right" if column not in ("SKU", "by channel") else "left")
        for sku in sorted(self.latest):
            snap = self.latest[sku]
            channels = ", ".join(f"{c} {q}" for c, q in sorted(snap["reserved_by_channel"].items())) or "-"
            table.add_row(sku, str(snap["ats"]), str(snap["sellable_on_hand"]), str(snap["reserved"]), channels,
                          str(snap["version"]))
        return table


def _ats_consumer(settings: Settings) -> Consumer:
    consumer = Consumer({
        "bootstrap.servers": settings.bootstrap_servers,
        "group.id": f"demo-board-{uuid.uuid4().hex[:8]}",
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
    })
    consumer.subscribe([settings.topic(ATS.name)])
    return consumer


def _start_broker_if_needed(settings: Settings, console: Console):
    """The embedded broker, started, unless the configured bootstrap servers already answer."""
    from stockstream.kafka.local import LocalKafka, kafka_answers

    if kafka_answers(settings.bootstrap_servers):
        return None
    broker = LocalKafka.from_settings(settings)
    if broker.bootstrap_servers != settings.bootstrap_servers:
        raise SystemExit(f"no Kafka answers at {settings.bootstrap_servers}")
    console.print(f"starting embedded Kafka {broker.version} (first run resolves it from Maven Central)...")
    broker.start()
    return broker


def run_demo(settings: Settings, rate_per_second: float = 20.0, duration: float | None = None) -> None:
    console = Console()
    broker = _start_broker_if_needed(settings, console)
    worker = None
    stop = threading.Event()
    # Ctrl-C and SIGTERM end the loop at its next turn; a KeyboardInterrupt raised inside a
    # librdkafka call would be deferred until that call returns, and could skip the cleanup.
    previous_handlers = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        ensure_topics(settings)
        console.print(f"starting a worker (web API on http://{settings.web_host}:{settings.web_port}/ats/<sku>)...")
        worker = WorkerProcess(settings).start()
        worker.wait_ready(timeout=120)
        if stop.is_set():
            return
        traffic = TmallTraffic(skus=SKUS, receipt_units=500, duplicate_rate=0.1, seed=int(time.time()))
        publisher = RawPublisher(settings)
        publisher.publish("warehouse", traffic.receipts())
        messages = traffic.messages(10**7)
        board, consumer, sent = AtsBoard(), _ats_consumer(settings), 0
        started = time.monotonic()
        with Live(board.render(sent, started), console=console, refresh_per_second=4) as live:
            while not stop.is_set() and (duration is None or time.monotonic() - started < duration):
                if not worker.alive:
                    raise RuntimeError(f"worker exited:\n{worker.log_tail()}")
                due = int((time.monotonic() - started) * rate_per_second) - sent
                if due > 0:
                    sent += publisher.publish("tmall", (next(messages) for _ in range(due)))
                for message in consumer.consume(num_messages=500, timeout=0.25):
                    if message.error() is None:
                        snapshot = codec.decode(message.value(), ATS_SNAPSHOT)
                        board.latest[snapshot["sku"]] = snapshot
                        board.updates += 1
                live.update(board.render(sent, started))
        consumer.close()
    except KeyboardInterrupt:
        pass
    finally:
        for sig, handler in previous_handlers.items():
            signal.signal(sig, handler)
        console.print("stopping the worker...")
        if worker is not None:
            worker.stop()
        if broker is not None:
            console.print("stopping the embedded Kafka broker (its data is kept)...")
            broker.stop()
        console.print("demo stopped.")
