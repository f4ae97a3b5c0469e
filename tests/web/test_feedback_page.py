"""Feedback from the worklist page: a radiologist clicks Agree in headless Chromium, the verdict is stored."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, expect

from radrouter.config.access import Role
from radrouter.config.rules import Priority
from radrouter.config.settings import Settings
from radrouter.storage.accounts import add_token, add_user
from radrouter.storage.index import Index, Result, WorklistItem, utcnow
from radrouter.worklist.items import open_item
from tests.access import PASSWORD, bearer, browser_sign_in
from tests.browser import screenshot
from tests.monitoring.conftest import add_result
from tests.services import free_port, wait_until
from tests.web.served import serving


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Index]]:
    """The web app on a free port (uvicorn in a thread), over its own index."""
    settings = Settings(storage={"root": tmp_path})
    index = Index(settings.storage.resolved_index_url())
    with serving(settings, index, free_port()) as url:
        yield url, index


def on_the_list(index: Index, finding: str) -> tuple[str, int]:
    """A study with a liver-volume report, on the reading list with an AI finding shown."""
    result_id = add_result(index, utcnow(), measurements=[{"name": "Liver volume", "value": 2400.0}])
    with index.session() as session:
        result = session.get(Result, result_id)
        assert result is not None
        study_uid = result.job.study_uid
        item: WorklistItem = open_item(
            index, session, study_uid, Priority.ROUTINE, source="header", reason="routine", at=utcnow()
        )
        item.finding = finding
    return study_uid, result_id


def test_agree_on_the_page_is_stored_as_feedback(served: tuple[str, Index], browser_page: Page) -> None:
    url, index = served
    agreed, agreed_result = on_the_list(index, "Liver volume above 2000 mL")
    disagreed, disagreed_result = on_the_list(index, "Liver volume above 2000 mL")
    add_user(index, "dr-feedback", Role.ADMIN, PASSWORD)  # the monitoring page below is the admin's
    browser_sign_in(browser_page, url, "dr-feedback")
    browser_page.goto(f"{url}/worklist")
    api = httpx.Client(headers=bearer(add_token(index, "feedback-test", Role.ADMIN)))

    row = browser_page.locator(f'#rows tr[data-study-uid="{agreed}"]')
    row.get_by_role("button", name="Agree", exact=True).click()
    expect(row).to_have_count(0)
    other = browser_page.locator(f'#rows tr[data-study-uid="{disagreed}"]')
    other.get_by_role("button", name="Disagree", exact=True).click()
    expect(other).to_have_count(0)

    def verdicts(result_id: int) -> list[tuple[str, str, str]]:
        rows = api.get(f"{url}/api/results/{result_id}/feedback").json()
        return [(f["verdict"], f["source"], f["version"], f["author"]) for f in rows]

    agreed_by = wait_until(lambda: verdicts(agreed_result), 30, "feedback")
    assert agreed_by == [("agree", "worklist", "1.0", "dr-feedback")]  # the feedback keeps its author
    assert verdicts(disagreed_result) == [("disagree", "worklist", "1.0", "dr-feedback")]
    stats = api.get(f"{url}/api/monitoring/liver-volume").json()["statistics"]
    agreement = next(s for s in stats if s["statistic"] == "agreement")
    assert (agreement["days"][-1]["samples"], agreement["days"][-1]["value"]) == (2, 0.5)

    browser_page.goto(f"{url}/monitoring/liver-volume")
    expect(browser_page.get_by_role("heading", name="Agreement")).to_be_visible()
    widths = browser_page.eval_on_selector_all("img", "images => images.map(i => i.naturalWidth)")
    assert len(widths) == 7 and all(w > 300 for w in widths)  # measurement, agreement, 5 input mixes
    screenshot(browser_page, "monitoring-pipeline")
