"""STOW-RS takes only the results of the job whose credential comes with them; every refusal is
answered in words and recorded in the study's audit trail."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pydicom
import pytest
from fastapi.testclient import TestClient
from httpx import Response
from itsdangerous import URLSafeTimedSerializer
from sqlalchemy import select

from radrouter.config.rules import Priority
from radrouter.config.settings import Settings
from radrouter.inference.results.content import ResultIdentity, job_key
from radrouter.router.dispatch.job_credential import credentials_of
from radrouter.storage.index import AuditEvent, Hop, Index, Job, JobState, Result, ResultKind
from radrouter.storage.ingest import record_instance
from radrouter.web.app import create_app
from tests.access import LOCAL
from tests.router.route.test_study_router import received
from tests.services import CT_HEAD, MPRAGE

FILES = sorted(MPRAGE.glob("*.dcm"))[:3]
PIPELINE = "brain-extraction"


@pytest.fixture
def node(tmp_path: Path) -> dict[str, Any]:
    settings = Settings(storage={"root": tmp_path})
    index = Index(settings.storage.resolved_index_url())
    for path in FILES:
        record_instance(index, received(path))
    header = pydicom.dcmread(FILES[0], stop_before_pixels=True)
    with index.session() as session:
        job = Job(
            study_uid=str(header.StudyInstanceUID), series_uid=str(header.SeriesInstanceUID),
            pipeline=PIPELINE, priority=Priority.ROUTINE, rule="r", state=JobState.RUNNING,
        )  # fmt: skip
        session.add(job)
        session.flush()
        job_id = job.id
    credentials = credentials_of(settings)
    assert credentials is not None
    identity = ResultIdentity(job_key(str(header.SeriesInstanceUID), PIPELINE, 0), PIPELINE, "1", 1)
    return {
        "client": TestClient(create_app(settings, index), base_url=LOCAL),
        "index": index,
        "root": tmp_path,
        "job_id": job_id,
        "credential": credentials.issue(job_id),
        "sr_uid": identity.uid("sr"),
        "study_uid": str(header.StudyInstanceUID),
    }


def _result(node: dict[str, Any], tmp_path: Path, **changes: str) -> bytes:
    """An object that names itself the job's SR (a real MR slice stands in for its content)."""
    dataset = pydicom.dcmread(FILES[0])
    dataset.SOPInstanceUID = dataset.file_meta.MediaStorageSOPInstanceUID = node["sr_uid"]
    for keyword, value in changes.items():
        setattr(dataset, keyword, value)
    path = tmp_path / f"offered-{len(list(tmp_path.glob('offered-*')))}.dcm"
    dataset.save_as(path, enforce_file_format=True)
    return path.read_bytes()


def _stow(node: dict[str, Any], parts: list[bytes], credential: str | None) -> Response:
    boundary = "radrouter-test-boundary"
    body = (
        b"".join(
            f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode() + data + b"\r\n"
            for data in parts
        )
        + f"--{boundary}--".encode()
    )
    headers = {"Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}'}
    if credential is not None:
        headers["Authorization"] = f"Bearer {credential}"
    response: Response = node["client"].post("/dicomweb/studies", content=body, headers=headers)
    return response


def _refusals(node: dict[str, Any]) -> list[dict[str, Any]]:
    with node["index"].session() as session:
        events = session.scalars(select(AuditEvent).where(AuditEvent.hop == Hop.STORE_REFUSED)).all()
        return [dict(event.detail) for event in events]


def _stored(node: dict[str, Any]) -> Path:
    return node["root"] / "results" / node["study_uid"] / f"{node['sr_uid']}.dcm"


def test_the_jobs_credential_stores_the_jobs_result(node: dict[str, Any], tmp_path: Path) -> None:
    data = _result(node, tmp_path)
    response = _stow(node, [data], node["credential"])
    assert response.status_code == 200, response.headers
    answer = pydicom.Dataset.from_json(response.json())
    assert [item.ReferencedSOPInstanceUID for item in answer.ReferencedSOPSequence] == [node["sr_uid"]]
    assert _stored(node).read_bytes() == data
    assert _refusals(node) == []


ANOTHER_NODES = URLSafeTimedSerializer(b"another node's key", salt="radrouter.job-credential").dumps(1)


@pytest.mark.parametrize(
    "credential", [None, "not-a-credential", ANOTHER_NODES], ids=["none", "not-signed", "another-node"]
)
def test_no_valid_credential_stores_nothing_and_is_audited(
    node: dict[str, Any], tmp_path: Path, credential: str | None
) -> None:
    response = _stow(node, [_result(node, tmp_path)], credential)
    assert response.status_code == 403
    assert "credential" in response.headers["warning"]
    assert pydicom.Dataset.from_json(response.json()).FailedSOPSequence[0].FailureReason == 0x0124
    assert not _stored(node).exists()
    assert [(r["sop_uid"], r["via"]) for r in _refusals(node)] == [(node["sr_uid"], "STOW-RS")]


def test_a_result_the_node_recorded_is_never_replaced(node: dict[str, Any], tmp_path: Path) -> None:
    original = _result(node, tmp_path)
    assert _stow(node, [original], node["credential"]).status_code == 200
    with node["index"].session() as session:
        session.add(
            Result(
                job_id=node["job_id"], kind=ResultKind.SR, sop_uid=node["sr_uid"], sop_class_uid="1.2",
                series_uid="1.2.3", path=str(_stored(node)),
            )
        )  # fmt: skip
    forged = _result(node, tmp_path, SeriesDescription="forged")
    response = _stow(node, [forged], node["credential"])
    assert response.status_code == 409
    assert "a result the node recorded" in response.headers["warning"]
    assert _stored(node).read_bytes() == original
    assert [r["reason"] for r in _refusals(node)] == [
        f"{node['sr_uid']} is a result the node recorded (job {node['job_id']}); it is not replaced"
    ]


def test_another_patient_study_or_uid_is_refused(node: dict[str, Any], tmp_path: Path) -> None:
    other_patient = _result(node, tmp_path, PatientID="SOMEONE-ELSE")
    not_a_result = _result(node, tmp_path, SOPInstanceUID="1.2.826.0.1.3680043.8.498.4242")
    stranger = pydicom.dcmread(CT_HEAD / "I10")  # a study the node does not hold
    stranger.SOPInstanceUID = node["sr_uid"]
    path = tmp_path / "stranger.dcm"
    stranger.save_as(path, enforce_file_format=True)
    response = _stow(node, [other_patient, not_a_result, path.read_bytes(), b"not DICOM"], node["credential"])
    assert response.status_code == 403
    assert [item.FailureReason for item in pydicom.Dataset.from_json(response.json()).FailedSOPSequence] == [
        0xA900, 0x0124, 0xA900, 0xC000
    ]  # fmt: skip
    reasons = [r["reason"] for r in _refusals(node)]
    assert reasons == [
        f"the patient differs from that of job {node['job_id']}'s series",
        f"1.2.826.0.1.3680043.8.498.4242 is not a result of job {node['job_id']}",
        f"study {stranger.StudyInstanceUID} is not on this node",
    ]
    assert not (node["root"] / "results").exists()


def test_a_finished_job_takes_no_more_results(node: dict[str, Any], tmp_path: Path) -> None:
    with node["index"].session() as session:
        job = session.get(Job, node["job_id"])
        assert job is not None
        job.state = JobState.DONE
    response = _stow(node, [_result(node, tmp_path)], node["credential"])
    assert response.status_code == 409 and "is DONE" in response.headers["warning"]
    assert not _stored(node).exists()


def test_stow_rs_refuses_a_body_that_is_not_multipart(node: dict[str, Any]) -> None:
    response = node["client"].post(
        "/dicomweb/studies", content=b"x", headers={"Content-Type": "application/dicom"}
    )
    assert response.status_code == 415


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
def test_a_body_above_the_limit_is_refused_413_with_nothing_stored(
    node: dict[str, Any], tmp_path: Path, declared: bool
) -> None:
    """web.max_request_mb 1 (the default is 4096): a 2 MB body, declared or streamed without a length."""
    app = create_app(Settings(storage={"root": node["root"]}, web={"max_request_mb": 1}), node["index"])
    data = _result(node, tmp_path) + bytes(2 * 2**20)
    boundary = "radrouter-test-boundary"
    head = f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode()
    body = head + data + f"\r\n--{boundary}--".encode()
    headers = {
        "Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}',
        "Authorization": f"Bearer {node['credential']}",
    }
    content: Any = body if declared else (body[i : i + 65536] for i in range(0, len(body), 65536))
    response = TestClient(app, base_url=LOCAL).post("/dicomweb/studies", content=content, headers=headers)
    assert response.status_code == 413
    assert "web.max_request_mb" in response.json()["detail"]
    assert not _stored(node).exists()
    assert list((node["root"] / ".receiving").iterdir()) == []  # the spool is gone too


def test_a_node_at_its_free_space_reserve_answers_503_try_later(node: dict[str, Any], tmp_path: Path) -> None:
    """A reserve larger than any disk (the default is 1024 MB) stands for a full one."""
    full = Settings(storage={"root": node["root"], "free_space_reserve_mb": 2**40})
    app = create_app(full, node["index"])
    node = {**node, "client": TestClient(app, base_url=LOCAL)}
    response = _stow(node, [_result(node, tmp_path)], node["credential"])
    assert response.status_code == 503 and response.headers["retry-after"] == "60"
    assert "try later" in response.json()["detail"]
    assert not _stored(node).exists()
