"""Marketplace connectors by platform name: the one place that lists them."""

from __future__ import annotations

from connectors import douyin, jd, pdd, tmall
from connectors.base import ModuleCodec, PayloadCodec

# Stateless, so one instance per platform serves every shop and thread.
_CONNECTORS: dict[str, PayloadCodec] = {
    c.platform: c for c in (ModuleCodec(tmall), ModuleCodec(jd), ModuleCodec(douyin), ModuleCodec(pdd))
}
PLATFORMS: tuple[str, ...] = tuple(_CONNECTORS)


def get_connector(platform: str) -> PayloadCodec:
    try:
        return _CONNECTORS[platform]
    except KeyError:
        raise KeyError(f"unknown platform {platform!r}; known: {', '.join(PLATFORMS)}") from None
