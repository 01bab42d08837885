"""The live allocation rules of a worker: the compacted ``allocation-rules`` topic (format:
stockstream/rules_topic.py) read whole and followed (`TopicFollower`), as `rules_for(sku)`.

Until the feed has read up to the end offsets it saw at start, `ready` is clear and the stock
agent waits for it: allocating under the settings' defaults while the real rules load would
publish quantities the operator never asked for.

Readers on the event loop call `rules_for` while the feed thread applies records; a lock keeps
the merged-rules cache consistent with the records (a merge computed from old defaults is never
cached after new ones arrived).
"""

from __future__ import annotations

import logging
import threading
from typing import Optional

from confluent_kafka import Message

from stockstream.core.allocation import AllocationRules, merge_rules
from stockstream.rules_topic import RulesRecord, decode, settings_default_rules
from stockstream.settings import Settings
from stockstream.topics import ALLOCATION_RULES
from streams.topic_follower import FollowerService, TopicFollower

log = logging.getLogger(__name__)


class RulesBook:
    """Defaults and per-SKU overrides as applied from rules records (no Kafka: unit-tested)."""

    def __init__(self, fallback_defaults: AllocationRules) -> None:
        self.fallback_defaults = fallback_defaults  # while the topic holds no defaults
        self.defaults = fallback_defaults
        self.overrides: dict[str, dict] = {}
        # Highest version seen per key (DEFAULTS_KEY or SKU), kept across tombstones, so that a
        # command waiting for a version never waits for one that was superseded.
        self.versions_seen: dict[str, int] = {}
        self.records_applied = 0
        self.bad_records = 0
        self._merged: dict[str, AllocationRules] = {}
        self._lock = threading.Lock()

    def apply(self, key: Optional[bytes], value: Optional[bytes]) -> Optional[RulesRecord]:
        try:
            record = decode(key, value)
        except (ValueError, UnicodeDecodeError) as exc:
            self.bad_records += 1
            log.warning("allocation rules record %r skipped: %s", key, exc)
            return None
        with self._lock:
            if record.is_defaults:
                self.defaults = self.fallback_defaults if record.data is None else AllocationRules.from_dict(record.data)
                self._merged = {}
            else:
                if record.data is None:
                    self.overrides.pop(record.key, None)
                else:
                    self.overrides[record.key] = record.data
                self._merged.pop(record.key, None)
            if record.version is not None and record.version > self.versions_seen.get(record.key, -1):
                self.versions_seen[record.key] = record.version
            self.records_applied += 1
        return record

    def rules_for(self, sku: str) -> AllocationRules:
        with self._lock:
            if sku not in self.overrides:
                # Not cached per SKU: with a million SKUs the cache alone held ~100 MB.
                return self.defaults
            rules = self._merged.get(sku)
            if rules is None:
                rules = self._merge(sku)
                self._merged[sku] = rules
            return rules

    def _merge(self, sku: str) -> AllocationRules:
        overrides = self.overrides.get(sku)
        if overrides is None:
            return self.defaults
        try:
            return merge_rules(self.defaults, overrides)
        except (ValueError, TypeError, KeyError) as exc:  # valid alone, not over these defaults
            log.warning("allocation rules of %s do not merge over the defaults (%s): defaults apply", sku, exc)
            return self.defaults

    def has_seen(self, rules_key: str, version: int) -> bool:
        """Whether version `version` (or a later one) of `rules_key`'s record has been applied."""
        return self.versions_seen.get(rules_key, -1) >= version


class RulesFeed(RulesBook):
    def __init__(self, settings: Settings) -> None:
        super().__init__(settings_default_rules(settings))
        self.follower = TopicFollower(settings, settings.topic(ALLOCATION_RULES.name), self._apply_messages, "rules-feed")
        self.ready = self.follower.ready

    def _apply_messages(self, messages: list[Message]) -> None:
        for message in messages:
            self.apply(message.key(), message.value())

    def start(self) -> None:
        self.follower.start()

    def stop(self) -> None:
        self.follower.stop()


def rules_feed_service(feed: RulesFeed) -> FollowerService:
    return FollowerService(feed.follower)


def read_rules(settings: Settings, timeout: float = 30.0) -> RulesBook:
    """The rules topic as it is now, read once on the calling thread (the CLI)."""
    feed = RulesFeed(settings)
    feed.follower.read_to_end(timeout)
    return feed
