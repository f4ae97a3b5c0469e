"""Headless Chromium for page tests: Debian's browser driven by Playwright (no browser download).

Registered as a pytest plugin in conftest, so any test can ask for ``browser_page``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, sync_playwright

CHROMIUM = "/usr/bin/chromium"


@pytest.fixture
def browser_page() -> Iterator[Page]:
    """A fresh page in headless Chromium; generous timeouts, since the machine is shared."""
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-dev-shm-usage"]
        )
        try:
            page = browser.new_page()
            page.set_default_timeout(30_000)
            yield page
        finally:
            browser.close()
