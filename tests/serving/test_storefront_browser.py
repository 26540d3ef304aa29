"""The storefront and dashboard in headless Chromium against a real server: search, facets,
product page, add to cart (events really posted and used), explanations, Chinese, screenshots."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageStat
from serving_support import KeywordSearcher, ServerThread, find_chromium, make_settings

from shopfusion.serving.app import create_app

CHROMIUM = find_chromium()
pytestmark = [
    pytest.mark.skipif(CHROMIUM is None, reason="no chromium on PATH (Debian: apt-get install chromium)"),
    pytest.mark.skipif(importlib.util.find_spec("playwright") is None, reason="playwright is not installed"),
]
STOREFRONT_KEY = "publishable-storefront-key"


@pytest.fixture
def server(sample_artifact: Path, tmp_path: Path) -> Iterator[tuple[ServerThread, Any]]:
    report = tmp_path / "report"
    report.mkdir()
    Image.new("RGB", (400, 200), (30, 90, 200)).save(report / "metrics.png")  # stands in for the chart
    settings = make_settings(sample_artifact, tmp_path, storefront_key=STOREFRONT_KEY, report_dir=report)
    app = create_app(settings, searcher_loader=KeywordSearcher.from_artifact)
    with ServerThread(app) as running:
        yield running, app.state.service


@pytest.fixture
def page() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="en-US")
        yield context.new_page()
        browser.close()


def _open(page: Any, url: str) -> None:
    page.goto(url)
    page.wait_for_selector("body[data-ready='1']")  # set by the page's script once it rendered


def _check_screenshot(path: Path) -> None:
    """A real rendering: the expected size and far from one flat colour."""
    image = Image.open(path).convert("L")
    assert image.size == (1280, 900)
    assert ImageStat.Stat(image).stddev[0] > 20


def test_shopper_searches_filters_opens_a_product_and_adds_it_to_the_cart(
    server: tuple[ServerThread, Any], page: Any, tmp_path: Path
) -> None:
    running, service = server
    _open(page, running.url + "/")
    assert page.locator("#feed .tile").count() == 12
    visitor = page.locator("#visitor").inner_text()

    page.fill("#q", "phone")
    page.press("#q", "Enter")
    page.wait_for_selector("#results .tile")
    assert page.locator("#facets input[data-facet='brand']").count() >= 2
    brand = page.locator("#facets input[data-facet='brand']").first.get_attribute("value")
    page.locator("#facets input[data-facet='brand']").first.check()
    page.wait_for_function(
        "b => [...document.querySelectorAll('#results .tile .meta')]"
        ".every(m => m.textContent.startsWith(b + ' ·'))",
        arg=brand,
    )
    page.screenshot(path=str(tmp_path / "search.png"))
    _check_screenshot(tmp_path / "search.png")

    title = page.locator("#results .tile .title").first.inner_text()
    page.locator("#results .tile .title").first.click()
    page.wait_for_selector("#add-to-cart")
    assert page.locator("#product h2").inner_text() == title
    page.wait_for_selector("#similar .tile")
    page.click("#add-to-cart")
    page.wait_for_function("document.getElementById('cart-count').textContent === '1'")
    page.locator("#similar .tile .why").first.click()
    page.wait_for_selector("#why-panel:not([hidden])")
    assert page.locator("#why-summary").inner_text().startswith("Ranked #")
    assert page.locator("#why-reasons li").count() == 4  # one line per signal
    page.screenshot(path=str(tmp_path / "product.png"))
    _check_screenshot(tmp_path / "product.png")

    # The events were really stored, under the visitor's pseudonym, and feed the next feed.
    page.wait_for_function("Number(document.getElementById('tracking-status').textContent) >= 4")
    events = service.store.events_after(0)
    kinds = {event.type.value for _, event in events}
    assert {"search", "click", "view", "add_to_cart"} <= kinds
    assert {event.user_id for _, event in events} == {service.pseudonymize(visitor)}
    assert service.online_history_length(visitor) >= 2


def test_a_refused_request_is_asked_again_after_its_retry_after(
    server: tuple[ServerThread, Any], page: Any
) -> None:
    running, _ = server
    refused: list[str] = []

    def busy_once(route: Any) -> None:
        if not refused:  # the first similar-items call meets a server at capacity
            refused.append(route.request.url)
            route.fulfill(
                status=503,
                headers={"Retry-After": "1", "Content-Type": "application/json"},
                body='{"detail": "the service is at capacity; retry shortly"}',
            )
        else:
            route.continue_()

    page.route("**/v1/similar/**", busy_once)
    _open(page, running.url + "/")
    page.locator("#feed .tile .title").first.click()
    page.wait_for_selector("#add-to-cart")
    page.wait_for_selector("#similar .tile")
    assert len(refused) == 1


def test_storefront_in_chinese(server: tuple[ServerThread, Any], page: Any, tmp_path: Path) -> None:
    running, _ = server
    _open(page, running.url + "/")
    page.click("#lang")
    page.wait_for_function("document.querySelector('#search-form button').textContent === '搜索'")
    assert page.locator("#home-view h2").inner_text() == "为你推荐"
    page.fill("#q", "电视")
    page.press("#q", "Enter")
    page.wait_for_selector("#results .tile")
    titles = page.locator("#results .tile .title").all_inner_texts()
    assert titles and all("电视" in t for t in titles)
    page.locator("#results .tile .why").first.click()
    page.wait_for_selector("#why-panel:not([hidden])")
    assert page.locator("#why-panel h3").inner_text() == "为什么推荐这件商品？"
    assert (
        page.locator("#why-summary").inner_text().startswith(("为新访客推荐第", "为你推荐第", "没有任何信号"))
    )
    page.screenshot(path=str(tmp_path / "zh.png"))
    _check_screenshot(tmp_path / "zh.png")


def test_dashboard_shows_live_metrics_and_the_model(
    server: tuple[ServerThread, Any], page: Any, tmp_path: Path
) -> None:
    running, _ = server
    _open(page, running.url + "/")
    _open(page, running.url + "/dashboard")
    assert int(page.locator("#m-requests").inner_text()) >= 2
    assert "GET /v1/recommend" in page.locator("#latency").inner_text()
    assert "item2item" in page.locator("#model-pipeline").inner_text()
    assert "serving" in page.locator("#reloads").inner_text()
    assert page.evaluate("document.getElementById('report-plot').naturalWidth") == 400  # the report plot
    assert "GET /static" in page.locator("#latency").inner_text()
    page.screenshot(path=str(tmp_path / "dashboard.png"))
    _check_screenshot(tmp_path / "dashboard.png")
