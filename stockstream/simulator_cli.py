"""`stockstream simulator run` and `stockstream adapter run`: one marketplace simulator, or one
adapter, as a process of its own (docker-compose runs them as services; `stockstream simulate
--tmall-url ...` drives simulators that run this way).

Both take the shops of their platform from STOCKSTREAM_SHOPS, so a simulator and the adapter in
front of it share one configuration: the simulator accepts exactly the credentials the adapter
signs with (`api_base_url` is the adapter's business, the simulator ignores it).
"""

from __future__ import annotations

import time
from pathlib import Path

import typer

from stockstream.settings import get_settings

simulator_app = typer.Typer(no_args_is_help=True, help="Marketplace simulators (TOP/TMC, JOS, Douyin push, PDD WebSocket).")
adapter_app = typer.Typer(no_args_is_help=True, help="Marketplace and warehouse adapters: platform -> raw.<platform>.")

OPTION_HELP = "constructor option key=value (repeatable), e.g. visibility_timeout_s=2 or duplicate_rate=0.2"


@simulator_app.command("run")
def simulator_run(
    platform: str = typer.Option(..., help="tmall | jd | douyin | pdd"),
    port: int = typer.Option(8080, help="listen port"),
    host: str = typer.Option("127.0.0.1", help="listen address (0.0.0.0 in a container)"),
    callback_url: str = typer.Option("", help="douyin: where pushes go (the adapter's receiver)"),
    faults: bool = typer.Option(False, help="duplicate / delay / reorder deliveries, fail and throttle some API calls"),
    seed: int = typer.Option(0, help="random seed of the fault knobs"),
    order_seq_start: int = typer.Option(0, help="first order sequence number (0: from the clock, unique per run)"),
    option: list[str] = typer.Option([], "--option", "-o", help=OPTION_HELP),
) -> None:
    """Serve one simulator until SIGTERM / Ctrl-C. Its control API (`/_sim/...`) is how traffic
    is created; see connectors/simulators/base_api.py."""
    import asyncio
    import itertools
    import signal

    from connectors.adapters.runner import parse_options
    from stockstream.simulate import FAULTS, build_simulator

    settings = get_settings()
    shops = [s for s in settings.shops if s.platform == platform]
    if not shops:
        raise typer.BadParameter(f"no {platform} shops in STOCKSTREAM_SHOPS", param_hint="--platform")
    knobs = {**(FAULTS if faults else {}), **parse_options(option)}
    if callback_url:
        knobs["callback_url"] = callback_url
    sim = build_simulator(platform, shops, seed=seed, **knobs)
    start = order_seq_start or max(1, (int(time.time()) - 1_700_000_000) * 10_000)
    sim._order_seq = itertools.count(start)  # order ids unique across runs against the same topics

    async def serve() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        url = await sim.start(host, port)
        typer.echo(f"{platform} simulator serving at {url} ({len(shops)} shops)", err=True)
        try:
            await stop.wait()
        finally:
            await sim.stop()

    asyncio.run(serve())


@simulator_app.command("listings")
def simulator_listings(
    out: Path = typer.Option(..., help="where to write the CSV (STOCKSTREAM_LISTINGS_PATH of the sink)"),
    skus: int = typer.Option(20, help="SKUs per shop: the same --skus as `stockstream simulate`"),
) -> None:
    """Write the listings of the simulated shops in STOCKSTREAM_SHOPS (the seller-centre export a
    real shop gives the channel sink): the SKUs `stockstream simulate` registers on them."""
    from sinks.listings import write_listings_csv
    from stockstream.simulate import simulated_listings

    listings = simulated_listings(get_settings().shops, skus)
    if not listings:
        raise typer.BadParameter("no simulated platform shops in STOCKSTREAM_SHOPS", param_hint="STOCKSTREAM_SHOPS")
    out.parent.mkdir(parents=True, exist_ok=True)
    write_listings_csv(out, listings)
    typer.echo(f"{len(listings)} listings written to {out}", err=True)


@adapter_app.command("run")
def adapter_run(
    platform: str = typer.Option(..., help="tmall | jd | douyin | pdd | warehouse"),
    option: list[str] = typer.Option([], "--option", "-o", help=OPTION_HELP.replace("visibility_timeout_s=2 or duplicate_rate=0.2", "idle_wait_s=0.2")),
) -> None:
    """Run one adapter until SIGTERM / Ctrl-C; metrics on STOCKSTREAM_ADAPTER_METRICS_PORT."""
    import logging

    from connectors.adapters.runner import main, parse_options

    settings = get_settings()
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s")
    main(settings, platform, **parse_options(option))
