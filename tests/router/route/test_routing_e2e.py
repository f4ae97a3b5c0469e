"""Routing over the real network: a rule added on disk forwards originals to Orthanc unchanged, and a
mixed study (images, localizer, dose report) runs its pipeline once, on the right series.

The story runs on the session's node: a head CT arrives while no rule forwards CT and stays; then the
config file is edited (not the node restarted) and the next studies are forwarded, byte-for-byte.
The original config is put back at the end, so later modules see the node as it started.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from io import BytesIO
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pydicom.uid import generate_uid

from tests.router.synthetic import copied_series, dose_report, localizer, write
from tests.services import CT_HEAD, DATA, MPRAGE, STORESCU, Node, Orthanc, storescu, wait_until

LIDC = sorted((DATA / "ct-chest-lidc0001-partial").glob("*.dcm"))
CXR_J2K = DATA / "cxr" / "RG1_J2KI.dcm"
HEAD_CT = sorted(p for p in CT_HEAD.iterdir() if p.name.startswith("I"))
MIXED_STUDY = generate_uid()

RULES = f"""
rules:
  - name: brain-t1-3d
    match:
      Modality: MR
      MRAcquisitionType: 3D
      SeriesDescription: {{regex: "(?i)(t1|mprage|bravo|spgr|tfe|tfl)"}}
    pipelines: [brain-extraction]
    results_to: [pacs]
  - name: mixed-study-brain
    match: {{StudyInstanceUID: "{MIXED_STUDY}"}}
    pipelines: [brain-extraction]
  - name: images-to-pacs
    match: {{Modality: {{in: [CT, CR]}}}}
    forward_to: [pacs]
"""


def study_uid_of(path: Path) -> str:
    return str(pydicom.dcmread(path, stop_before_pixels=True).StudyInstanceUID)


def settled(node: Node, study_uid: str, revision: int = 0, timeout_s: float = 120) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        response = node.http.get(f"{node.api}/studies/{study_uid}")
        study = response.json() if response.status_code == 200 else None
        ended = study and study["revision"] == revision and study["state"] in ("DONE", "FAILED")
        return study if ended else None

    study: dict[str, Any] = wait_until(done, timeout_s, f"study {study_uid} settled", interval_s=0.2)
    return study


def replace_atomically(path: Path, text: str) -> None:
    temporary = path.with_suffix(".editing")
    temporary.write_text(text)
    os.replace(temporary, path)


@pytest.fixture(scope="module")
def unforwarded_ct(node: Node, orthanc: Orthanc) -> dict[str, Any]:
    """The head CT, sent while the node runs its start-up config (which forwards nothing)."""
    sent = storescu(node.port, HEAD_CT)
    assert sent.returncode == 0, sent.stderr
    return settled(node, study_uid_of(HEAD_CT[0]))


@pytest.fixture(scope="module")
def edited_config(node: Node, unforwarded_ct: dict[str, Any]) -> Iterator[None]:
    original = node.config_path.read_text()
    replace_atomically(node.config_path, original + RULES)
    yield
    replace_atomically(node.config_path, original)


@pytest.fixture(scope="module")
def forwarded(node: Node, orthanc: Orthanc, edited_config: None) -> dict[str, dict[str, Any]]:
    """The LIDC chest CT and the JPEG 2000 CR (new studies), and the head CT again (a new revision)."""
    for files in (LIDC, HEAD_CT):
        sent = storescu(node.port, files)
        assert sent.returncode == 0, sent.stderr
    # -xw proposes JPEG 2000, so the image reaches the node in the transfer syntax it was written in.
    command = [
        STORESCU,
        "-xw",
        "-aec",
        "RADROUTER",
        "-aet",
        "MODALITY",
        "127.0.0.1",
        str(node.port),
        str(CXR_J2K),
    ]
    sent = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "TCP_NODELAY": "1"})
    assert sent.returncode == 0, sent.stderr
    return {
        "chest": settled(node, study_uid_of(LIDC[0])),
        "cxr": settled(node, study_uid_of(CXR_J2K)),
        "head": settled(node, study_uid_of(HEAD_CT[0]), revision=1),
    }


def test_without_a_forward_rule_the_ct_stays_here(unforwarded_ct: dict[str, Any], orthanc: Orthanc) -> None:
    assert unforwarded_ct["state"] == "DONE"
    assert unforwarded_ct["reason"] == "no rule asked for a pipeline or a forward"
    assert unforwarded_ct["forwards"] == [] and unforwarded_ct["jobs"] == []


def test_the_edited_config_forwards_the_next_studies(forwarded: dict[str, dict[str, Any]]) -> None:
    for name, study in forwarded.items():
        assert study["state"] == "DONE", (name, study["reason"])
        assert [
            (f["destination"], f["rule"], f["state"])
            for f in study["forwards"]
            if f["revision"] == study["revision"]
        ] == [("pacs", "images-to-pacs", "DELIVERED")], name
        routed = [e for e in study["events"] if e["hop"] == "routed"][-1]
        assert routed["detail"]["rules_generation"] >= 1  # decided by the reloaded rules
        delivered = [e for e in study["events"] if e["hop"] == "delivered"]
        assert delivered and delivered[-1]["detail"]["instances"] == study["series"][0]["instances"]


@pytest.mark.parametrize(
    ("name", "files", "modality"), [("chest", LIDC, "CT"), ("head", HEAD_CT, "CT"), ("cxr", [CXR_J2K], "CR")]
)
def test_forwarded_originals_arrive_unchanged(
    forwarded: dict[str, dict[str, Any]], orthanc: Orthanc, name: str, files: list[Path], modality: str
) -> None:
    originals = {str(ds.SOPInstanceUID): ds for ds in map(pydicom.dcmread, files)}
    (series_id,) = orthanc.find_series(forwarded[name]["study_uid"], modality)
    arrived = [pydicom.dcmread(BytesIO(data)) for data in orthanc.instance_files(series_id)]

    assert sorted(str(ds.SOPInstanceUID) for ds in arrived) == sorted(originals)
    for dataset in arrived:
        original = originals[str(dataset.SOPInstanceUID)]
        assert dataset.file_meta.TransferSyntaxUID == original.file_meta.TransferSyntaxUID
        assert dataset.PixelData == original.PixelData
        assert dataset == original  # every attribute, not only the pixels


@pytest.fixture(scope="module")
def mixed(node: Node, edited_config: None, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The MPRAGE copied into a new study, plus a 3-image localizer and a dose report, in one send."""
    mprage = sorted(MPRAGE.glob("*.dcm"))
    images = copied_series(mprage, MIXED_STUDY)
    scout = localizer(mprage[85], MIXED_STUDY, count=3)
    dose = dose_report(images[0], MIXED_STUDY)
    files = write([*scout, *images, dose], tmp_path_factory.mktemp("mixed"))
    sent = storescu(node.port, files)
    assert sent.returncode == 0, sent.stderr
    study = settled(node, MIXED_STUDY, timeout_s=600)
    routing = node.http.get(f"{node.api}/studies/{MIXED_STUDY}/routing").json()
    uids = {"images": str(images[0].SeriesInstanceUID), "scout": str(scout[0].SeriesInstanceUID)}
    return {"study": study, "routing": routing, **uids, "dose": str(dose.SeriesInstanceUID)}


def test_a_mixed_study_runs_the_pipeline_once_on_the_images(mixed: dict[str, Any]) -> None:
    study = mixed["study"]
    assert study["state"] == "DONE", study["reason"]
    assert len(study["series"]) == 3
    assert [(job["series_uid"], job["pipeline"], job["state"]) for job in study["jobs"]] == [
        (mixed["images"], "brain-extraction", "DONE")
    ]
    assert set(study["jobs"][0]["rule"].split(",")) == {"brain-t1-3d", "mixed-study-brain"}


def test_the_routing_api_explains_the_mixed_study(mixed: dict[str, Any]) -> None:
    routing = mixed["routing"]
    assert routing["rules_generation"] >= 1
    assert [(run["series_uid"], run["pipeline"]) for run in routing["runs"]] == [
        (mixed["images"], "brain-extraction")
    ]
    series = {trace["series_uid"]: trace for trace in routing["series"]}
    assert (series[mixed["scout"]]["kind"], series[mixed["dose"]]["kind"]) == ("localizer", "dose_report")
    assert series[mixed["images"]]["orientation"] == "sagittal" and series[mixed["images"]]["slices"] == 170
    scout_verdicts = {verdict["rule"]: verdict["outcome"] for verdict in series[mixed["scout"]]["rules"]}
    assert scout_verdicts["brain-t1-3d"] == "matched"  # the shipped rule alone would feed it the localizer
    scout_notes = series[mixed["scout"]]["notes"]
    assert any("not fed, a localizer series" in note for note in scout_notes)
    verdicts = {verdict["rule"]: verdict["outcome"] for verdict in series[mixed["dose"]]["rules"]}
    assert verdicts == {
        "brain-t1-3d": "not matched",
        "mixed-study-brain": "matched",
        "images-to-pacs": "not matched",
    }


def test_the_routing_api_answers_404_for_an_unknown_study(node: Node) -> None:
    assert node.http.get(f"{node.api}/studies/1.2.3.4/routing").status_code == 404
