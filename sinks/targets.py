"""Which listings a master SKU's allocation on a channel feeds, and what each listing is made of.

A listing whose merchant code maps to one master SKU (one unit) shows that SKU's allocation on
its channel; a listing of a bundle (several components, or several units of one) shows
`bundle_allocation` over its components' allocations. Either way a listing is a `Target` with
components, and one allocation change makes every target containing its SKU on its channel due.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Optional

from sinks.listings import Listing

Components = tuple[tuple[str, int], ...]  # (master SKU, units per listing unit)
# A listing -> its components, None when the catalog cannot map it (the listing is not pushed).
Resolve = Callable[[Listing], Optional[Components]]


@dataclass(frozen=True, slots=True)
class Target:
    listing: Listing
    components: Components

    @property
    def key(self) -> tuple[str, str]:
        return self.listing.key

    @property
    def is_bundle(self) -> bool:
        return len(self.components) != 1 or self.components[0][1] != 1


class TargetIndex:
    """Listings by (master SKU, channel), built once per catalog / listing change."""

    def __init__(self, listings: Iterable[Listing], resolve: Resolve) -> None:
        self.by_key: dict[tuple[str, str], Target] = {}
        self._by_sku_channel: dict[tuple[str, str], list[Target]] = {}
        self.unmapped: list[Listing] = []
        for listing in listings:
            components = resolve(listing)
            if not components:
                self.unmapped.append(listing)
                continue
            target = Target(listing, tuple(components))
            self.by_key[target.key] = target
            for sku, _units in target.components:
                self._by_sku_channel.setdefault((sku, listing.channel), []).append(target)

    def targets(self, sku: str, channel: str) -> list[Target]:
        return self._by_sku_channel.get((sku, channel), [])

    def channels(self) -> set[str]:
        return {key[0] for key in self.by_key}

    def __len__(self) -> int:
        return len(self.by_key)


def catalog_resolve(resolver) -> Resolve:
    """`Resolve` over a `streams.catalog_feed.CatalogResolver` (merchant code first, then the
    listing's platform SKU id; identity mode: an unknown code is the master SKU itself)."""
    from stockstream.core.model import LineStatus, LineUpdate

    def resolve(listing: Listing) -> Optional[Components]:
        line = LineUpdate(
            line_id=listing.platform_sku_id, platform_sku_id=listing.platform_sku_id,
            merchant_code=listing.merchant_code or None, quantity=None, status=LineStatus.CREATED,
            listing_id=listing.listing_id or None,
        )
        found = resolver.resolve(listing.platform, line)
        return None if found is None else tuple((c.master_sku, c.quantity) for c in found)

    return resolve
