"""`stockstream demo`: the whole pipeline on one machine, in one command.

Starts the embedded Kafka broker (unless STOCKSTREAM_BOOTSTRAP_SERVERS points elsewhere and
answers), creates the topics, starts a worker process, and replays simulated marketplace traffic
at a steady rate: orders from Tmall, JD, Douyin and Pinduoduo shops in each platform's own
payloads (with redeliveries and reordering), plus the warehouse feed (receipts, transfers, customs
holds, returns, stock counts). A live table shows each SKU's available-to-sell and the quantity
allocated to every shop as the worker publishes them. Ctrl-C stops everything it started.
"""

from __future__ import annotations

import itertools
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
from connectors.simulators.traffic import generate
from schemas import codec
from schemas.names import ALLOCATION_CHANGE, ATS_SNAPSHOT
from stockstream.process import WorkerProcess
from stockstream.settings import Settings, ShopCredentials
from stockstream.topics import ALLOCATIONS, ATS, ensure_topics

SKUS = 12
EVENTS = 40_000


@dataclass
class AtsBoard:
    """Latest ATS snapshot per SKU (compacted `ats` topic) and latest allocation per SKU and shop
    (`allocations`, highest version wins)."""

    latest: dict[str, dict] = field(default_factory=dict)
    allocated: dict[str, dict[str, tuple[int, int]]] = field(default_factory=dict)  # sku -> channel -> (version, qty)
    updates: int = 0
    allocation_changes: int = 0
    skus: frozenset[str] = frozenset()  # shown (the topics may hold SKUs of earlier demo runs)

    def apply(self, topic: str, value: bytes, ats_topic: str) -> None:
        if topic == ats_topic:
            snapshot = codec.decode(value, ATS_SNAPSHOT)
            if self.skus and snapshot["sku"] not in self.skus:
                return
            self.latest[snapshot["sku"]] = snapshot
            self.updates += 1
            return
        change = codec.decode(value, ALLOCATION_CHANGE)
        channels = self.allocated.setdefault(change["sku"], {})
        if change["version"] > channels.get(change["channel"], (0, 0))[0]:
            channels[change["channel"]] = (change["version"], change["quantity"])
            self.allocation_changes += 1

    def render(self, sent: int, started: float) -> Table:
        table = Table(title=f"stockstream demo: live available-to-sell and allocation  ({sent} raw messages sent, "
                      f"{self.updates} ATS updates, {self.allocation_changes} allocation changes, "
                      f"{time.monotonic() - started:.0f}s)  Ctrl-C to stop")
        for column in ("SKU", "ATS", "on hand", "reserved", "allocated per shop", "version"):
            table.add_column(column, justify="right" if column not in ("SKU", "allocated per shop") else "left")
        for sku in sorted(self.latest):
            snap = self.latest[sku]
            allocated = ", ".join(
                f"{channel.split(':')[0]}:{channel.split(':')[1][-4:]} {qty}"
                for channel, (_version, qty) in sorted(self.allocated.get(sku, {}).items())
            ) or "-"
            table.add_row(sku, str(snap["ats"]), str(snap["sellable_on_hand"]), str(snap["reserved"]), allocated,
                          str(snap["version"]))
        return table


def _ats_consumer(settings: Settings) -> Consumer:
    consumer = Consumer({
        "bootstrap.servers": settings.bootstrap_servers,
        "group.id": f"demo-board-{uuid.uuid4().hex[:8]}",
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
    })
    consumer.subscribe([settings.topic(ATS.name), settings.topic(ALLOCATIONS.name)])
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


def run_demo(settings: Settings, rate_per_second: float = 20.0, duration: float | None = None) -> "AtsBoard | None":
    """Runs until Ctrl-C (or `duration`); returns the board as it was at the end."""
    console = Console()
    board = None
    broker = _start_broker_if_needed(settings, console)
    worker = None
    stop = threading.Event()
    # Ctrl-C and SIGTERM end the loop at its next turn; a KeyboardInterrupt raised inside a
    # librdkafka call would be deferred until that call returns, and could skip the cleanup.
    previous_handlers = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    # Simulated shops of the four marketplaces (dummy credentials): the worker allocates to them.
    traffic = generate(skus=SKUS, events=EVENTS, duplicate_rate=0.1, reorder=0.2, seed=int(time.time()) % 100_000)
    if not settings.shops:
        settings = settings.model_copy(update={"shops": [ShopCredentials(**shop) for shop in traffic.shop_settings()]})
    try:
        ensure_topics(settings)
        console.print(f"starting a worker (web API on http://{settings.web_host}:{settings.web_port}/ats/<sku>)...")
        worker = WorkerProcess(settings).start()
        worker.wait_ready(timeout=120)
        if stop.is_set():
            return
        records = iter(traffic)
        publisher = RawPublisher(settings)
        board, consumer, sent = AtsBoard(skus=frozenset(traffic.truth.skus())), _ats_consumer(settings), 0
        ats_topic = settings.topic(ATS.name)
        started = time.monotonic()
        with Live(board.render(sent, started), console=console, refresh_per_second=4) as live:
            while not stop.is_set() and (duration is None or time.monotonic() - started < duration):
                if not worker.alive:
                    raise RuntimeError(f"worker exited:\n{worker.log_tail()}")
                due = int((time.monotonic() - started) * rate_per_second) - sent
                if due > 0:
                    batch = list(itertools.islice(records, due))
                    sent += publisher.publish_all(batch) if batch else 0
                for message in consumer.consume(num_messages=500, timeout=0.25):
                    if message.error() is None:
                        board.apply(message.topic(), message.value(), ats_topic)
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
    return board
