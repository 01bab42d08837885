"""The start of most worker tests: topics, Tmall traffic over N SKUs stocked by warehouse
receipts, and the first part of its order messages already published."""

from __future__ import annotations

from typing import Iterator

from connectors.base import RawRecord
from connectors.publisher import RawPublisher
from connectors.simulators.tmall_traffic import TmallTraffic
from stockstream.settings import Settings
from stockstream.topics import ensure_topics


def tmall_backlog(
    settings: Settings, skus: int, seed: int, messages: int, published: int,
) -> tuple[TmallTraffic, RawPublisher, Iterator[RawRecord]]:
    """Returns the traffic (its `truth` is the oracle), the publisher, and the order messages not
    published yet (`messages - published` of them)."""
    ensure_topics(settings)
    traffic = TmallTraffic(skus=[f"SKU-{i:03d}" for i in range(skus)], duplicate_rate=0.2, seed=seed)
    publisher = RawPublisher(settings)
    publisher.publish("warehouse", traffic.receipts())
    rest = traffic.messages(messages)
    publisher.publish("tmall", (next(rest) for _ in range(published)))
    return traffic, publisher, rest
