"""The I/O half of the marketplace connectors, one adapter class per platform, by platform name.

  tmall   TmallAdapter   TMC consume -> publish -> confirm; fullinfo fetch; TOP stock writes
  jd      JdAdapter      jingdong.pop.order.search poller with a durable cursor; stock writes
  douyin  DouyinAdapter  push receiver (event-sign checked) -> publish -> detail -> answer success
  pdd     PddAdapter     WebSocket client (signed URL, heartbeats, reconnect) -> publish -> Ack

Every adapter takes the platform's `ShopCredentials` (several shops, each with its own
credentials) and a `RawPublisher` (or a sink), and implements `write_stock` plus `poll` or `push`
of `connectors.base.Connector`. Classes are imported on first use.

Feeds that are not marketplaces (no shops, no stock writes) are listed apart, by feed name:

  warehouse  WarehouseAdapter  HTTP documents + CSV file drop -> raw.warehouse (bad input -> quarantine)
"""

from __future__ import annotations

import importlib
from typing import Any

_ADAPTERS: dict[str, tuple[str, str]] = {
    "tmall": ("connectors.adapters.tmall", "TmallAdapter"),
    "jd": ("connectors.adapters.jd", "JdAdapter"),
    "douyin": ("connectors.adapters.douyin", "DouyinAdapter"),
    "pdd": ("connectors.adapters.pdd", "PddAdapter"),
}
PLATFORMS: tuple[str, ...] = tuple(_ADAPTERS)
_FEEDS: dict[str, tuple[str, str]] = {
    "warehouse": ("connectors.adapters.warehouse", "WarehouseAdapter"),
}
FEEDS: tuple[str, ...] = tuple(_FEEDS)


def adapter_class(platform: str) -> Any:
    try:
        module, name = _ADAPTERS[platform]
    except KeyError:
        raise KeyError(f"no adapter for platform {platform!r}; known: {', '.join(PLATFORMS)}") from None
    return getattr(importlib.import_module(module), name)


def make_adapter(platform: str, shops: Any, publisher: Any = None, **options: Any) -> Any:
    """An adapter for the platform's shops among `shops` (others are ignored)."""
    return adapter_class(platform)(shops, publisher, **options)


def make_feed_adapter(feed: str, publisher: Any, **options: Any) -> Any:
    """The adapter of a non-marketplace feed, e.g. `make_feed_adapter("warehouse", publisher, tokens=...)`."""
    try:
        module, name = _FEEDS[feed]
    except KeyError:
        raise KeyError(f"no feed adapter {feed!r}; known: {', '.join(FEEDS)}") from None
    return getattr(importlib.import_module(module), name)(publisher, **options)
