"""The audit export in pages: a cursor (``after``), a limit, a hop filter, the same in CSV."""

from __future__ import annotations

from pathlib import Path

from pydicom.uid import generate_uid

from radrouter.config.settings import Settings
from radrouter.storage.index import Hop, Index, Study
from radrouter.web.app import create_app
from tests.access import token_client


def test_the_audit_export_pages_with_a_cursor_and_filters_by_hop(tmp_path: Path) -> None:
    settings = Settings(storage={"root": tmp_path})
    index = Index(settings.storage.resolved_index_url())
    study_uid = generate_uid()
    with index.session() as session:
        session.add(Study(uid=study_uid))
        session.flush()
        for number in range(25):
            index.record_event(session, study_uid, Hop.READ if number % 5 == 0 else Hop.RECEIVED, n=number)
    client = token_client(create_app(settings, index), index)

    seen, after, pages = [], None, 0
    while True:
        params = {"limit": 10} | ({"after": after} if after is not None else {})
        response = client.get("/api/audit", params=params)
        seen += [event["detail"]["n"] for event in response.json()]
        pages += 1
        if "X-Next-After" not in response.headers:
            break
        after = int(response.headers["X-Next-After"])
    assert seen == list(range(25)) and pages == 3

    reads = client.get("/api/audit", params={"hop": "read"}).json()
    assert [event["detail"]["n"] for event in reads] == [0, 5, 10, 15, 20]
    csv = client.get("/api/audit", params={"format": "csv", "limit": 2})
    assert csv.text.count("\n") == 3 and csv.headers["X-Next-After"]
    assert client.get("/api/audit", params={"limit": 0}).status_code == 422
    assert client.get("/api/audit", params={"hop": "teleported"}).status_code == 422
    index.engine.dispose()
