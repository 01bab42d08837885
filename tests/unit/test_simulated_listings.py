"""`stockstream simulator listings`: the simulated shops' listings export, which the channel sink
needs to write stock to them (docker-compose runs it before the sink)."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from sinks.listings import read_listings_csv
from stockstream.cli import app
from stockstream.settings import get_settings
from stockstream.simulate import simulated_skus

SHOPS = [
    {"platform": "tmall", "shop_id": "tmall-flagship", "app_key": "k", "app_secret": "s"},
    {"platform": "pdd", "shop_id": "pdd-store", "app_key": "k", "app_secret": "s"},
]


def test_the_export_lists_every_simulated_sku_of_every_shop(tmp_path, monkeypatch):
    monkeypatch.setenv("STOCKSTREAM_SHOPS", json.dumps(SHOPS))
    get_settings.cache_clear()
    out = tmp_path / "listings" / "listings.csv"
    try:
        result = CliRunner().invoke(app, ["simulator", "listings", "--skus", "3", "--out", str(out)])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    listings = read_listings_csv(out)
    assert {(l.channel, l.merchant_code) for l in listings} == {
        (channel, f"SIM-00{i}") for channel in ("tmall:tmall-flagship", "pdd:pdd-store") for i in (1, 2, 3)
    }
    # The platform SKU ids are the ones the simulation registers on the simulators' shops.
    tmall = [l for l in listings if l.platform == "tmall"]
    assert [(l.listing_id, l.platform_sku_id) for l in tmall] == [(s["listing_id"], s["sku_id"]) for s in simulated_skus("tmall", 3)]


def test_no_shops_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("STOCKSTREAM_SHOPS", "[]")
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(app, ["simulator", "listings", "--out", str(tmp_path / "l.csv")])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 2
    assert "no simulated platform shops" in result.output
