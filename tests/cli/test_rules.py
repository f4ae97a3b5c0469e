"""``radrouter rules test``: per series, the rules that matched, why the others did not, what happens."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pydicom
import pytest
from typer.testing import CliRunner, Result

from radrouter import cli
from radrouter.config.settings import CONFIG_ENV
from radrouter.storage.index import Index
from radrouter.storage.ingest import ReceivedInstance, record_instance
from tests.services import CT_HEAD, DATA

CONFIG = """
storage: {{root: {root}}}
destinations:
  pacs: {{host: 127.0.0.1, port: 4242, ae_title: ORTHANC}}
rules:
  - name: brain-t1-3d
    match: {{Modality: MR, MRAcquisitionType: 3D}}
    pipelines: [brain-extraction]
  - name: thin-head-ct
    match: {{Modality: CT, BodyPartExamined: BRAIN, SliceThickness: {{range: [null, 2]}}}}
    pipelines: [{{name: brain-extraction, priority: stat}}]
  - name: head-ct-to-pacs
    match: {{Modality: CT, orientation: axial}}
    forward_to: [pacs]
"""


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for key in list(os.environ):
        if key.startswith("RADROUTER_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv(CONFIG_ENV, "")
    path = tmp_path / "radrouter.yaml"
    path.write_text(CONFIG.format(root=tmp_path / "data"))
    return path


def rules_test(*args: str) -> Result:
    return CliRunner().invoke(cli.app, ["rules", "test", *args], env={"COLUMNS": "200"})


def test_a_folder_shows_matches_failed_conditions_and_actions(config: Path) -> None:
    result = rules_test(str(CT_HEAD), "--config", str(config))

    assert result.exit_code == 0, result.output
    assert "Series 201 STD BRAIN 5MM" in result.output and "CT image, axial, 28 slice(s)" in result.output
    assert "Modality = 'CT' is not 'MR'" in result.output
    assert "MRAcquisitionType is missing" in result.output
    assert "SliceThickness = '5' is outside [-inf, 2]" in result.output
    assert "forward to pacs" in result.output and "head-ct-to-pacs" in result.output
    assert "pipeline brain-extraction" not in result.output


def test_json_is_the_decision(config: Path) -> None:
    result = rules_test(str(DATA / "mr-t1-philips-mprage"), "--config", str(config), "--json")

    assert result.exit_code == 0, result.output
    decision = json.loads(result.output)
    assert [(run["pipeline"], run["priority"], run["rules"]) for run in decision["runs"]] == [
        ("brain-extraction", "routine", ["brain-t1-3d"])
    ]
    assert decision["forwards"] == []
    assert decision["series"][0]["slices"] == 170 and decision["series"][0]["orientation"] == "sagittal"


def test_a_stored_study_is_read_from_the_index(config: Path, tmp_path: Path) -> None:
    index = Index(f"sqlite:///{tmp_path / 'data' / 'index.sqlite3'}")
    for path in sorted(p for p in CT_HEAD.iterdir() if p.name.startswith("I")):
        header = pydicom.dcmread(path, stop_before_pixels=True)
        received = ReceivedInstance(
            str(header.StudyInstanceUID),
            str(header.SeriesInstanceUID),
            str(header.SOPInstanceUID),
            str(header.SOPClassUID),
            str(header.file_meta.TransferSyntaxUID),
            "CT",
            201,
            "STD BRAIN 5MM",
            str(path),
            path.stat().st_size,
            "CTSCANNER",
        )
        record_instance(index, received)

    result = rules_test(str(header.StudyInstanceUID), "--config", str(config), "--json")

    assert result.exit_code == 0, result.output
    decision = json.loads(result.output)
    assert [f["destination"] for f in decision["forwards"]] == ["pacs"]
    assert decision["series"][0]["slices"] == 28


def test_neither_folder_nor_stored_study_exits_2(config: Path) -> None:
    result = rules_test("1.2.3.4", "--config", str(config))

    assert result.exit_code == 2
    assert "neither a folder nor a study in the index" in result.output
