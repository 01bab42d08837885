"""One adapter as a process: `stockstream adapter run --platform P` (docker-compose, Kubernetes,
crash tests that kill -9 it).

The process serves the adapter metrics on `Settings.adapter_metrics_port` (`/metrics`), takes the
shops of its platform from `Settings.shops` (STOCKSTREAM_SHOPS), publishes to raw.<platform>
(creating the raw and connector-state topics if missing) and runs until SIGTERM / SIGINT. The
Douyin push receiver listens on `Settings.adapter_host:adapter_port`; the warehouse feed is
configured by `WarehouseFeedSettings` (STOCKSTREAM_WAREHOUSE_*).
"""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import Any, Optional

from connectors import metrics
from connectors.adapters import FEEDS, PLATFORMS, make_adapter, make_feed_adapter
from connectors.publisher import RawPublisher
from stockstream.settings import Settings
from stockstream.topics import CONNECTOR_STATE, QUARANTINE, RAW_TOPICS, RAW_WAREHOUSE, ensure_topics

log = logging.getLogger(__name__)


def parse_options(pairs: list[str]) -> dict[str, Any]:
    """`key=value` pairs into constructor options: ints, floats, true/false, else strings."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"option {pair!r} is not key=value")
        value: Any = raw
        if raw.lower() in ("true", "false"):
            value = raw.lower() == "true"
        else:
            for kind in (int, float):
                try:
                    value = kind(raw)
                    break
                except ValueError:
                    continue
        out[key.strip().replace("-", "_")] = value
    return out


async def run_adapter(settings: Settings, platform: str, stop: Optional[asyncio.Event] = None, **options: Any) -> None:
    """Run one platform's (or feed's) adapter until `stop` is set."""
    if platform not in PLATFORMS and platform not in FEEDS:
        raise ValueError(f"unknown platform {platform!r}; one of {', '.join(PLATFORMS + FEEDS)}")
    stop = stop or asyncio.Event()
    spec = RAW_WAREHOUSE if platform in FEEDS else RAW_TOPICS[platform]
    await asyncio.to_thread(ensure_topics, settings, (spec, CONNECTOR_STATE, QUARANTINE))
    metrics.serve_metrics(settings.adapter_metrics_port, settings.adapter_host)
    publisher = RawPublisher(settings)
    if platform in FEEDS:
        adapter = make_feed_adapter(platform, publisher, **options)
        await adapter.run(stop)
        return
    if platform == "douyin":
        options = {"host": settings.adapter_host, "port": settings.adapter_port, **options}
    adapter = make_adapter(platform, settings.shops, publisher, **options)
    try:
        await adapter.run(stop)
    finally:
        await adapter.close()


def main(settings: Settings, platform: str, **options: Any) -> None:
    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await run_adapter(settings, platform, stop, **options)

    asyncio.run(run())
