"""Headless Chromium for page tests: Debian's browser driven by Playwright (no browser download).

Registered as a pytest plugin in conftest, so any test can ask for ``browser_page``; a test keeps
what a page looked like with :func:`screenshot` (under ``artefacts/screenshots``, or
``$RADROUTER_ARTEFACTS/screenshots``, which CI can keep).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, sync_playwright

CHROMIUM = "/usr/bin/chromium"
ARTEFACTS = Path(os.environ.get("RADROUTER_ARTEFACTS", Path(__file__).parents[1] / "artefacts"))


def screenshot(page: Page, name: str) -> Path:
    """Save the whole page as ``<artefacts>/screenshots/<name>.png``; the path, for the test's message."""
    path = ARTEFACTS / "screenshots" / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(path), full_page=True)
    return path


@pytest.fixture
def browser_page() -> Iterator[Page]:
    """A fresh page in headless Chromium; generous timeouts, since the machine is shared."""
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-dev-shm-usage"]
        )
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 900})
            page.set_default_timeout(30_000)
            yield page
        finally:
            browser.close()
