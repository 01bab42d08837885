"""The one command line: ``stockstream <subcommand>``."""

from __future__ import annotations

import typer

from stockstream.settings import get_settings

app = typer.Typer(no_args_is_help=True, add_completion=False, help="stockstream: real-time available-to-sell stock")
kafka_app = typer.Typer(no_args_is_help=True, help="The embedded single-node Apache Kafka broker (KRaft, no Docker).")
app.add_typer(kafka_app, name="kafka")


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
