"""CLI commands of the channel sink: `stockstream sink` and `stockstream dlq retry`."""

from __future__ import annotations

from typing import Optional

import typer

from stockstream.settings import get_settings

dlq_app = typer.Typer(no_args_is_help=True, help="The channel dead-letter topic: stock writes the platforms refused.")


def sink(
    platform: Optional[str] = typer.Option(None, help="only this platform's shops (tmall, jd, douyin, pdd); default: all"),
) -> None:
    """Push allocations to the marketplace shops (coalesced, within quota), park refused writes in
    the dead-letter topic, reconcile periodically; /metrics on STOCKSTREAM_SINK_METRICS_PORT."""
    from sinks.process import run_sink

    try:
        run_sink(get_settings(), platform)
    except ValueError as exc:  # no shops, no listings: a configuration problem, said plainly
        typer.echo(f"stockstream sink: {exc}", err=True)
        raise typer.Exit(2) from None


@dlq_app.command("retry")
def dlq_retry(channel: Optional[str] = typer.Option(None, help="only this channel (<platform>:<shop_id>)")) -> None:
    """Re-publish parked writes to `allocations`; the sink pushes them again unless a newer
    allocation of the same SKU and channel exists."""
    from sinks.dead_letter import retry_dead_letters

    count = retry_dead_letters(get_settings(), channel)
    typer.echo(f"{count} dead letters re-published")
