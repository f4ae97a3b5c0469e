"""Forged results over the real network: the session's node computed and delivered a head CT's SEG and
SR to Orthanc; STOW-RS of a forged SR, or of another patient's CT under the SR's UID, is refused with
the reason, recorded in the study's audit trail, and the SR on the node and in Orthanc is unchanged."""

from __future__ import annotations

import os
import subprocess
from io import BytesIO
from pathlib import Path
from typing import Any

import httpx
import pydicom
import pytest

from radrouter.config.settings import Settings
from radrouter.router.dispatch.job_credential import credentials_of
from tests.services import CT_CHEST, CT_HEAD, DCMSEND, Node, Orthanc, as_new_study, storescu, wait_until
from tests.user_models import PIPELINE_TESTER

PIPELINE = "threshold-ts"  # the head CT's one job that succeeds: a fast test model


@pytest.fixture(scope="module")
def delivered_sr(node: Node, orthanc: Orthanc, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    images = sorted(p for p in CT_HEAD.iterdir() if p.name.startswith("I"))
    files = as_new_study(images, tmp_path_factory.mktemp("ct"))
    study_uid = str(pydicom.dcmread(files[0], stop_before_pixels=True).StudyInstanceUID)
    assert storescu(node.port, files, calling_ae=PIPELINE_TESTER).returncode == 0
    study = wait_until(
        lambda: (s := node.study(study_uid)).get("state") in ("DONE", "FAILED") and s, 300, "study settled"
    )
    job = next(job for job in study["jobs"] if job["pipeline"] == PIPELINE)
    sr = next(r for r in study["results"] if r["job_id"] == job["id"] and r["kind"] == "SR")
    assert {d["state"] for d in study["deliveries"] if d["result_id"] == sr["id"]} == {"DELIVERED"}
    [series_id] = orthanc.find_series(study_uid, "SR")
    [in_pacs] = orthanc.instance_files(series_id)
    on_node = node.workdir / "data" / "results" / study_uid / f"{sr['sop_uid']}.dcm"
    return {"study_uid": study_uid, "job_id": job["id"], "sr": sr, "on_node": on_node, "in_pacs": in_pacs}


def _stow(node: Node, data: bytes, credential: str | None) -> httpx.Response:
    boundary = "forged"
    body = f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode() + data
    body += f"\r\n--{boundary}--\r\n".encode()
    headers = {"Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}'}
    if credential:
        headers["Authorization"] = f"Bearer {credential}"
    return httpx.post(f"http://127.0.0.1:{node.web_port}/dicomweb/studies", content=body, headers=headers)


def _encoded(dataset: pydicom.Dataset, path: Path) -> bytes:
    dataset.save_as(path, enforce_file_format=True)
    return path.read_bytes()


def test_forged_results_are_refused_and_the_delivered_sr_is_unchanged(
    node: Node, orthanc: Orthanc, delivered_sr: dict[str, Any], tmp_path: Path
) -> None:
    written = delivered_sr["on_node"].read_bytes()
    # What the node wrote is what Orthanc holds (same data set; Orthanc keeps it as it was sent).
    assert pydicom.dcmread(BytesIO(delivered_sr["in_pacs"])) == pydicom.dcmread(BytesIO(written))

    forged = pydicom.dcmread(BytesIO(written))
    forged.SeriesDescription = "forged"
    other_patient = pydicom.dcmread(sorted(CT_CHEST.glob("*.dcm"))[0])  # another patient's CT image
    other_patient.StudyInstanceUID = delivered_sr["study_uid"]
    other_patient.SOPInstanceUID = delivered_sr["sr"]["sop_uid"]
    # The node's own key, as only the node has it: even the job's real credential cannot replace its SR.
    credentials = credentials_of(Settings(storage={"root": node.workdir / "data"}))
    assert credentials is not None
    credential = credentials.issue(delivered_sr["job_id"])

    answers = [
        _stow(node, _encoded(forged, tmp_path / "forged.dcm"), None),
        _stow(node, _encoded(forged, tmp_path / "forged.dcm"), credential),
        _stow(node, _encoded(other_patient, tmp_path / "ct.dcm"), credential),
    ]
    assert [a.status_code for a in answers] == [403, 409, 409]
    assert "no job credential" in answers[0].headers["warning"]
    assert "is a result the node recorded" in answers[1].headers["warning"]
    assert "is a result the node recorded" in answers[2].headers["warning"]

    # Over C-STORE too: the forged SR under the UID the node wrote is refused (0x0111), not indexed.
    dcmsend = [DCMSEND, "-v", "-aet", "MODALITY", "-aec", "RADROUTER", "127.0.0.1", str(node.port)]
    sent = subprocess.run(
        [*dcmsend, str(tmp_path / "forged.dcm")],
        capture_output=True, text=True, env={**os.environ, "TCP_NODELAY": "1"}, check=False,
    )  # fmt: skip
    assert "0x0111" in sent.stderr or "0x111" in sent.stderr, sent.stderr

    assert delivered_sr["on_node"].read_bytes() == written
    [series_id] = orthanc.find_series(delivered_sr["study_uid"], "SR")
    assert orthanc.instance_files(series_id) == [delivered_sr["in_pacs"]]
    trail = node.http.get(f"/api/studies/{delivered_sr['study_uid']}/audit").json()
    refused = [event["detail"] for event in trail if event["hop"] == "store_refused"]
    assert [(r["sop_uid"], r["job"], r["via"]) for r in refused] == [
        (delivered_sr["sr"]["sop_uid"], None, "STOW-RS"),
        (delivered_sr["sr"]["sop_uid"], delivered_sr["job_id"], "STOW-RS"),
        (delivered_sr["sr"]["sop_uid"], delivered_sr["job_id"], "STOW-RS"),
        (delivered_sr["sr"]["sop_uid"], delivered_sr["job_id"], "C-STORE"),
    ]
    assert all(r["reason"] for r in refused)
    assert [r.get("client") or r.get("calling_address") for r in refused] == ["127.0.0.1"] * 4
    assert node.study(delivered_sr["study_uid"])["revision"] == 0  # not reopened by its own result
