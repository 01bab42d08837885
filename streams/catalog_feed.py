"""The live catalog of a worker: the compacted ``catalog`` topic read into an in-memory `Catalog`
and followed for as long as the worker runs (format: stockstream/catalog_topic.py).

Every worker reads every partition of the topic from the beginning (no consumer group, nothing
committed): each one needs the whole map. Until the feed has read up to the end offsets it saw
when it started, `ready` is clear and the normalize agents wait for it; otherwise a restart would
quarantine every order as unmapped while the catalog loads.

What an unknown merchant code means (`catalog_mode`):

* ``identity``: codes the catalog knows (CSV seed and topic) resolve through it; any other
  merchant code is taken as the master SKU itself (one unit). An empty catalog is therefore the
  plain "merchant code = master SKU" setup of the demo. A line without a merchant code must be
  known by its listing.
* ``strict``: only the catalog counts. A line it does not know makes the order update unmapped:
  quarantined with reason ``unmapped_sku`` and re-processed automatically once the catalog learns
  the code or listing (streams/retry.py).
* unset: ``strict`` when ``catalog_path`` (a CSV seed) is set, ``identity`` otherwise.

The CSV at ``catalog_path`` seeds the catalog before the topic is read; topic records override
and extend it (a tombstone removes a seeded mapping too).
"""

from __future__ import annotations

import logging
from typing import Callable, Optional

from stockstream.catalog_topic import decode, read_csv
from stockstream.core.catalog import Catalog
from stockstream.core.model import CatalogEntry, LineUpdate, SkuComponent
from stockstream.settings import Settings
from stockstream.topics import CATALOG
from streams.topic_follower import FollowerService, TopicFollower

log = logging.getLogger(__name__)

# Changed catalog keys (merchant codes, `listing:<platform>:<id>`) -> anything that waits for them.
Listener = Callable[[list[str]], None]


def catalog_mode(settings: Settings) -> str:
    if settings.catalog_mode is not None:
        return settings.catalog_mode
    return "strict" if settings.catalog_path is not None else "identity"


def seed_catalog(settings: Settings) -> Catalog:
    return Catalog.from_rows(read_csv(settings.catalog_path)) if settings.catalog_path is not None else Catalog()


class CatalogResolver:
    """`resolve(platform, line)` over a live `Catalog`, with the identity fallback of its mode."""

    __slots__ = ("catalog", "identity")

    def __init__(self, catalog: Catalog, identity: bool) -> None:
        self.catalog = catalog
        self.identity = identity

    def resolve(self, platform: str, line: LineUpdate) -> Optional[tuple[SkuComponent, ...]]:
        found = self.catalog.resolve(platform, line)
        if found is None and self.identity and line.merchant_code:
            return (SkuComponent(line.merchant_code, 1),)
        return found


class CatalogFeed:
    """The catalog topic -> `self.catalog`, on a thread of its own (confluent-kafka).

    Readers on other threads call `resolver.resolve`: each record changes one dict entry, which is
    atomic under the GIL, so a reader sees a mapping either before or after a record, never half.
    """

    def __init__(self, settings: Settings, catalog: Optional[Catalog] = None) -> None:
        self.settings = settings
        self.topic = settings.topic(CATALOG.name)
        self.catalog = catalog if catalog is not None else seed_catalog(settings)
        self.resolver = CatalogResolver(self.catalog, catalog_mode(settings) == "identity")
        self.follower = TopicFollower(settings, self.topic, self._on_messages, name="catalog-feed")
        # Set once the topic is read up to the end offsets seen at start (streams/topic_follower.py).
        self.ready = self.follower.ready
        # Bumped after each applied poll that changed something; listeners get the changed keys.
        self.generation = 0
        self.records_applied = 0
        self.bad_records = 0
        self._listeners: list[Listener] = []

    def add_listener(self, listener: Listener) -> None:
        self._listeners.append(listener)

    # -- applying records (no Kafka: unit-tested directly) --------------------------------------

    def apply(self, key: Optional[bytes], value: Optional[bytes]) -> Optional[str]:
        """Apply one topic record to the catalog; returns the key it changed, None if skipped."""
        try:
            record = decode(key or b"", value)
        except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
            self.bad_records += 1
            log.warning("catalog record %r skipped: %s", key, exc)
            return None
        listing = record.listing
        if record.components is None:
            if listing is not None:
                self.catalog.remove_listing(*listing)
            else:
                self.catalog.remove(record.key)
        elif listing is not None:
            self.catalog.put_listing(listing[0], listing[1], record.components)
        else:
            self.catalog.put(CatalogEntry(record.key, record.components))
        self.records_applied += 1
        return record.key

    def changed(self, keys: list[str]) -> None:
        self.generation += 1
        for listener in self._listeners:
            listener(keys)

    # -- the thread ------------------------------------------------------------------------------

    def _on_messages(self, messages: list) -> None:
        changed = [key for key in (self.apply(m.key(), m.value()) for m in messages) if key is not None]
        if changed:
            self.changed(changed)

    def start(self) -> None:
        self.follower.start()

    def stop(self, timeout: float = 10.0) -> None:
        self.follower.stop(timeout)

    def wait_ready(self, timeout: Optional[float] = None) -> bool:
        return self.ready.wait(timeout)

    @property
    def failure(self) -> Optional[BaseException]:
        return self.follower.failure


class CatalogFeedService(FollowerService):
    """Ties the feed thread to the worker's life; a failed feed crashes the worker."""

    def __init__(self, feed: CatalogFeed, **kwargs) -> None:
        super().__init__(feed.follower, **kwargs)
        self.feed = feed
