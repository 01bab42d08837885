"""Marketplace connectors by platform name: the one place that lists them."""

from __future__ import annotations

from connectors.base import PayloadCodec
from connectors.douyin import DouyinConnector
from connectors.jd import JdConnector
from connectors.pdd import PddConnector
from connectors.tmall import TmallConnector

# Stateless, so one instance per platform serves every shop and thread.
_CONNECTORS: dict[str, PayloadCodec] = {
    c.platform: c for c in (TmallConnector(), JdConnector(), DouyinConnector(), PddConnector())
}
PLATFORMS: tuple[str, ...] = tuple(_CONNECTORS)


def get_connector(platform: str) -> PayloadCodec:
    try:
        return _CONNECTORS[platform]
    except KeyError:
        raise KeyError(f"unknown platform {platform!r}; known: {', '.join(PLATFORMS)}") from None
