"""The one command line: ``stockstream <subcommand>``."""

from __future__ import annotations

import typer

from stockstream.erp_cli import erp_app
from stockstream.rules_cli import rules_app
from stockstream.settings import get_settings
from stockstream.simulator_cli import adapter_app, simulator_app

app = typer.Typer(no_args_is_help=True, add_completion=False, help="stockstream: real-time available-to-sell stock")
kafka_app = typer.Typer(no_args_is_help=True, help="The embedded single-node Apache Kafka broker (KRaft, no Docker).")
app.add_typer(kafka_app, name="kafka")
catalog_app = typer.Typer(no_args_is_help=True, help="The SKU catalog: the compacted `catalog` topic every worker follows.")
app.add_typer(catalog_app, name="catalog")
app.add_typer(simulator_app, name="simulator")
app.add_typer(adapter_app, name="adapter")
app.add_typer(rules_app, name="rules")
app.add_typer(erp_app)  # no name: `journal`, `erp-sink`, `erp-reconcile`, `erp-sim` are top-level commands
# Channel sink: `stockstream sink`, `stockstream dlq retry` (stockstream/sink_cli.py)
from stockstream.sink_cli import dlq_app, sink as sink_command  # noqa: E402

app.command("sink")(sink_command)
app.add_typer(dlq_app, name="dlq")


@catalog_app.command("load")
def catalog_load(path: str = typer.Argument(..., help="CSV: platform,platform_sku_id,merchant_code,master_sku,quantity")) -> None:
    """Publish a CSV catalog to the catalog topic (rows sharing a merchant code form a bundle);
    running workers pick it up live."""
    from rich.progress import Progress

    from stockstream.catalog_topic import publish_records, read_csv, records_from_rows
    from stockstream.topics import CATALOG, ensure_topics

    settings = get_settings()
    records = records_from_rows(read_csv(path))
    ensure_topics(settings, (CATALOG,))
    with Progress() as progress:
        task = progress.add_task(f"publishing to {settings.topic(CATALOG.name)}", total=len(records))
        count = publish_records(settings, records, on_progress=lambda n: progress.advance(task, n))
    typer.echo(f"{count} catalog records published ({path})")


@kafka_app.command("start")
def kafka_start() -> None:
    """Resolve Kafka from Maven Central (once), format storage (once), start, wait until it serves."""
    from stockstream.kafka.local import LocalKafka

    broker = LocalKafka.from_settings(get_settings())
    broker.start()
    typer.echo(f"kafka {broker.version} serving at {broker.bootstrap_servers} (data in {broker.data_dir})")


@kafka_app.command("stop")
def kafka_stop() -> None:
    """Stop the embedded broker cleanly; its data directory is kept."""
    from stockstream.kafka.local import LocalKafka

    LocalKafka.from_settings(get_settings()).stop()
    typer.echo("kafka stopped")


@kafka_app.command("status")
def kafka_status() -> None:
    """Say whether the embedded broker runs and answers."""
    from stockstream.kafka.local import LocalKafka

    status = LocalKafka.from_settings(get_settings()).status()
    typer.echo(status.describe())
    raise typer.Exit(0 if status.serving else 1)


@app.command("demo")
def demo(
    rate: float = typer.Option(20.0, help="raw marketplace messages per second"),
    duration: float = typer.Option(0, help="stop after this many seconds (0: run until Ctrl-C)"),
) -> None:
    """Local demo: embedded Kafka, a worker, simulated shoppers and a live ATS table."""
    from stockstream.demo import run_demo

    run_demo(get_settings(), rate_per_second=rate, duration=duration or None)


@app.command("worker")
def worker() -> None:
    """Run a stream worker: ingest batcher, normalizer, stock state, web API. Scale out by running more."""
    from streams.worker import run_worker

    run_worker(get_settings())


@app.command("replay")
def replay(
    as_of: str = typer.Option("", help="rebuild as of this moment (epoch ms or ISO 8601 with offset)"),
    sku: str = typer.Option("", help="only this master SKU"),
) -> None:
    """Rebuild every SKU's stock from the ledger and compare it with the published ATS."""
    from stockstream.replay import replay as run_replay
    from stockstream.timeparse import parse_moment

    differing = run_replay(get_settings(), as_of_ms=parse_moment(as_of) if as_of else None, sku=sku or None)
    raise typer.Exit(1 if differing else 0)


@app.command("simulate")
def simulate(
    rate: float = typer.Option(5.0, help="orders per second, all four platforms together"),
    shape: str = typer.Option("steady", help="steady | spike"),
    spike_factor: float = typer.Option(10.0, help="spike: rate x this"),
    spike_start: float = typer.Option(60.0, help="spike: seconds after the start"),
    spike_minutes: float = typer.Option(5.0, help="spike: how long (minutes, fractions allowed)"),
    duration: float = typer.Option(60.0, help="stop driving after this many seconds"),
    seed: int = typer.Option(0, help="random seed of the shoppers"),
    truth_out: str = typer.Option("simulate-truth.json", help="where to write the ground truth (JSON)"),
    shops: int = typer.Option(2, help="shops per platform"),
    skus: int = typer.Option(20, help="SKUs (merchant codes SIM-001...)"),
    faults: bool = typer.Option(False, help="duplicate / delayed / reordered deliveries, failing and throttled API calls"),
    max_orders: int = typer.Option(1_000_000, help="never create more orders than this"),
    settle: float = typer.Option(60.0, help="afterwards wait at most this long for every delivery"),
    tmall_url: str = typer.Option("", help="drive this running Tmall simulator (with --jd-url, --douyin-url, --pdd-url)"),
    jd_url: str = typer.Option("", help="a running JD simulator"),
    douyin_url: str = typer.Option("", help="a running Douyin simulator"),
    pdd_url: str = typer.Option("", help="a running PDD simulator"),
    warehouse_url: str = typer.Option("", help="a running warehouse adapter's endpoint (default: start one here)"),
    warehouse_token: str = typer.Option("", envvar="STOCKSTREAM_SIMULATE_WAREHOUSE_TOKEN", help="its token for SIM-WMS"),
) -> None:
    """Simulated shoppers on all four marketplaces (in-process simulators) through the real
    adapters and the warehouse adapter into the raw topics; writes the ground truth. Ctrl-C stops.
    With --tmall-url/--jd-url/--douyin-url/--pdd-url it drives simulators already running
    (`stockstream simulator run`, shops from STOCKSTREAM_SHOPS) whose adapters run elsewhere."""
    from pathlib import Path

    from stockstream.simulate import SimulateOptions, run_simulation, summary

    options = SimulateOptions(
        rate=rate, shape=shape, spike_factor=spike_factor, spike_start_s=spike_start, spike_minutes=spike_minutes,
        duration_s=duration, seed=seed, truth_out=Path(truth_out), shops=shops, skus=skus, faults=faults,
        max_orders=max_orders, settle_s=settle, warehouse_url=warehouse_url, warehouse_token=warehouse_token,
        simulator_urls={p: u for p, u in (("tmall", tmall_url), ("jd", jd_url), ("douyin", douyin_url), ("pdd", pdd_url)) if u},
    )
    truth = run_simulation(get_settings(), options)
    typer.echo(summary(truth))
    typer.echo(f"ground truth in {truth_out}")
    raise typer.Exit(0 if truth["settled"] else 1)


@app.command("topics")
def topics() -> None:
    """Create every declared topic that does not exist yet."""
    from stockstream.topics import ALL_TOPICS, ensure_topics

    settings = get_settings()
    ensure_topics(settings)
    for spec in ALL_TOPICS:
        typer.echo(f"{settings.topic(spec.name):28} {spec.purpose}")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
