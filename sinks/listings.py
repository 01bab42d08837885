"""The listings of each shop: what the sink writes stock to.

A stock write names a platform SKU id (and, on Tmall and PDD, its listing: num_iid / goods_id),
while allocations name master SKUs. The merchant code (商家编码) ties the two: the brand types it
into every listing, and the catalog maps it to master SKUs (a bundle code to several). Which
platform SKU ids a shop's listings have is the platform's knowledge, exported from its seller
centre (or item APIs): here a CSV

    platform,shop_id,listing_id,platform_sku_id,merchant_code

at ``STOCKSTREAM_LISTINGS_PATH``, or `Listing`s handed over in code.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable


CSV_COLUMNS = ("platform", "shop_id", "listing_id", "platform_sku_id", "merchant_code")


def channel_of(platform: str, shop_id: str) -> str:
    """The `AllocationChange.channel` of a shop."""
    return f"{platform}:{shop_id}"


@dataclass(frozen=True, slots=True)
class Listing:
    """One sellable SKU of one shop's listing."""

    platform: str
    shop_id: str
    listing_id: str  # num_iid / wareId / product_id / goods_id
    platform_sku_id: str
    merchant_code: str

    @property
    def channel(self) -> str:
        return channel_of(self.platform, self.shop_id)

    @property
    def key(self) -> tuple[str, str]:
        """(channel, platform SKU id): unique per shop, what a push overwrites."""
        return self.channel, self.platform_sku_id


def read_listings_csv(path: Path | str) -> list[Listing]:
    with open(path, newline="", encoding="utf-8") as rows:
        return [
            Listing(r["platform"], r["shop_id"], r.get("listing_id") or "", r["platform_sku_id"], r.get("merchant_code") or "")
            for r in csv.DictReader(rows)
        ]


def write_listings_csv(path: Path | str, listings: Iterable[Listing]) -> Path:
    """The CSV `read_listings_csv` reads."""
    path = Path(path)
    with open(path, "w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(CSV_COLUMNS)
        for listing in listings:
            writer.writerow([listing.platform, listing.shop_id, listing.listing_id, listing.platform_sku_id, listing.merchant_code])
    return path


def unique_listings(listings: Iterable[Listing]) -> list[Listing]:
    """The last row per (channel, platform SKU id) wins (a re-export corrects an earlier one)."""
    by_key: dict[tuple[str, str], Listing] = {}
    for listing in listings:
        by_key[listing.key] = listing
    return list(by_key.values())
