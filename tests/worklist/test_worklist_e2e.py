"""The story of an urgent study on the node: brain extraction measures it, a triage rule makes it STAT,
it tops the reading list and the live page, and the RIS hears of the results and the escalation."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pydicom
import pytest
from playwright.sync_api import Page, expect

from radrouter.config.access import Role
from tests.access import browser_sign_in
from tests.browser import screenshot
from tests.services import (
    BRAIN_VOLUME_RULE,
    CT_HEAD,
    MPRAGE,
    Node,
    RisListener,
    as_new_study,
    storescu,
    wait_until,
)

TRIAGE_REASON = "Brain volume above 500 mL (test rule)"


def worklist(node: Node) -> list[dict[str, Any]]:
    return list(node.http.get(f"{node.api}/worklist").json())


def entry(node: Node, study_uid: str) -> dict[str, Any] | None:
    return next((e for e in worklist(node) if e["study_uid"] == study_uid), None)


def send(node: Node, files: list[Path]) -> str:
    sent = storescu(node.port, files)
    assert sent.returncode == 0, sent.stderr
    return str(pydicom.dcmread(files[0], stop_before_pixels=True).StudyInstanceUID)


@pytest.fixture(scope="module")
def brain_mri(node: Node) -> str:
    """The MPRAGE, triaged STAT by its measured brain volume (sent here unless an earlier test did)."""
    files = sorted(MPRAGE.glob("*.dcm"))
    study_uid = str(pydicom.dcmread(files[0], stop_before_pixels=True).StudyInstanceUID)
    if node.http.get(f"{node.api}/studies/{study_uid}").status_code == 404:
        send(node, files)
    wait_until(lambda: (e := entry(node, study_uid)) and e["priority"] == "stat", 300, "the MRI triaged STAT")
    return study_uid


@pytest.fixture(scope="module")
def routine_ct(node: Node) -> str:
    study_uid = send(node, sorted(CT_HEAD.glob("I*")))
    wait_until(lambda: entry(node, study_uid), 60, "the head CT on the worklist")
    return study_uid


@pytest.fixture(scope="module")
def others_read(node: Node, brain_mri: str, routine_ct: str) -> None:
    """Other tests' studies share this node: a radiologist reads them first, so the order is ours."""
    for other in worklist(node):
        if other["study_uid"] not in (brain_mri, routine_ct):
            node.http.post(f"{node.api}/worklist/{other['study_uid']}/read").raise_for_status()


def stat_order_copy(tmp_path: Path) -> list[Path]:
    """The head CT as a new study whose order says STAT: real pixels, synthetic identity and priority."""
    return as_new_study(sorted(CT_HEAD.glob("I*")), tmp_path, RequestedProcedurePriority="STAT")


def test_the_triaged_study_tops_the_worklist(
    node: Node, brain_mri: str, routine_ct: str, others_read: None
) -> None:
    listed = worklist(node)
    order = [e["study_uid"] for e in listed]
    assert order[0] == brain_mri and order.index(routine_ct) > 0
    top = listed[0]
    assert (top["priority"], top["base_priority"], top["finding"]) == ("stat", "routine", TRIAGE_REASON)
    assert top["waited_s"] > 0
    assert listed[order.index(routine_ct)]["priority"] == "routine"

    triaged = [e["detail"] for e in node.study(brain_mri)["events"] if e["hop"] == "triaged"]
    assert any(
        (d.get("old"), d.get("new"), d.get("source"), d.get("rule"))
        == ("routine", "stat", "triage", BRAIN_VOLUME_RULE)
        for d in triaged
    )


def test_the_ris_gets_the_results_and_the_escalation_acknowledged(
    node: Node, ris: RisListener, brain_mri: str
) -> None:
    def acked() -> list[dict[str, Any]]:
        events = node.study(brain_mri)["events"]
        done = [e["detail"] for e in events if e["hop"] == "hl7_acked"]
        return done if len(done) >= 2 else []

    acknowledged = wait_until(acked, 90, "ORU and OMI acknowledged")
    assert {d["message"] for d in acknowledged} >= {"ORU^R01", "OMI^O23"}
    results = [m for m in ris.of_type("ORU^R01") if brain_mri in m]
    escalation = [m for m in ris.of_type("OMI^O23") if brain_mri in m]
    assert results and escalation
    volume = next(
        s.split("|") for s in results[-1].split("\r") if s.startswith("OBX") and "Brain volume" in s
    )
    assert volume[2] == "NM" and 900 <= float(volume[5]) <= 1800 and volume[8] == "AA"
    assert "TQ1|1||||||||S^Stat^HL70485" in escalation[-1]
    control_ids = [m.split("\r", 1)[0].split("|")[9] for m in ris.messages]
    assert len(control_ids) > len(set(control_ids)), "the first message got no ACK and was sent again"


@pytest.fixture
def live_page(browser_page: Page, node: Node) -> Iterator[Page]:
    browser_sign_in(browser_page, node.url, node.user(Role.RADIOLOGIST))
    browser_page.goto(f"http://127.0.0.1:{node.web_port}/worklist")
    yield browser_page


def test_the_page_shows_the_urgent_study_first_and_updates_live(
    live_page: Page, node: Node, brain_mri: str, routine_ct: str, others_read: None, tmp_path: Path
) -> None:
    rows = live_page.locator("#rows tr")
    expect(rows.first).to_have_attribute("data-study-uid", brain_mri)
    expect(rows.first.locator(".badge")).to_have_text("STAT")
    expect(rows.first.locator(".finding")).to_have_text(TRIAGE_REASON)
    # Who it is, read from the stored header of the real MPRAGE (the index keeps no patient data).
    expect(rows.first.locator(".patient")).to_contain_text("D2N_PHILIPS_3T_R571")
    expect(rows.first.locator(".age-sex")).to_have_text("41 y / M")
    live_page.evaluate("window.notReloaded = true")

    second = send(node, stat_order_copy(tmp_path))

    second_row = live_page.locator(f'#rows tr[data-study-uid="{second}"]')
    expect(second_row).to_be_visible(timeout=60_000)
    expect(second_row.locator(".badge")).to_have_text("STAT")
    expect(second_row.locator(".finding")).to_have_text("RequestedProcedurePriority STAT")
    uids = [row.get_attribute("data-study-uid") for row in rows.all()]
    assert uids[:2] == [brain_mri, second] and uids.index(routine_ct) > 1
    assert live_page.evaluate("window.notReloaded") is True, "updated without a reload"
    expect(second_row.locator(".patient")).to_contain_text("HEAD")  # the phantom's name, kept by the copy
    screenshot(live_page, "reading-list-node")

    second_row.get_by_role("button", name="Read").click()
    expect(second_row).to_have_count(0)
    assert entry(node, second) is None
    [read] = [e for e in node.study(second)["events"] if e["hop"] == "read"]
    assert read["detail"]["user"] == node.user(Role.RADIOLOGIST)  # the audit names the reader
