"""Security: no patient data in any log line, the API token on every data route, the web app on loopback,
and an audit trail per study that can be queried and exported."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pydicom
import pytest
from fastapi.testclient import TestClient
from pydicom.uid import generate_uid

from radrouter.config.settings import Settings
from radrouter.web.app import create_app
from tests.access import LOCAL
from tests.services import MPRAGE, Node, Orthanc, storescu, wait_until

#: A one-part name makes highdicom warn, quoting it, when it copies the name into the SEG and SR.
PHI = {"PatientName": "Qorbanelle", "PatientID": "PHI-7734-ZQX", "PatientBirthDate": "19230417"}


@pytest.fixture(scope="module")
def phi_study(node: Node, orthanc: Orthanc, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The real MPRAGE with distinctive patient values and fresh UIDs (synthetic: a new patient)."""
    folder = tmp_path_factory.mktemp("phi")
    study_uid, series_uid = generate_uid(), generate_uid()
    files = []
    for source in sorted(MPRAGE.glob("*.dcm")):
        dataset = pydicom.dcmread(source)
        dataset.update({keyword: value for keyword, value in PHI.items()})
        dataset.StudyInstanceUID, dataset.SeriesInstanceUID = study_uid, series_uid
        dataset.SOPInstanceUID = dataset.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        files.append(folder / source.name)
        dataset.save_as(files[-1])
    assert storescu(node.port, files).returncode == 0
    state = wait_until(lambda: node.study(study_uid).get("state") in ("DONE", "FAILED") and True, 240, "done")
    assert state
    return {"study_uid": study_uid, "files": files, "study": node.study(study_uid)}


def test_no_patient_data_in_any_log_line_or_in_the_index(phi_study: dict[str, Any], node: Node) -> None:
    assert phi_study["study"]["state"] == "DONE"
    logs = node.log_path.read_text(errors="replace")
    assert phi_study["study_uid"] in logs or "job" in logs  # the log is the one the node writes
    index_bytes = (node.workdir / "data" / "index.sqlite3").read_bytes()
    for value in PHI.values():
        lines = [line for line in logs.splitlines() if value.lower() in line.lower()]
        assert lines == [], f"{value!r} logged: {lines[:3]}"
        assert value.encode() not in index_bytes


def test_the_audit_trail_tells_the_story_of_a_study(phi_study: dict[str, Any], node: Node) -> None:
    study_uid = phi_study["study_uid"]
    trail = node.http.get(f"{node.api}/studies/{study_uid}/audit").json()
    first = {event["hop"]: event["detail"] for event in reversed(trail)}
    assert first["received"]["calling_ae"] == "MODALITY"
    assert first["received"]["calling_address"] == "127.0.0.1"
    assert first["complete"]["instances"] == len(phi_study["files"])
    assert list(first["routed"]["matched"].values()) == [["brain-t1-3d"]]
    assert first["inferred"]["model_version"].startswith("deepbet ")
    delivered = [event["detail"] for event in trail if event["hop"] == "delivered"]
    assert [d["destination"] for d in delivered] == ["pacs", "pacs"]

    exported = node.http.get(f"{node.api}/audit", params={"study_uid": study_uid, "format": "csv"})
    assert exported.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    # Events may still arrive (an HL7 ACK) between the two requests: the export begins with the trail.
    assert [row["hop"] for row in rows][: len(trail)] == [event["hop"] for event in trail]
    everything = node.http.get(f"{node.api}/audit", params={"since": trail[0]["at"]}).json()
    assert {event["id"] for event in trail} <= {event["id"] for event in everything}


def test_the_web_app_listens_on_loopback_only(node: Node) -> None:
    """The kernel's table of listening sockets: the web port is bound to 127.0.0.1, nothing else."""
    listening = [
        line.split()[1]
        for line in Path("/proc/net/tcp").read_text().splitlines()[1:]
        + Path("/proc/net/tcp6").read_text().splitlines()[1:]
        if line.split()[3] == "0A" and int(line.split()[1].rsplit(":", 1)[1], 16) == node.web_port
    ]
    assert listening == ["0100007F:" + f"{node.web_port:04X}"]


@pytest.fixture
def guarded(tmp_path: Path) -> Iterator[TestClient]:
    settings = Settings(storage={"root": tmp_path}, web={"api_token": "correct horse battery"})
    with TestClient(create_app(settings), base_url=LOCAL) as client:
        yield client


def _data_routes(client: TestClient) -> list[tuple[str, str]]:
    """Every API route but the health check (from the OpenAPI schema), with path parameters filled in."""
    paths = client.get("/openapi.json", headers=GOOD).json()["paths"]
    return [
        (method.upper(), path.replace("{study_uid}", "1.2.3"))
        for path, operations in paths.items()
        for method in operations
        if path.startswith("/api/") and path != "/api/health"
    ]


GOOD = {"Authorization": "Bearer correct horse battery"}


def test_web_api_token_is_an_admin_service_token(guarded: TestClient) -> None:
    """The compatibility token (remote workers, scripts): every data route refuses without it."""
    routes = _data_routes(guarded)
    assert ("GET", "/api/studies") in routes and ("POST", "/api/deliveries/retry") in routes
    for method, path in routes:
        assert guarded.request(method, path).status_code == 401, (method, path)
        wrong = guarded.request(method, path, headers={"Authorization": "Bearer wrong"})
        assert wrong.status_code == 401, (method, path)
    good = GOOD
    assert guarded.get("/api/studies", headers=good).status_code == 200
    assert guarded.get("/api/studies/1.2.3/audit", headers=good).status_code == 404
    assert guarded.post("/api/deliveries/retry", headers=good).json() == {"retried": []}
    assert guarded.get("/api/health").status_code == 200
    assert guarded.get("/api/me", headers=good).json() == {
        "name": "token:api_token",
        "role": "admin",
        "service": True,
    }
