"""The ops console in headless Chromium (Debian's package, driven by Playwright) against a running stack."""

from __future__ import annotations

import os
import re
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from flags.routes_file import SHIPPED_ROUTES_FILE, route_ids
from tests.conftest import IN_CI
from tests.gateway.conftest import ADMIN_TOKEN, Stack
from tests.support.waiting import eventually

HOT_ROUTES = len(route_ids(SHIPPED_ROUTES_FILE))  # one table row per hot route
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    chromium = shutil.which("chromium")
    if chromium is None:
        if IN_CI:
            pytest.fail("chromium is required under CI=true (make browser-deps)")
        pytest.skip("chromium is not installed (make browser-deps)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Browser, stack: Stack) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.goto(f"{stack.gateway}/_gateway/console/")
    yield page
    context.close()
    httpx.delete(
        f"{stack.gateway}/_gateway/admin/overrides",
        params={"route": "*", "reason": "console test over"},
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
    )


def _open(page: Page, token: str) -> None:
    page.fill("#token", token)
    page.click("#login button[type=submit]")


def _load(url: str, stop: threading.Event, clients: int = 3) -> list[threading.Thread]:
    """Clients requesting two hot routes (both on legacy by default) back to back until ``stop``."""

    def load() -> None:
        with httpx.Client(base_url=url) as client:
            while not stop.is_set():
                client.get("/api/v1/reviews/items/1/summary")
                client.get("/api/v1/reviews/items/2?size=5")

    threads = [threading.Thread(target=load) for _ in range(clients)]
    for thread in threads:
        thread.start()
    return threads


def _chart_end(page: Page) -> int:
    """The newest second the charts show (0 before the first draw)."""
    return int(page.locator("#chart-rps").get_attribute("data-end") or 0)


def test_a_wrong_token_is_refused_with_a_clear_message(page: Page):
    _open(page, "not-the-token")
    expect(page.locator("#status")).to_contain_text("refused")
    expect(page.locator("#console")).to_be_hidden()


def test_flip_all_from_the_console_moves_every_route_and_is_audited(page: Page, stack: Stack):
    _open(page, ADMIN_TOKEN)
    rows = page.locator("#routes tbody tr")
    expect(rows).to_have_count(HOT_ROUTES)
    expect(page.locator("#routes td.backend.legacy")).to_have_count(HOT_ROUTES)

    page.get_by_role("button", name="Flip all to candidate").click()
    expect(page.locator("#confirm")).to_be_visible()
    page.fill("#reason", "8 pm push (console test)")
    page.click("#confirm-button")

    expect(page.locator("#routes td.backend.candidate")).to_have_count(HOT_ROUTES)
    expect(page.locator("#audit tbody")).to_contain_text("8 pm push (console test)")
    expect(page.locator("#audit tbody")).to_contain_text("console")
    time.sleep(0.1)
    served = httpx.get(f"{stack.gateway}/api/v1/reviews/items/1/summary").headers["x-served-by"]
    assert served == "reviews"


def test_cancel_changes_nothing_and_the_dialog_needs_a_reason(page: Page):
    _open(page, ADMIN_TOKEN)
    expect(page.locator("#routes tbody tr")).to_have_count(HOT_ROUTES)
    page.get_by_role("button", name="→ candidate reviews.list").click()
    page.click("#confirm-button")  # empty reason: the form refuses
    expect(page.locator("#confirm")).to_be_visible()
    page.get_by_role("button", name="Cancel").click()
    expect(page.locator("#confirm")).to_be_hidden()
    expect(page.locator("#routes tbody tr[data-route='reviews.list'] td.backend")).to_have_text("legacy")


def test_keyboard_only_percentage_split(page: Page):
    _open(page, ADMIN_TOKEN)
    expect(page.locator("#routes tbody tr")).to_have_count(HOT_ROUTES)
    page.get_by_role("button", name="% split reviews.detail").focus()
    page.keyboard.press("Enter")
    page.keyboard.type("25")
    page.locator("#reason").focus()
    page.keyboard.type("canary by keyboard")
    page.keyboard.press("Enter")
    row = page.locator("#routes tbody tr[data-route='reviews.detail']")
    expect(row.locator("td.backend")).to_have_text("split")
    expect(row).to_contain_text("25 %")


def test_the_rollouts_panel_shows_a_rollout_and_pauses_it(page: Page, stack: Stack):
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    rollouts = f"{stack.gateway}/_gateway/admin/rollouts"
    body = {"route": "reviews.detail", "steps": [1, 10, 100], "every_seconds": 3600, "reason": "console test"}
    started = httpx.post(rollouts, json=body, headers=admin)
    assert started.status_code == 200, started.text
    try:
        _open(page, ADMIN_TOKEN)
        row = page.locator("#rollouts tbody tr[data-route='reviews.detail']")
        expect(row.locator("td.state")).to_have_text("running")
        expect(row.locator("progress")).to_have_attribute("value", "1")
        expect(row).to_contain_text("step 1/3 (1, 10, 100 %)")
        page.get_by_role("button", name="pause rollout reviews.detail").click()
        expect(page.locator("#confirm-what")).to_contain_text("Pause the rollout of reviews.detail")
        page.fill("#reason", "looking at the p99 (console test)")
        page.click("#confirm-button")
        expect(row.locator("td.state")).to_have_text("paused")
        expect(row.locator("td.why")).to_contain_text("paused at 1 % by console: looking at the p99")
        expect(page.get_by_role("button", name="resume rollout reviews.detail")).to_be_visible()
    finally:
        aborted = httpx.post(
            rollouts, json={"action": "abort", "route": "*", "reason": "console test over"}, headers=admin
        )
        assert aborted.status_code == 200, aborted.text
        # The abort left a legacy override (actor rollout, no TTL) on the shared stack: release it
        # (retried: the worker answering may not have seen it yet, and 404s until it has).
        release = {"route": "reviews.detail", "reason": "console test over"}
        overrides = f"{stack.gateway}/_gateway/admin/overrides"
        assert eventually(
            lambda: httpx.delete(overrides, params=release, headers=admin).status_code == 200,
            timeout=10,
            interval=0.1,
        )


def test_screenshot_under_load(page: Page, stack: Stack, tmp_path: Path):
    # The one-worker gateway with shadowing on: its live figures and shadow counts are all in one process.
    page.goto(f"{stack.shadow_gateway}/_gateway/console/")
    stop = threading.Event()
    threads = _load(stack.shadow_gateway, stop)
    try:
        _open(page, ADMIN_TOKEN)
        expect(page.locator("#routes tbody tr")).to_have_count(HOT_ROUTES)
        page.get_by_role("button", name="1 min").click()  # the spike and the flip, wide enough to read
        expect(page.locator("#chart-rps")).to_have_attribute("data-end", re.compile(r"^[1-9]"))
        loaded = _chart_end(page)
        # Some seconds of load on legacy in the charts (a bound, not a target: the charts catch up).
        assert eventually(lambda: _chart_end(page) >= loaded + 8, timeout=30, interval=0.2)
        page.get_by_role("button", name="→ candidate reviews.summary").click()
        page.fill("#reason", "busy reviews")
        page.click("#confirm-button")
        expect(page.locator("#routes tbody tr[data-route='reviews.summary'] td.backend")).to_have_text(
            "candidate"
        )
        flipped = _chart_end(page) + 2
        expect(page.locator("#chart-rps g.marker title").filter(has_text="busy reviews")).to_have_count(1)
        # And some seconds after the flip, with the candidate's share in the charts.
        assert eventually(lambda: _chart_end(page) >= flipped + 6, timeout=30, interval=0.2)
        target = Path(os.environ.get("CONSOLE_SCREENSHOT") or tmp_path / "console.png")
        page.screenshot(path=str(target), full_page=True)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
        httpx.delete(
            f"{stack.shadow_gateway}/_gateway/admin/overrides",
            params={"route": "*", "reason": "test over"},
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        )
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    live = page.locator("#routes tbody tr[data-route='reviews.summary'] td")
    expect(live.nth(5)).to_contain_text(" ms")  # legacy's live figures for the last minute
    expect(live.nth(6)).to_contain_text(" ms")  # and the candidate's, since the move


def test_the_charts_render_update_under_load_and_mark_a_flip(page: Page, stack: Stack):
    # The two-worker gateway: the charts sum both workers' timelines.
    problems: list[str] = []  # script errors and CSP refusals (Chromium logs those as errors)
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
    stop = threading.Event()
    threads = _load(stack.gateway, stop)
    try:
        _open(page, ADMIN_TOKEN)
        expect(page.locator("#charts figure svg")).to_have_count(4)
        rps = page.locator("#chart-rps")
        busy = re.compile(r"^[1-9]")
        expect(rps).to_have_attribute("data-legacy-latest", busy, timeout=15_000)
        for chart in ("rps", "errors", "p99"):
            expect(page.locator(f"#chart-{chart} path.line.legacy")).to_have_count(1)
        expect(page.locator("#chart-p99")).to_have_attribute("data-legacy-latest", re.compile(r"^\d"))
        expect(page.locator("#chart-limit path.line.limit")).to_have_count(1)  # legacy's adaptive limit
        expect(page.locator("#chart-rps figcaption")).to_contain_text("legacy")
        end = rps.get_attribute("data-end")
        expect(rps).not_to_have_attribute("data-end", end or "")  # redrawn with newer seconds

        flip = httpx.post(
            f"{stack.gateway}/_gateway/admin/overrides",
            json={"route": "reviews.summary", "backend": "candidate", "reason": "charts test flip",
                  "actor": "chart-tester"},
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        )  # fmt: skip
        assert flip.status_code == 200, flip.text
        for chart in ("rps", "errors", "p99", "limit"):
            marker = page.locator(f"#chart-{chart} g.marker title").filter(has_text="charts test flip")
            expect(marker).to_have_count(1)
            expect(marker).to_contain_text("chart-tester: reviews.summary → candidate")
        expect(rps).to_have_attribute("data-candidate-latest", busy, timeout=15_000)

        page.get_by_role("button", name="1 min").click()
        expect(page.get_by_role("button", name="1 min")).to_have_attribute("aria-pressed", "true")
        expect(rps.locator("text").filter(has_text="−30 s")).to_have_count(1)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert problems == [], problems
