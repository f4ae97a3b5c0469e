"""The reading list at 5,000 open studies (issue 23, finding 7): pages, filters and a cheap counter.

Time is the bench's job (``make bench-worklist``); here the bounds that keep a request cheap whatever
the list's length: a page holds ``limit`` entries and a bounded number of bytes, a page costs the same
few SQL statements, and the change counter is one statement whose answer moves with every change.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event

from bench.worklist_page import open_studies, real_headers
from radrouter.config.rules import Priority
from radrouter.config.settings import Settings
from radrouter.storage.index import Index, WorklistItem
from radrouter.web.worklist import worklist_router
from radrouter.worklist.items import open_item
from tests.access import LOCAL, app_of, bearer
from tests.worklist.test_reading_list import Clock

OPEN = 5000
PAGE = 50
TOKEN = "listing-test-token"


class Statements:
    """Counts the SQL statements the index's engine runs."""

    def __init__(self, index: Index) -> None:
        self.count = 0
        event.listen(index.engine, "before_cursor_execute", self._seen)

    def _seen(self, *_: object) -> None:
        self.count += 1

    def during(self, action: object) -> int:
        before = self.count
        assert callable(action)
        action()
        return self.count - before


@pytest.fixture(scope="module")
def listed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, Index, Clock, list[str]]]:
    root = tmp_path_factory.mktemp("listing")
    settings = Settings(
        storage={"root": root},
        viewer={"url_template": "https://ohif.test/viewer?StudyInstanceUIDs={study_uid}"},
        # Set for this test: web.api_token is checked in memory, so the statements counted below are
        # the listing's own (a session or a `tokens add` token costs one more, its account's row).
        web={"api_token": TOKEN},
    )
    index = Index(settings.storage.resolved_index_url())
    clock = Clock()
    uids = open_studies(index, real_headers(), OPEN, clock())
    app = app_of(settings, index, worklist_router(settings, index, clock))
    yield TestClient(app, base_url=LOCAL, headers=bearer(TOKEN)), index, clock, uids
    index.engine.dispose()


def test_a_page_is_bounded_in_entries_bytes_and_statements(
    listed: tuple[TestClient, Index, Clock, list[str]],
) -> None:
    client, index, _, _ = listed
    statements = Statements(index)
    responses = []
    count = statements.during(lambda: responses.append(client.get(f"/api/worklist?limit={PAGE}&offset=100")))
    page = responses[0]
    entries = page.json()
    assert page.headers["X-Total-Count"] == str(OPEN) and len(entries) == PAGE
    assert [e["position"] for e in entries] == list(range(101, 101 + PAGE))
    assert len(page.content) < PAGE * 800, "about half a kilobyte per study"
    assert count <= 8, f"{count} statements: a page must not cost one per study"
    first = client.get("/api/worklist?limit=5").json()
    assert [e["priority"] for e in first] == ["stat"] * 5, "the STAT studies come first"
    assert first[0]["identity"]["patient_name"] in ("HEAD", "D2N_PHILIPS_3T_R571")
    assert first[0]["viewer_url"] == f"https://ohif.test/viewer?StudyInstanceUIDs={first[0]['study_uid']}"
    assert client.get("/api/worklist?limit=501").status_code == 422


def test_filters_by_modality_and_priority(listed: tuple[TestClient, Index, Clock, list[str]]) -> None:
    client = listed[0]
    mr = client.get("/api/worklist?modality=MR&limit=500")
    assert mr.headers["X-Total-Count"] == str(OPEN // 2)
    assert {tuple(e["modalities"]) for e in mr.json()} == {("MR",)}
    stat = client.get("/api/worklist?priority=stat&limit=500")
    assert stat.headers["X-Total-Count"] == str(OPEN // 100)
    assert {e["priority"] for e in stat.json()} == {"stat"}
    both = client.get("/api/worklist?priority=urgent&modality=CT").json()
    assert both and {(e["priority"], tuple(e["modalities"])) for e in both} == {("urgent", ("CT",))}
    assert client.get("/api/worklist?priority=soon").status_code == 422


def test_the_change_counter_is_one_statement_and_moves_with_every_change(
    listed: tuple[TestClient, Index, Clock, list[str]],
) -> None:
    client, index, clock, uids = listed
    statements = Statements(index)
    answers: list[str] = []
    count = statements.during(lambda: answers.append(client.get("/api/worklist/version").json()["version"]))
    assert count == 1
    (version,) = answers

    def current() -> str:
        return str(client.get("/api/worklist/version").json()["version"])

    assert current() == version, "nothing changed, the same answer"
    assert client.get("/api/worklist?limit=1").headers["X-Worklist-Version"] == version
    assert client.post(f"/api/worklist/{uids[-1]}/read").status_code == 200
    after_read = current()
    assert after_read != version
    with index.session() as session:  # new images of the read study: back on the list
        open_item(
            index, session, uids[-1], Priority.ROUTINE, source="header", reason="new images", at=clock()
        )
    reopened = current()
    assert reopened != after_read
    with index.session() as session:  # an AI finding shown on a study whose class stays
        item = session.get(WorklistItem, uids[-2])
        assert item is not None
        item.finding = "Brain volume above 500 mL"
    with_finding = current()
    assert with_finding != reopened
    clock.advance(24 * 60)  # a day on: routine studies pass their cap and the order changes
    assert current() != with_finding
