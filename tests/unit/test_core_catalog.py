"""The SKU map, and a whole core flow: bundle order -> movements -> stock per component -> bundle ATS."""

from __future__ import annotations

import pytest

from stockstream.core.catalog import Catalog, CatalogRow
from stockstream.core.model import CatalogEntry, LineStatus, LineUpdate, OrderUpdate, SkuComponent
from stockstream.core.movements import Movement, MovementType, Origin
from stockstream.core.orders import apply_order_update
from stockstream.core.stock import StockState, apply_movements, ats, bundle_ats

ROWS = [
    CatalogRow("tmall", "111", "GIFTSET", "SKU-A", 1),
    CatalogRow("tmall", "111", "GIFTSET", "SKU-C", 2),
    CatalogRow("jd", "999", "GIFTSET", "SKU-A", 1),  # the same code on another platform
    CatalogRow("jd", "999", "GIFTSET", "SKU-C", 2),
    CatalogRow("tmall", "222", "A", "SKU-A", 1),
    CatalogRow("pdd", "333", None, "SKU-B", 1),  # listing without a merchant code
]


def line(code, platform_sku_id="0", quantity=1, status=LineStatus.PAID):
    return LineUpdate("L1", platform_sku_id, code, quantity, status)


def test_rows_with_one_code_form_a_bundle_once():
    catalog = Catalog.from_rows(ROWS)
    assert catalog.resolve("tmall", line("GIFTSET")) == (SkuComponent("SKU-A", 1), SkuComponent("SKU-C", 2))
    assert catalog.entry("GIFTSET").is_bundle and not catalog.entry("A").is_bundle
    assert len(catalog) == 2 and "A" in catalog


def test_resolution_order_code_then_listing():
    catalog = Catalog.from_rows(ROWS)
    assert catalog.resolve("pdd", line(None, "333")) == (SkuComponent("SKU-B", 1),)
    assert catalog.resolve("pdd", line("UNKNOWN", "333")) == (SkuComponent("SKU-B", 1),)
    assert catalog.resolve("jd", line("A", "999")) == (SkuComponent("SKU-A", 1),)  # the code wins
    assert catalog.resolve("tmall", line(None, "333")) is None  # listing ids are per platform
    assert catalog.resolve("tmall", line("UNKNOWN", "404")) is None


def test_put_and_remove():
    catalog = Catalog.from_rows(ROWS)
    catalog.put(CatalogEntry("A", (SkuComponent("SKU-A2", 1),)))
    assert catalog.resolve("tmall", line("A")) == (SkuComponent("SKU-A2", 1),)
    catalog.remove("A")
    assert catalog.resolve("tmall", line("A", "222")) == (SkuComponent("SKU-A", 1),)  # listing fallback
    catalog.put_listing("douyin", "777", [SkuComponent("SKU-D", 3)])
    assert catalog.resolve("douyin", line(None, "777")) == (SkuComponent("SKU-D", 3),)
    with pytest.raises(ValueError):
        Catalog.from_rows([CatalogRow("tmall", "1", "X", "SKU-X", 0)])
    with pytest.raises(ValueError):
        catalog.put(CatalogEntry("X", (SkuComponent("SKU-X", -1),)))


def test_bundle_order_reserves_components_and_lowers_bundle_ats():
    catalog = Catalog.from_rows(ROWS)
    stock = {sku: StockState(sku) for sku in ("SKU-A", "SKU-C")}
    receipts = {"SKU-A": 10, "SKU-C": 11}
    for sku, q in receipts.items():
        apply_movements(stock[sku], [Movement(f"r-{sku}", MovementType.RECEIPT, sku, q, 0, "WH")])
    bundle = [(c.master_sku, c.quantity) for c in catalog.resolve("tmall", line("GIFTSET"))]
    assert bundle_ats(bundle, {sku: ats(s) for sku, s in stock.items()}) == 5

    update = OrderUpdate("tmall", "shop", "T1", 1, (line("GIFTSET", "111", quantity=2),))
    result = apply_order_update(
        None, update, resolve=catalog.resolve, reserve_unpaid=False, fulfilment_location="WH", origin=Origin("ingest/0", 0, 0)
    )
    for m in result.movements:
        apply_movements(stock[m.sku], [m])
    assert {sku: ats(s) for sku, s in stock.items()} == {"SKU-A": 8, "SKU-C": 7}
    assert bundle_ats(bundle, {sku: ats(s) for sku, s in stock.items()}) == 3
