"""The dashboard in a real headless Chromium (Debian's package, driven by Playwright) against a
running worker on the real broker: the page loads, shows every SKU's ATS once events arrive,
updates live when more arrive (no reload), filters by search, and explains a channel's number.
The screenshot is kept at tests/artifacts/dashboard.png."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from connectors.publisher import RawPublisher
from stockstream.process import WorkerProcess
from tests.support.api_client import TMALL, stock_up, wait_until_ready, with_two_shops
from tests.support.ats import wait_for_expected

pytestmark = pytest.mark.integration

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
SCREENSHOT = Path(__file__).resolve().parents[1] / "artifacts" / "dashboard.png"
SKUS = [f"SKU-{i:03d}" for i in range(6)]


def browser_or_skip():
    if not Path(CHROMIUM).exists() and shutil.which("chromium") is None:
        pytest.skip("Debian's chromium is not installed (apt-get install chromium; .ci/run installs it)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed (pip install the test extras)")
    return sync_playwright


def shown_ats(page) -> dict[str, str]:
    return page.evaluate(
        "() => Object.fromEntries([...document.querySelectorAll('#ats-body tr')]"
        ".map(r => [r.dataset.sku, r.querySelector('td.ats').textContent]))"
    )


def wait_shown(page, expected: dict[str, int], timeout: float = 20) -> None:
    want = {sku: str(ats) for sku, ats in expected.items()}
    deadline = time.monotonic() + timeout
    while (got := shown_ats(page)) != want:
        assert time.monotonic() < deadline, f"dashboard shows {got}, expected {want}"
        page.wait_for_timeout(250)


def test_dashboard_shows_live_ats_and_explains_a_channel(settings):
    sync_playwright = browser_or_skip()
    settings = with_two_shops(settings)
    traffic = stock_up(settings, SKUS, orders=200, seed=21)

    worker = WorkerProcess(settings).start()
    try:
        worker.wait_ready()
        wait_until_ready(worker)
        wrong = wait_for_expected(worker, SKUS, traffic.truth.ats, timeout=60)
        assert not wrong, f"ATS differs from ground truth: {wrong}\n{worker.log_tail()}"

        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": 1500, "height": 900})
                errors: list[str] = []
                page.on("pageerror", lambda exc: errors.append(str(exc)))
                page.goto(f"{worker.url}/", wait_until="load")
                assert page.title().startswith("stockstream")
                before = {sku: traffic.truth.ats(sku) for sku in SKUS}
                wait_shown(page, before)
                assert page.locator("#status").text_content() == "live"
                page.evaluate("() => { window.__loadedOnce = true }")  # gone if the page reloads
                polls = int(page.evaluate("() => document.body.dataset.polls"))

                RawPublisher(settings).publish("tmall", traffic.messages(300))
                after = {sku: traffic.truth.ats(sku) for sku in SKUS}
                assert after != before, "the new orders must change some SKU's ATS"
                wait_shown(page, after, timeout=30)
                assert page.evaluate("() => window.__loadedOnce") is True, "the page reloaded"
                assert int(page.evaluate("() => document.body.dataset.polls")) > polls
                # The worker kept several points of the changed SKUs: the sparkline is a line.
                changed = next(sku for sku in SKUS if after[sku] != before[sku])
                page.wait_for_function(
                    "sku => { const l = document.querySelector(`tr[data-sku='${sku}'] svg.spark-1 polyline`);"
                    " return l && l.getAttribute('points').split(' ').length >= 2 }", arg=changed, timeout=10_000)

                page.fill("#search", SKUS[1])
                page.wait_for_function("() => document.querySelectorAll('#ats-body tr').length === 1", timeout=5_000)
                assert list(shown_ats(page)) == [SKUS[1]]

                page.click(f"tr[data-sku='{SKUS[1]}'] button.why[data-channel='{TMALL}']")
                title = page.locator("#provenance-title")
                title.wait_for(state="visible", timeout=5_000)
                page.wait_for_function("() => document.querySelector('#provenance-title').textContent.startsWith('Why')",
                                       timeout=5_000)
                shown = page.locator(f"tr[data-sku='{SKUS[1]}'] button.why[data-channel='{TMALL}']").text_content()
                assert title.text_content() == f"Why does {TMALL} show {shown} for {SKUS[1]}?"
                assert f"ATS of {SKUS[1]} is {after[SKUS[1]]}" in page.locator("#provenance-text").text_content()

                page.fill("#search", "")
                wait_shown(page, after)
                SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(SCREENSHOT), full_page=True)
                assert not errors, f"JavaScript errors: {errors}"
            finally:
                browser.close()
    finally:
        worker.stop()
    assert SCREENSHOT.stat().st_size > 10_000
