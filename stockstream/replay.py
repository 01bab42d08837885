"""`stockstream replay`: rebuild every SKU's stock from the ledger into fresh state, and compare
it with what the workers published (the latest snapshot per SKU on the `ats` topic)."""

from __future__ import annotations

from typing import Optional

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

from stockstream.core.stock import ats
from stockstream.settings import Settings
from streams.ats_topic import latest_snapshots
from streams.ledger import read_ledger, rebuild


def replay(settings: Settings, as_of_ms: Optional[int] = None, sku: Optional[str] = None, compare: bool = True) -> int:
    """Prints the result; returns the number of SKUs whose replayed ATS differs from the published one."""
    console = Console()
    with Progress("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, transient=True) as progress:
        task = progress.add_task("reading the ledger", total=None)

        def on_progress(read: int, total: int) -> None:
            progress.update(task, completed=read, total=total)

        states = rebuild(read_ledger(settings, on_progress=on_progress), as_of_ms=as_of_ms,
                         skus=None if sku is None else {sku})
    replayed = {name: ats(state) for name, state in states.items()}
    console.print(f"replayed {len(replayed)} SKUs from the ledger" + (f" as of {as_of_ms}" if as_of_ms else ""))
    if sku is not None:
        console.print(f"{sku}: ATS {replayed.get(sku, 'unknown')}")
    if not compare or as_of_ms is not None:
        return 0
    published = {name: snap["ats"] for name, snap in latest_snapshots(settings).items()}
    differing = sorted(name for name in replayed.keys() | published.keys()
                       if (sku is None or name == sku) and replayed.get(name) != published.get(name))
    for name in differing[:50]:
        console.print(f"  {name}: replayed {replayed.get(name)} published {published.get(name)}")
    console.print(f"{len(differing)} SKUs differ from the published ATS")
    return len(differing)
