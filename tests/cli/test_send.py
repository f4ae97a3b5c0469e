"""``radrouter send``: a folder of real CT goes to the PACS by C-STORE, with progress and a clear tally."""

from __future__ import annotations

from pathlib import Path

import httpx
import pydicom
import pytest
from pydicom.misc import is_dicom
from typer.testing import CliRunner

from radrouter.cli import app
from radrouter.config.settings import CONFIG_ENV
from tests.services import CT_HEAD, Orthanc, free_port

DICOM_FILES = sorted(p for p in CT_HEAD.iterdir() if p.is_file() and is_dicom(p))
OTHER_FILES = sorted(p for p in CT_HEAD.iterdir() if p.is_file() and not is_dicom(p))  # provenance, licence


@pytest.fixture(autouse=True)
def no_config_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(CONFIG_ENV, raising=False)


def test_send_a_folder_to_the_pacs(orthanc: Orthanc, tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("not DICOM")
    files = DICOM_FILES
    peer = ["--host", "127.0.0.1", "--port", str(orthanc.dicom_port), "--ae-title", orthanc.ae_title]
    result = CliRunner().invoke(app, ["send", *peer, str(CT_HEAD), str(notes)])
    assert result.exit_code == 1, result.output  # one file was skipped
    assert f"skipped {notes}: not a DICOM file" in result.output
    assert f"{len(files)} of {len(files)} file(s) stored, {len(OTHER_FILES) + 1} skipped" in result.output
    study_uid = pydicom.dcmread(files[0], stop_before_pixels=True).StudyInstanceUID
    query = {"Level": "Instance", "Query": {"StudyInstanceUID": study_uid}, "Expand": True}
    in_pacs = {
        i["MainDicomTags"]["SOPInstanceUID"]
        for i in httpx.post(f"{orthanc.url}/tools/find", json=query).json()
    }
    sent = {str(pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID) for f in files}
    assert sent <= in_pacs  # other tests may have added results to the same study


def test_send_to_a_peer_that_does_not_answer_fails_clearly(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["send", "--host", "127.0.0.1", "--port", str(free_port()), str(CT_HEAD)]
    )
    assert result.exit_code == 1
    assert "not stored: association with ANY-SCP@127.0.0.1" in result.output
    assert f"0 of {len(DICOM_FILES)} file(s) stored" in result.output


def test_send_to_an_unknown_destination_names_the_configured_ones() -> None:
    result = CliRunner().invoke(app, ["send", "--to", "nowhere", str(CT_HEAD)])
    assert result.exit_code == 2
    assert "no destination 'nowhere'; configured: ['pacs']" in result.output
