"""The reading list page in headless Chromium against a real server: who each study is (from the
stored header), the STAT study first, filters, the keyboard, the viewer link, and refreshes that come
from the change counter rather than from re-fetching the list."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, Request, expect

from bench.worklist_page import open_studies, real_headers
from radrouter.config.access import Role
from radrouter.config.settings import Settings
from radrouter.storage import accounts
from radrouter.storage.index import Index, utcnow
from tests.access import PASSWORD, bearer, browser_sign_in
from tests.browser import screenshot
from tests.services import free_port
from tests.web.served import serving

VIEWER = "/viewer-under-test?StudyInstanceUIDs={study_uid}"


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Index, list[str]]]:
    """A web app with a viewer configured (the viewer is not needed: its URL is what is checked), over
    three studies whose instances are the real head CT and MPRAGE files: CT STAT, MR URGENT, CT URGENT."""
    port = free_port()
    settings = Settings(
        storage={"root": tmp_path}, viewer={"url_template": f"http://127.0.0.1:{port}{VIEWER}"}
    )
    index = Index(settings.storage.resolved_index_url())
    uids = open_studies(index, real_headers(), 3, utcnow())
    with serving(settings, index, port) as url:
        yield url, index, uids
    index.engine.dispose()


def test_the_reading_list_shows_who_filters_and_works_from_the_keyboard(
    served: tuple[str, Index, list[str]], browser_page: Page
) -> None:
    url, index, (stat_ct, urgent_mr, urgent_ct) = served
    page = browser_page
    requests: list[Request] = []
    accounts.add_user(index, "dr-keys", Role.RADIOLOGIST, PASSWORD)
    browser_sign_in(page, url, "dr-keys")
    page.on("request", lambda request: requests.append(request))
    page.goto(f"{url}/worklist")

    rows = page.locator("#rows tr")
    expect(rows).to_have_count(3)
    top = rows.first
    expect(top).to_have_attribute("data-study-uid", stat_ct)
    expect(top.locator(".badge")).to_have_text("STAT")
    expect(top.locator(".patient a.viewer")).to_have_text("HEAD")
    expect(top.locator(".patient-id")).to_have_text("PLASTIC")
    expect(top.locator(".description")).to_have_text("1A TRAUMA/PLAIN HEAD DM")
    expect(top.locator(".body-part")).to_have_text("BRAIN")
    expect(top.locator(".study-time")).to_have_text("2015-02-06 09:28")
    viewer_link = top.locator("a.viewer")
    expect(viewer_link).to_have_attribute("href", url + VIEWER.format(study_uid=stat_ct))
    mri = page.locator(f'#rows tr[data-study-uid="{urgent_mr}"]')
    expect(mri.locator(".patient a.viewer")).to_have_text("D2N_PHILIPS_3T_R571")
    expect(mri.locator(".age-sex")).to_have_text("41 y / M")
    expect(page.locator("#navigation a[aria-current=page]")).to_have_text("Reading list")
    screenshot(page, "reading-list")

    page.select_option("#modality", "MR")
    expect(rows).to_have_count(1)
    expect(rows.first).to_have_attribute("data-study-uid", urgent_mr)
    page.select_option("#modality", "")
    page.select_option("#priority", "urgent")
    expect(rows).to_have_count(2)
    expect(page.locator(f'#rows tr[data-study-uid="{stat_ct}"]')).to_have_count(0)
    page.select_option("#priority", "")
    expect(rows).to_have_count(3)

    def selected() -> str | None:
        return page.locator("#rows tr[aria-selected=true]").get_attribute("data-study-uid")

    page.locator("h1").click()  # focus off the filters: keys go to the list
    assert selected() == urgent_mr, "the selection stays on its study while filters change"
    page.keyboard.press("k")
    expect(top).to_have_attribute("aria-selected", "true")
    page.keyboard.press("j")
    page.keyboard.press("ArrowDown")
    assert selected() == urgent_ct
    page.keyboard.press("ArrowUp")
    assert selected() == urgent_mr
    with page.expect_popup() as opened:
        page.keyboard.press("Enter")
    assert opened.value.url == url + VIEWER.format(study_uid=urgent_mr)
    opened.value.close()

    page.keyboard.press("r")
    expect(page.locator(f'#rows tr[data-study-uid="{urgent_mr}"]')).to_have_count(0)
    token = accounts.add_token(index, "reading-list-test", Role.VIEWER)
    listed = [e["study_uid"] for e in httpx.get(f"{url}/api/worklist", headers=bearer(token)).json()]
    assert listed == [stat_ct, urgent_ct]
    read = next(r for r in requests if r.method == "POST")
    assert read.url.endswith(f"/api/worklist/{urgent_mr}/read")
    assert "x-csrf-token" in read.headers and read.headers["content-type"] == "application/json"

    # Idle, the page asks only the change counter; a new study shows up without a reload.
    page.evaluate("window.notReloaded = true")
    requests.clear()
    page.wait_for_timeout(5000)
    polled = [r.url for r in requests]
    assert polled and all("/api/worklist/version" in u for u in polled), polled
    (new_stat,) = open_studies(index, real_headers()[:1], 1, utcnow())
    expect(page.locator(f'#rows tr[data-study-uid="{new_stat}"]')).to_be_visible(timeout=15_000)
    assert page.evaluate("window.notReloaded") is True
