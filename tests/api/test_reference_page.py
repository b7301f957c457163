"""The reference page (/api/v1/docs) in headless Chromium, from the running gateway: it renders with
its own stylesheet and asks for nothing else (works offline), and the CSP lets it (no violation)."""

from __future__ import annotations

import shutil

import pytest
from playwright.sync_api import sync_playwright

from tests.api.conftest import ApiStack
from tests.conftest import IN_CI

CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]


def test_the_reference_page_renders_offline(api_stack: ApiStack) -> None:
    chromium = shutil.which("chromium")
    if chromium is None:
        if IN_CI:
            pytest.fail("chromium is required under CI=true (make browser-deps)")
        pytest.skip("chromium is not installed (make browser-deps)")
    url = f"{api_stack.gateways['legacy']}/api/v1/docs"
    requested: list[str] = []
    problems: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page()
            page.on("request", lambda request: requested.append(request.url))
            page.on(
                "console", lambda message: problems.append(message.text) if message.type == "error" else None
            )
            page.on("requestfailed", lambda request: problems.append(f"failed: {request.url}"))
            page.goto(url)
            assert page.title() == "Shop API reference"
            assert page.locator("#reviews\\.list").is_visible()
            # The inline stylesheet applied (allowed by its hash): the method label is bold.
            assert page.locator("#reviews\\.list .m").evaluate("e => getComputedStyle(e).fontWeight") == "700"
            page.click("a[href='#schema-Error']")
            assert page.locator("#schema-Error").is_visible()
        finally:
            browser.close()
    assert requested == [url], requested
    assert not problems, problems
