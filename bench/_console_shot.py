"""A screenshot of the ops console in headless Chromium (Debian's package, driven by Playwright), taken
by the spike replay at the end of a mode: the charts then show the spike and the move of the routes."""

from __future__ import annotations

import shutil
from pathlib import Path

CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]


def console_screenshot(gateway: str, admin_token: str, target: Path) -> str | None:
    """Open the console, sign in, show the last minute, save a PNG to ``target``; the reason it could
    not (no Chromium, no Playwright, the page failed), or None."""
    chromium = shutil.which("chromium")
    if chromium is None:
        return "chromium is not installed (make browser-deps)"
    try:
        from playwright.sync_api import Error, sync_playwright
    except ImportError:
        return "playwright is not installed (make install)"
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS)
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.goto(f"{gateway}/_gateway/console/")
            page.fill("#token", admin_token)
            page.click("#login button[type=submit]")
            page.get_by_role("button", name="1 min").click()
            page.wait_for_selector("#chart-rps g.marker", timeout=10_000)  # an override's marker
            page.wait_for_timeout(1500)  # one more redraw with the newest second
            target.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(target), full_page=True)
            browser.close()
    except Error as exc:
        return f"the console could not be captured: {str(exc).splitlines()[0]}"
    return None
