"""The SKU map: which master SKUs (and how many of each) one unit of a platform listing stands for.

Order lines are resolved by merchant code first (the code the brand typed into the listing: it is
the same on every platform), and by (platform, platform SKU id) when a listing has no code or its
code is unknown. Several rows with one merchant code form a bundle.

In memory and plain: the stream keeps it up to date from the compacted ``catalog`` topic.
"""

from __future__ import annotations

from typing import Iterable, NamedTuple, Optional

from stockstream.core.model import CatalogEntry, LineUpdate, SkuComponent

Components = tuple[SkuComponent, ...]


class CatalogRow(NamedTuple):
    platform: str
    platform_sku_id: str
    merchant_code: Optional[str]  # None / "": the listing is only known by its platform SKU id
    master_sku: str
    quantity: int  # units of master_sku in one unit of the listing


def _components(units_by_sku: dict[str, int]) -> Components:
    return tuple(SkuComponent(sku, qty) for sku, qty in units_by_sku.items())


class Catalog:
    __slots__ = ("_by_code", "_by_listing")

    def __init__(self) -> None:
        self._by_code: dict[str, Components] = {}
        self._by_listing: dict[tuple[str, str], Components] = {}

    @classmethod
    def from_rows(cls, rows: Iterable[CatalogRow | tuple]) -> "Catalog":
        """Rows sharing a merchant code are the components of that code. The same code listed on
        several platforms repeats its components once per listing: a component is therefore keyed
        by master SKU (repeats collapse, the last row wins) rather than appended."""
        by_code: dict[str, dict[str, int]] = {}
        by_listing: dict[tuple[str, str], dict[str, int]] = {}
        for row in rows:
            platform, platform_sku_id, code, master_sku, quantity = row
            if quantity <= 0:
                raise ValueError(f"catalog row {row!r}: quantity must be positive")
            if code:
                by_code.setdefault(code, {})[master_sku] = quantity
            by_listing.setdefault((platform, str(platform_sku_id)), {})[master_sku] = quantity
        catalog = cls()
        catalog._by_code = {code: _components(units) for code, units in by_code.items()}
        catalog._by_listing = {key: _components(units) for key, units in by_listing.items()}
        return catalog

    def resolve(self, platform: str, line: LineUpdate) -> Optional[Components]:
        """The components of one unit of the line's listing, or None when the catalog does not
        know it (the caller defers the order until it does)."""
        if line.merchant_code:
            found = self._by_code.get(line.merchant_code)
            if found is not None:
                return found
        return self._by_listing.get((platform, line.platform_sku_id))

    def entry(self, merchant_code: str) -> Optional[CatalogEntry]:
        found = self._by_code.get(merchant_code)
        return None if found is None else CatalogEntry(merchant_code, found)

    def put(self, entry: CatalogEntry) -> None:
        """Set (replace) the components of a merchant code: one record of the catalog topic."""
        if any(c.quantity <= 0 for c in entry.components):
            raise ValueError(f"catalog entry {entry.merchant_code!r}: quantities must be positive")
        self._by_code[entry.merchant_code] = tuple(entry.components)

    def put_listing(self, platform: str, platform_sku_id: str, components: Iterable[SkuComponent]) -> None:
        self._by_listing[(platform, platform_sku_id)] = tuple(components)

    def remove(self, merchant_code: str) -> None:
        self._by_code.pop(merchant_code, None)

    def remove_listing(self, platform: str, platform_sku_id: str) -> None:
        self._by_listing.pop((platform, platform_sku_id), None)

    def __len__(self) -> int:
        return len(self._by_code)

    def __contains__(self, merchant_code: object) -> bool:
        return merchant_code in self._by_code
