"""The story of a chest CT and a head CT through pipelines an AI team brought in config alone.

The session node (tests/services.py) declares a TorchScript model, a MONAI bundle, and two pipelines
that must fail, all in one CPU worker pool. A chest CT goes to ct-lung, the TorchScript model and the
bundle; a head CT to the two failing pipelines and then the TorchScript model, on the same worker.
"""

from __future__ import annotations

import itertools
from datetime import datetime
from io import BytesIO
from pathlib import Path
from typing import Any

import highdicom as hd
import numpy as np
import pydicom
import pytest
from pydicom.sr.codedict import codes

from radrouter.inference.volume import load_volume, read_series
from tests.services import (
    BONE_FINDING_REASON,
    BONE_FINDING_RULE,
    CT_CHEST,
    CT_HEAD,
    Node,
    Orthanc,
    as_new_study,
    storescu,
    wait_until,
)
from tests.test_e2e import _text_items, dciodvfy_errors
from tests.user_models import AIR_HU, BONE_HU, BUNDLE_VERSION, PIPELINE_TESTER, TORCHSCRIPT_VERSION

LABEL_MAP_SEGMENTATION = "1.2.840.10008.5.1.4.1.1.66.7"
#: SEG series number of each pipeline (the SR takes the next number).
SERIES = {"ct-lung": 9300, "threshold-ts": 9400, "threshold-bundle": 9500}


def _images(folder: Path) -> list[Path]:
    return sorted(path for path in folder.iterdir() if path.is_file() and not path.name.endswith(".txt"))


def _results_by_series_number(orthanc: Orthanc, study_uid: str) -> dict[int, pydicom.Dataset]:
    found: dict[int, pydicom.Dataset] = {}
    for modality in ("SEG", "SR"):
        for series_id in orthanc.find_series(study_uid, modality):
            for data in orthanc.instance_files(series_id):
                dataset = pydicom.dcmread(BytesIO(data))
                found[int(dataset.SeriesNumber)] = dataset
    return found


def _send_and_settle(node: Node, folder: Path, copies: Path) -> tuple[str, dict[str, Any]]:
    """Send the series as a new study (other tests send the same files to the shared node) and wait."""
    files = as_new_study(_images(folder), copies)
    study_uid = str(pydicom.dcmread(files[0], stop_before_pixels=True).StudyInstanceUID)
    sent = storescu(node.port, files, calling_ae=PIPELINE_TESTER)
    assert sent.returncode == 0, sent.stderr
    settled = wait_until(
        lambda: (s := node.study(study_uid)).get("state") in ("DONE", "FAILED") and s,
        600,
        f"study {study_uid} to settle",
        interval_s=0.5,
    )
    return study_uid, settled


@pytest.fixture(scope="module")
def head(node: Node, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The head CT first: two of its three jobs fail on the pool's only worker process."""
    return _send_and_settle(node, CT_HEAD, tmp_path_factory.mktemp("head"))[1]


@pytest.fixture(scope="module")
def chest(
    node: Node, orthanc: Orthanc, head: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    """Then the chest CT, on the same worker process."""
    study_uid, study = _send_and_settle(node, CT_CHEST, tmp_path_factory.mktemp("chest"))
    results = wait_until(
        lambda: len(r := _results_by_series_number(orthanc, study_uid)) == 2 * len(SERIES) and r,
        60,
        "three SEG and three SR in Orthanc",
    )
    volume = load_volume(read_series(_images(CT_CHEST)))
    return {"study": study, "results": results, "volume": volume}


def _sr(chest: dict[str, Any], pipeline: str) -> hd.sr.Comprehensive3DSR:
    return hd.sr.Comprehensive3DSR.from_dataset(chest["results"][SERIES[pipeline] + 1])


def _seg(chest: dict[str, Any], pipeline: str) -> hd.seg.Segmentation:
    return hd.seg.Segmentation.from_dataset(chest["results"][SERIES[pipeline]])


def _volumes_ml(sr: hd.sr.Comprehensive3DSR) -> dict[str, float]:
    return {
        str(group.tracking_identifier): group.get_measurements(name=codes.SCT.Volume)[0].value
        for group in sr.content.get_volumetric_roi_measurement_groups()
    }


def test_every_chest_job_is_done_and_delivered(chest: dict[str, Any]) -> None:
    study = chest["study"]
    assert study["state"] == "DONE", study
    assert sorted(job["pipeline"] for job in study["jobs"]) == sorted(SERIES)
    assert {d["state"] for d in study["deliveries"]} == {"DELIVERED"}


#: Debian 12's dicom3tools predates the Label Map Segmentation class (2024): it takes a reference to a
#: segment of such a SEG for a reference to a non-segmentation object. Only this rule is set aside.
LABEL_MAP_REFERENCE = "Shall not be present for Referenced SOP Class that is not segmentation"


def test_results_pass_dciodvfy(chest: dict[str, Any]) -> None:
    for number, dataset in chest["results"].items():
        buffer = BytesIO()
        dataset.save_as(buffer, enforce_file_format=True)
        errors = dciodvfy_errors(buffer.getvalue())
        if dataset.Modality == "SR":
            referenced = {
                item.ReferencedSOPClassUID
                for study in dataset.CurrentRequestedProcedureEvidenceSequence
                for series in study.ReferencedSeriesSequence
                for item in series.ReferencedSOPSequence
            }
            if LABEL_MAP_SEGMENTATION in referenced:
                errors = [error for error in errors if LABEL_MAP_REFERENCE not in error]
        assert errors == [], number


SEGMENTATION_CLASSES = ("1.2.840.10008.5.1.4.1.1.66.4", LABEL_MAP_SEGMENTATION)


def _referenced_segs(items: pydicom.Sequence) -> set[str]:
    """SEG instances referenced anywhere in an SR's content tree (TID 1411's Referenced Segment)."""
    found = set()
    for item in items:
        for reference in item.get("ReferencedSOPSequence", []):
            if reference.ReferencedSOPClassUID in SEGMENTATION_CLASSES:
                found.add(str(reference.ReferencedSOPInstanceUID))
        found |= _referenced_segs(item.get("ContentSequence", []))
    return found


def test_every_seg_an_sr_in_the_pacs_references_is_in_the_pacs(chest: dict[str, Any]) -> None:
    """Orthanc 1.10 refuses Label Map SEG: ct-lung's BINARY stand-in went, with the SR on the stand-in."""
    held = {str(dataset.SOPInstanceUID) for dataset in chest["results"].values()}
    for number, dataset in chest["results"].items():
        if dataset.Modality != "SR":
            continue
        evidence = {
            str(item.ReferencedSOPInstanceUID)
            for study in dataset.CurrentRequestedProcedureEvidenceSequence
            for series in study.ReferencedSeriesSequence
            for item in series.ReferencedSOPSequence
            if item.ReferencedSOPClassUID in SEGMENTATION_CLASSES
        }
        referenced = _referenced_segs(dataset.ContentSequence)
        assert referenced and referenced <= evidence, number
        assert referenced <= held, number
    variants = {
        (d["kind"], d["sent_variant"]) for d in chest["study"]["deliveries"] if d["kind"] in ("SEG", "SR")
    }
    assert ("SEG", "stand-in") in variants and ("SR", "stand-in") in variants  # ct-lung's
    assert ("SEG", "primary") in variants and ("SR", "primary") in variants  # the one-label SEGs
    # `pacs` has the default results, [seg, sr]: no key images were sent there.
    assert {d["kind"] for d in chest["study"]["deliveries"]} == {"SEG", "SR"}


def test_ct_lung_gives_two_lungs_with_plausible_hu(chest: dict[str, Any]) -> None:
    seg = _seg(chest, "ct-lung")
    labels = {
        int(s.SegmentNumber): (s.SegmentLabel, s.SegmentedPropertyTypeCodeSequence[0].CodeValue)
        for s in seg.SegmentSequence
    }
    assert labels == {1: ("Right lung", "3341006"), 2: ("Left lung", "44029006")}
    source: hd.Volume = chest["volume"]
    masks = seg.get_volume(combine_segments=True).match_geometry(source).array
    for label, (name, _) in labels.items():
        inside = source.array[masks == label]
        assert 150 < inside.size * source.voxel_volume / 1000 < 1000, name  # 40 mm slab of one lung
        assert -920 < float(inside.mean()) < -700, name
    # Patient left is +x in DICOM patient coordinates: the left lung's centre lies left of the right's.
    centres = {
        label: (source.affine @ np.append(np.argwhere(masks == label).mean(axis=0), 1))[0] for label in labels
    }
    assert centres[2] > centres[1] + 50


def test_ct_lung_reports_volumes_and_laa950_per_lung(chest: dict[str, Any]) -> None:
    sr = _sr(chest, "ct-lung")
    source: hd.Volume = chest["volume"]
    masks = _seg(chest, "ct-lung").get_volume(combine_segments=True).match_geometry(source).array
    for group in sr.content.get_volumetric_roi_measurement_groups():
        label = {"Right lung": 1, "Left lung": 2}[str(group.tracking_identifier)]
        inside = source.array[masks == label]
        volume = group.get_measurements(name=codes.SCT.Volume)[0]
        assert volume.value == pytest.approx(inside.size * source.voxel_volume / 1000, rel=0.01)
        laa = next(m for m in group.get_measurements() if m.name.meaning == "LAA-950")
        assert laa.unit.value == "%"
        assert laa.value == pytest.approx(100 * float((inside < -950).mean()), abs=0.05)
        assert 0 <= laa.value < 30


def test_torchscript_model_labels_and_finding(chest: dict[str, Any]) -> None:
    seg = _seg(chest, "threshold-ts")
    segment = seg.SegmentSequence[0]
    assert (segment.SegmentLabel, segment.SegmentAlgorithmName) == ("Bone", "threshold-ts")
    assert segment.SegmentationAlgorithmIdentificationSequence[0].AlgorithmVersion == TORCHSCRIPT_VERSION
    source: hd.Volume = chest["volume"]
    expected_ml = float((source.array > BONE_HU).sum()) * source.voxel_volume / 1000
    assert _volumes_ml(_sr(chest, "threshold-ts")) == {"Bone": pytest.approx(expected_ml, rel=0.005)}
    report = chest["results"][SERIES["threshold-ts"] + 1]
    coded = _items(report, "CODE")
    assert ("272673000", "52101004") in [  # Bone: Present (TID 1500 qualitative evaluation)
        (item.ConceptNameCodeSequence[0].CodeValue, item.ConceptCodeSequence[0].CodeValue) for item in coded
    ]
    probabilities = [
        float(item.MeasuredValueSequence[0].NumericValue)
        for item in _items(report, "NUM")
        if item.ConceptNameCodeSequence[0].CodeValue == codes.DCM.Probability.value
    ]
    assert probabilities == [pytest.approx(1.0)]
    versions = _text_items(report)
    assert set(versions["111001"]) == {"threshold-ts"}
    assert set(versions["111003"]) == {TORCHSCRIPT_VERSION}


def _items(dataset: pydicom.Dataset, value_type: str) -> list[pydicom.Dataset]:
    """Content items of one value type anywhere in an SR tree."""
    found = []
    for item in dataset.get("ContentSequence", []):
        if item.ValueType == value_type:
            found.append(item)
        found += _items(item, value_type)
    return found


def test_bundle_model_on_its_own_grid(chest: dict[str, Any]) -> None:
    seg = _seg(chest, "threshold-bundle")
    assert seg.SegmentSequence[0].SegmentedPropertyTypeCodeSequence[0].CodeValue == "15158005"  # Air
    source: hd.Volume = chest["volume"]
    expected_ml = float((source.array < AIR_HU).sum()) * source.voxel_volume / 1000
    # Resampled to 1.5 x 1.5 x 2.5 mm and back: the volume survives within a few per mille.
    assert _volumes_ml(_sr(chest, "threshold-bundle"))["Air"] == pytest.approx(expected_ml, rel=0.01)
    versions = _text_items(chest["results"][SERIES["threshold-bundle"] + 1])
    assert set(versions["111001"]) == {"threshold-bundle"}
    assert set(versions["111003"]) == {BUNDLE_VERSION}


def test_summary_is_what_triage_reads(chest: dict[str, Any]) -> None:
    summaries = {
        (job["pipeline"], r["kind"]): r["summary"]
        for job in chest["study"]["jobs"]
        for r in chest["study"]["results"]
        if r["job_id"] == job["id"]
    }
    lung = summaries[("ct-lung", "SR")]
    assert (lung["pipeline"], lung["findings"]) == ("ct-lung", [])
    by_name = {(m["name"], m["segment"]): m for m in lung["measurements"]}
    assert by_name[("Left lung volume", "Left lung")]["code"] == "SCT:118565006"
    assert by_name[("Left lung volume", "Left lung")]["unit"] == "mL"
    assert by_name[("LAA-950", "Right lung")]["code"] is None
    assert by_name[("LAA-950", "Right lung")]["unit"] == "%"
    bone = summaries[("threshold-ts", "SR")]
    assert bone["version"] == TORCHSCRIPT_VERSION
    assert bone["findings"] == [{"name": "Bone present", "code": "SCT:272673000", "probability": 1.0}]


def test_a_reported_finding_moves_the_study_up_the_worklist(node: Node, chest: dict[str, Any]) -> None:
    """The TorchScript model reports "Bone present"; the triage rule on that code makes the study URGENT."""
    study_uid = chest["study"]["study_uid"]

    def triaged() -> dict[str, Any] | None:
        listed = node.http.get(f"{node.api}/worklist").json()
        entry = next((e for e in listed if e["study_uid"] == study_uid), None)
        return entry if entry and entry["priority"] == "urgent" else None

    entry = wait_until(triaged, 60, "the chest CT triaged URGENT")
    assert (entry["base_priority"], entry["finding"]) == ("routine", BONE_FINDING_REASON)
    changes = [e["detail"] for e in node.study(study_uid)["events"] if e["hop"] == "triaged"]
    assert any(d.get("rule") == BONE_FINDING_RULE and d.get("new") == "urgent" for d in changes)


def test_failing_pipelines_fail_their_jobs_with_a_reason(head: dict[str, Any]) -> None:
    jobs = {job["pipeline"]: job for job in head["jobs"]}
    assert head["state"] == "FAILED"
    assert jobs["strict-slices"]["state"] == "FAILED"
    assert "needs at least 500 slices, the series has" in jobs["strict-slices"]["error"]
    assert jobs["broken-model"]["state"] == "FAILED"
    assert "simulated model failure" in jobs["broken-model"]["error"]
    assert jobs["threshold-ts"]["state"] == "DONE"


def test_the_worker_takes_the_next_job_while_a_model_runs(chest: dict[str, Any]) -> None:
    """The chest CT's three jobs were queued together for one worker (``inference.jobs_per_worker``
    is 2): a job started before the one ahead of it finished, instead of waiting for its writing."""
    spans = sorted(
        (datetime.fromisoformat(job["started_at"]), datetime.fromisoformat(job["finished_at"]))
        for job in chest["study"]["jobs"]
    )
    assert any(later[0] < earlier[1] for earlier, later in itertools.pairwise(spans)), spans


def test_the_worker_outlives_failures_and_evicts_least_recently_used(
    node: Node, head: dict[str, Any], chest: dict[str, Any]
) -> None:
    """One worker process serves the pool: the chest jobs after the failures ran on it, and its five
    pipelines did not all fit in the three warm places."""
    assert chest["study"]["state"] == "DONE"
    log = node.log_path.read_text()
    assert "evicted pipeline" in log
    assert log.count("pool.cpu@") >= 1 and "worker lost" not in log.lower()


def test_pipelines_are_listed_with_version_queue_and_source(node: Node) -> None:
    # The first call imports torch in the web process: generous timeout on a loaded machine.
    listed = {p["name"]: p for p in node.http.get(f"{node.api}/pipelines", timeout=120).json()}
    assert listed["brain-extraction"]["source"] == "built-in"
    assert listed["brain-extraction"]["queue"] == "brain-extraction"
    assert listed["ct-lung"]["queue"] == "pool.cpu"
    assert listed["threshold-ts"]["version"] == TORCHSCRIPT_VERSION
    assert listed["threshold-ts"]["source"].startswith("torchscript ")
    assert listed["threshold-bundle"]["version"] == BUNDLE_VERSION
    assert listed["threshold-bundle"]["source"].startswith("monai-bundle ")


def test_the_celery_jobs_wrote_their_ups_workitems(node: Node, head: dict[str, Any]) -> None:
    """The same workitems an outside performer sees over UPS-RS: COMPLETED with the job's SEG and SR
    as outputs, CANCELED with the failure's reason."""
    found = node.http.get(
        f"http://127.0.0.1:{node.web_port}/dicomweb/workitems", params={"StudyInstanceUID": head["study_uid"]}
    )
    workitems = {item.ProcedureStepLabel: item for item in map(pydicom.Dataset.from_json, found.json())}
    assert sorted(workitems) == sorted(job["pipeline"] for job in head["jobs"])
    for job in head["jobs"]:
        item = workitems[job["pipeline"]]
        assert item.InputInformationSequence[0].SeriesInstanceUID == job["series_uid"]
        if job["state"] == "DONE":
            assert item.ProcedureStepState == "COMPLETED"
            outputs = item.UnifiedProcedureStepPerformedProcedureSequence[0].OutputInformationSequence
            sent = {str(o.ReferencedSOPSequence[0].ReferencedSOPInstanceUID) for o in outputs}
            assert sent == {r["sop_uid"] for r in head["results"] if r["job_id"] == job["id"]}
        else:
            assert (item.ProcedureStepState, job["state"]) == ("CANCELED", "FAILED")
            assert item.ReasonForCancellation == job["error"][:64]
