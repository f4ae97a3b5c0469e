"""The dashboard in headless Chromium, against the running node: workers, queues, config, and the retry
buttons giving a dead-lettered delivery and a failed job their second chance."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pydicom
import pytest
from playwright.sync_api import Page, expect
from pydicom.uid import generate_uid

from radrouter.config.access import Role
from radrouter.config.settings import Settings
from radrouter.storage.index import (
    Delivery,
    DeliveryState,
    Index,
    Job,
    JobState,
    Result,
    Series,
    Study,
    StudyState,
)
from radrouter.web.configuration import config_in_use
from tests.access import browser_sign_in
from tests.browser import screenshot
from tests.services import DATA, Node, Orthanc, wait_until

LIVER_SEG = DATA / "ct-abdomen-3slice-with-seg" / "seg" / "liver.dcm"


@pytest.fixture
def page(browser_page: Page, node: Node) -> Page:
    """The browser, signed in as an admin (the dashboard's role)."""
    browser_sign_in(browser_page, node.url, node.user(Role.ADMIN))
    return browser_page


@pytest.fixture
def index(node: Node) -> Iterator[Index]:
    opened = Index(f"sqlite:///{node.workdir / 'data' / 'index.sqlite3'}")
    yield opened
    opened.engine.dispose()


def _failed_study(index: Index) -> tuple[str, int, int]:
    """A study whose job failed and whose SEG delivery was dead-lettered: (study UID, job, delivery)."""
    seg = pydicom.dcmread(LIVER_SEG, stop_before_pixels=True)
    study_uid, series_uid = generate_uid(), generate_uid()
    with index.session() as session:
        session.add(Study(uid=study_uid, state=StudyState.FAILED, reason="1 job(s) failed"))
        session.add(Series(uid=series_uid, study_uid=study_uid, modality="MR"))
        session.flush()
        failed = Job(
            study_uid=study_uid, series_uid=series_uid, pipeline="brain-extraction", priority="routine",
            rule="test", state=JobState.FAILED, error="the model failed: out of memory",
        )  # fmt: skip
        session.add(failed)
        session.flush()
        result = Result(
            job_id=failed.id, kind="SEG", sop_uid=seg.SOPInstanceUID, sop_class_uid=seg.SOPClassUID,
            series_uid=seg.SeriesInstanceUID, path=str(LIVER_SEG),
        )  # fmt: skip
        session.add(result)
        session.flush()
        dead = Delivery(
            result_id=result.id, destination="pacs", state=DeliveryState.FAILED, attempts=10,
            last_error="association rejected",
        )  # fmt: skip
        session.add(dead)
        session.flush()
        return study_uid, failed.id, dead.id


def test_dashboard_shows_the_node_at_work(node: Node, page: Page) -> None:
    page.goto(f"http://127.0.0.1:{node.web_port}/dashboard")
    for check in ("index", "broker", "scp"):
        expect(page.locator(f'#checks tr[data-check="{check}"] td')).to_have_text("ok")
    processes = page.locator("#processes tr[data-process]")
    expect(processes.filter(has_text="scp")).to_have_count(1)
    expect(processes.filter(has_text="running")).to_have_count(processes.count())
    pacs = page.locator('#destinations tr[data-destination="pacs"]')
    expect(pacs).to_contain_text("127.0.0.1")
    workers = page.locator("#workers tr[data-worker]")
    expect(workers.filter(has_text="delivery@")).to_have_count(1)
    expect(workers.filter(has_text="brain-extraction@")).to_have_count(1)
    expect(page.locator('#queues tr[data-queue="delivery"]')).to_have_count(1)
    expect(page.locator('#activity [data-window="last day"] [data-key="received"]')).to_have_text(
        str(len(node.http.get(f"{node.api}/studies?limit=1000").json()))
    )
    chart = page.locator("#activity-chart")
    assert chart.evaluate("img => img.complete && img.naturalWidth") > 600, "the activity chart drew"
    expect(page.locator("body")).not_to_contain_text("embedded_port"), "no configuration dump here"
    screenshot(page, "dashboard")

    page.locator("#config-link").click()
    expect(page).to_have_url(f"http://127.0.0.1:{node.web_port}/config")
    expect(page.locator("#navigation a[aria-current=page]")).to_have_text("Configuration")
    expect(page.locator('#config [data-section="node"]')).to_contain_text(f"port: {node.port}")
    screenshot(page, "configuration")


def test_retry_buttons_requeue_a_dead_delivery_and_a_failed_job(
    node: Node, orthanc: Orthanc, index: Index, page: Page
) -> None:
    study_uid, job_id, delivery_id = _failed_study(index)
    page.goto(f"http://127.0.0.1:{node.web_port}/dashboard")
    expect(page.locator(f'tr[data-study="{study_uid}"] .state')).to_have_text("FAILED")
    dead = page.locator(f'#dead-deliveries tr[data-delivery="{delivery_id}"]')
    expect(dead).to_contain_text("association rejected")

    dead.get_by_role("button", name="retry").click()
    expect(page).to_have_url(f"http://127.0.0.1:{node.web_port}/dashboard")
    expect(dead).to_have_count(0)
    delivered = wait_until(
        lambda: (
            next(d for d in node.study(study_uid)["deliveries"] if d["id"] == delivery_id)["state"]
            == "DELIVERED"
        ),
        60,
        "the retried delivery",
    )
    assert delivered
    seg = pydicom.dcmread(LIVER_SEG, stop_before_pixels=True)
    query = {"Level": "Instance", "Query": {"SOPInstanceUID": seg.SOPInstanceUID}}
    assert httpx.post(f"{orthanc.url}/tools/find", json=query).json()

    page.locator(f'#failed-jobs tr[data-job="{job_id}"]').get_by_role("button", name="retry").click()
    # The row may come back at once: the synthetic job has no images, so the worker fails it again.
    expect(page).to_have_url(f"http://127.0.0.1:{node.web_port}/dashboard")

    def worker_took_it_again() -> list[dict[str, object]]:
        events = node.study(study_uid)["events"]
        return [e for e in events if e["hop"] == "inference_started" and e["detail"]["job"] == job_id]

    assert wait_until(worker_took_it_again, 60, "a worker to run the retried job")
    events = node.study(study_uid)["events"]
    admin = node.user(Role.ADMIN)
    assert any(
        e["hop"] == "queued"
        and e["detail"].get("retry")
        and e["detail"].get("job") == job_id
        and e["detail"].get("user") == admin  # the audit names who asked
        for e in events
    )
    [retried] = [e for e in events if e["hop"] == "delivery_retry" and e["detail"]["delivery"] == delivery_id]
    assert retried["detail"]["user"] == admin


def test_retrying_what_did_not_fail_is_refused(node: Node) -> None:
    response = node.http.post(f"{node.url}/dashboard/deliveries/999999/retry")
    assert response.status_code == 409


def test_config_in_use_masks_passwords() -> None:
    settings = Settings(
        storage={"index_url": "postgresql+psycopg://radrouter:s3cret@db:5432/radrouter"},
        broker={"url": "redis://:hunter2@redis:6379/0"},
    )
    shown = config_in_use(settings)
    assert "s3cret" not in shown and "hunter2" not in shown
    assert "postgresql+psycopg://radrouter:***@db:5432/radrouter" in shown
