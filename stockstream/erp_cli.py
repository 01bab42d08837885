"""ERP commands of the CLI: journal builder, ERP sink, on-hand reconciliation, ERP simulator.
Merged into `stockstream` at the top level (``app.add_typer(erp_app)`` without a name)."""

from __future__ import annotations

from pathlib import Path

import typer

from stockstream.settings import get_settings

erp_app = typer.Typer(add_completion=False)


@erp_app.command("journal")
def journal() -> None:
    """Build the ERP journal: the ledger's on-hand changes per SKU, location, reason and window,
    published to erp.journal with deterministic external ids. Scale out: run more (partitions)."""
    from streams.erp_journal import run_journal

    run_journal(get_settings())


@erp_app.command("erp-sink")
def erp_sink() -> None:
    """Push erp.journal to the ERP's REST API (STOCKSTREAM_ERP_BASE_URL) as idempotent upserts,
    retrying until the ERP takes each entry."""
    from streams.erp_sink import run_sink

    run_sink(get_settings())


@erp_app.command("erp-reconcile")
def erp_reconcile(
    csv_path: Path = typer.Option(..., "--csv", exists=True, dir_okay=False, help="ERP on-hand export: sku,location,on_hand"),
) -> None:
    """Compare an ERP on-hand snapshot with stockstream's on_hand per SKU and location; publish
    the differences to the reconciliation topic and print them."""
    from rich.console import Console
    from rich.progress import Progress
    from rich.table import Table

    from streams.erp_reconcile import reconcile_csv

    settings = get_settings()
    with csv_path.open(encoding="utf-8-sig") as handle:
        rows = max(0, sum(1 for _ in handle) - 1)
    with Progress() as progress:
        task = progress.add_task(f"reading {csv_path.name}", total=rows)
        try:
            compared, found = reconcile_csv(settings, csv_path, on_row=lambda: progress.advance(task))
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--csv") from None
    table = Table(title=f"ERP on hand vs stockstream ({len(found)} of {compared} SKU/location pairs differ)")
    for column in ("SKU", "location", "ERP", "stockstream", "difference"):
        table.add_column(column, justify="left" if column in ("SKU", "location") else "right")
    for d in found:
        table.add_row(d.sku, d.location, str(d.erp_on_hand), str(d.stockstream_on_hand), f"{d.difference:+d}")
    Console().print(table)
    typer.echo(f"{len(found)} discrepancies published to {settings.topic('reconciliation')}")


@erp_app.command("erp-sim")
def erp_sim(
    port: int = typer.Option(8089, help="port of the simulated ERP"),
    token: str = typer.Option("erp-token", help="the bearer token it accepts"),
) -> None:
    """A simulated NetSuite-style ERP (inventory adjustments by external id) for the demo."""
    import asyncio

    from connectors.simulators.erp_api import ErpSim

    async def serve() -> None:
        sim = ErpSim(token)
        typer.echo(f"ERP simulator at {await sim.start(port=port)} (control API under /_sim/)")
        try:
            await asyncio.Event().wait()
        finally:
            await sim.stop()

    try:
        asyncio.run(serve())
    except KeyboardInterrupt:
        pass
