"""The worklist's HTTP side: reading order with waits, reads with a verdict, clear 4xx answers."""

from __future__ import annotations

from pathlib import Path

import pytest

from radrouter.config.access import Role
from radrouter.config.settings import Settings
from radrouter.router.dispatch.contract import celery_app
from radrouter.router.route.study_router import StudyRouter
from radrouter.storage.index import Index
from radrouter.web.app import create_app
from radrouter.web.worklist import worklist_router
from radrouter.worklist.items import open_for_study
from tests.access import app_of, token_client
from tests.services import CT_HEAD, MPRAGE
from tests.worklist.test_reading_list import Clock, received, route


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(storage={"root": tmp_path}, worklist={"max_wait_routine_min": 10})


def test_the_api_orders_by_class_and_the_cap_with_a_controlled_clock(settings: Settings) -> None:
    index = Index(settings.storage.resolved_index_url())
    router = StudyRouter(settings, index, celery_app(settings), open_for_study)
    clock = Clock()
    app = app_of(settings, index, worklist_router(settings, index, clock))
    client = token_client(app, index, Role.RADIOLOGIST)

    routine = route(router, received(sorted(MPRAGE.glob("*.dcm"))[0]), clock)
    clock.advance(5)
    urgent = route(router, received(CT_HEAD / "I10", dimse_priority=1), clock)
    clock.advance(1)
    listed = client.get("/api/worklist").json()
    assert [(e["study_uid"], e["priority"], e["waited_s"]) for e in listed] == [
        (urgent, "urgent", 60.0),
        (routine, "routine", 360.0),
    ]
    assert listed[1]["max_wait_s"] == 600 and listed[0]["modalities"] == ["CT"]

    clock.advance(4)
    assert [e["study_uid"] for e in client.get("/api/worklist").json()] == [routine, urgent]

    read = client.post(f"/api/worklist/{routine}/read", json={"verdict": "agree"})
    assert read.status_code == 200 and read.json()["verdict"] == "agree"
    assert [e["study_uid"] for e in client.get("/api/worklist").json()] == [urgent]
    assert client.post(f"/api/worklist/{routine}/read").status_code == 409
    assert client.post("/api/worklist/1.2.3/read").status_code == 404
    assert client.post(f"/api/worklist/{urgent}/read", json={"verdict": "maybe"}).status_code == 422
    assert client.post(f"/api/worklist/{urgent}/read").status_code == 200
    assert client.get("/api/worklist").json() == []


def test_the_node_app_serves_the_page_and_the_api(settings: Settings) -> None:
    index = Index(settings.storage.resolved_index_url())
    client = token_client(create_app(settings, index), index, Role.VIEWER)
    page = client.get("/worklist")
    assert page.status_code == 200 and '<script src="/static/worklist.js">' in page.text
    script = client.get("/static/worklist.js")
    assert script.status_code == 200 and "/api/worklist/version" in script.text
    assert client.get("/static/pico.min.css").status_code == 200
    assert client.get("/api/worklist").json() == []
