"""The story of studies from scanners not in ../shared/data, over the network to the session node.

Sent at once: the MPRAGE as one Enhanced MR instance (dcmsend, as a Siemens XA or Philips scanner
sends it), the MPRAGE as classic slices with ``***`` dates and a GB18030 patient name, the head CT as
one Enhanced CT instance, and the MPRAGE without a frame of reference. Each gets its SEG and SR in
Orthanc, valid for dciodvfy and in the source's character set, or fails with a sentence.
"""

from __future__ import annotations

import io
import os
import subprocess
from pathlib import Path
from typing import Any

import highdicom as hd
import pydicom
import pytest
from pydicom.data import get_charset_files
from pydicom.uid import generate_uid

from tests.inference.variants import dciodvfy_elements, enhanced_copy, in_character_set, with_raw
from tests.services import CT_HEAD, DCMSEND, MPRAGE, Node, Orthanc, storescu, wait_until
from tests.user_models import PIPELINE_TESTER


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.endswith(".txt"))


def _dcmsend(node: Node, files: list[Path], calling_ae: str = "MODALITY") -> None:
    """dcmtk's dcmsend, which proposes each file's own SOP class and transfer syntax."""
    sent = subprocess.run(
        [DCMSEND, "-aet", calling_ae, "-aec", "RADROUTER", "127.0.0.1", str(node.port), *map(str, files)],
        capture_output=True,
        text=True,
        env={**os.environ, "TCP_NODELAY": "1"},
    )
    assert sent.returncode == 0, sent.stderr


def _gb18030_name() -> bytes:
    source = pydicom.dcmread(next(p for p in get_charset_files("chrX2.dcm")))
    raw = source.get_item(0x00100010)
    assert raw is not None and source.SpecificCharacterSet == "GB18030"
    return bytes(raw.value)


def _field_copy(folder: Path, **raw: bytes | None) -> list[Path]:
    """The MPRAGE under new UIDs, in GB18030 with a Chinese patient name, and ``raw`` bytes written."""
    study_uid, series_uid, name = generate_uid(), generate_uid(), _gb18030_name()
    copies = []
    for source in _images(MPRAGE):
        dataset = pydicom.dcmread(source)
        dataset.StudyInstanceUID, dataset.SeriesInstanceUID = study_uid, series_uid
        dataset.SOPInstanceUID = dataset.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        dataset = in_character_set(dataset, "GB18030", name)
        for keyword, value in raw.items():
            with_raw(dataset, keyword, value)
        copies.append(folder / source.name)
        dataset.save_as(copies[-1], enforce_file_format=True)
    return copies


def _study_uid(path: Path) -> str:
    return str(pydicom.dcmread(path, stop_before_pixels=True).StudyInstanceUID)


def _settled(node: Node, study_uid: str) -> dict[str, Any]:
    return dict(
        wait_until(
            lambda: (s := node.study(study_uid)).get("state") in ("DONE", "FAILED") and s,
            600,
            f"study {study_uid} to settle",
            interval_s=0.5,
        )
    )


def _results(orthanc: Orthanc, study_uid: str) -> dict[str, pydicom.Dataset]:
    wait_until(
        lambda: orthanc.find_series(study_uid, "SEG") and orthanc.find_series(study_uid, "SR"),
        120,
        "SEG and SR in Orthanc",
    )
    found = {}
    for modality in ("SEG", "SR"):
        for series_id in orthanc.find_series(study_uid, modality):
            for data in orthanc.instance_files(series_id):
                found[f"{modality}-{pydicom.dcmread(io.BytesIO(data)).SeriesNumber}"] = pydicom.dcmread(
                    io.BytesIO(data)
                )
    return found


def _encoded(dataset: pydicom.Dataset) -> bytes:
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def sent(node: Node, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The four studies, sent one after the other without waiting; their first (or only) file."""
    folder = tmp_path_factory.mktemp("unseen")
    for name in ("field", "unplaced"):
        (folder / name).mkdir()
    files = {
        "enhanced-mr": enhanced_copy(_images(MPRAGE), folder / "enhanced-mr.dcm"),
        "enhanced-ct": enhanced_copy(_images(CT_HEAD), folder / "enhanced-ct.dcm"),
    }
    field = _field_copy(folder / "field", StudyDate=b"***", PatientBirthDate=b"00000000")
    unplaced = _field_copy(folder / "unplaced", FrameOfReferenceUID=None)
    _dcmsend(node, [files["enhanced-mr"]])
    _dcmsend(node, [files["enhanced-ct"]], calling_ae=PIPELINE_TESTER)
    for series in (field, unplaced):
        result = storescu(node.port, series)
        assert result.returncode == 0, result.stderr
    return {**files, "field": field[0], "unplaced": unplaced[0]}


def test_enhanced_mr_and_field_headers_get_valid_results_in_their_character_set(
    node: Node, orthanc: Orthanc, sent: dict[str, Path]
) -> None:
    masks = {}
    for name in ("enhanced-mr", "field"):
        study_uid = _study_uid(sent[name])
        study = _settled(node, study_uid)
        assert study["state"] == "DONE", study
        source = pydicom.dcmread(sent[name], stop_before_pixels=True)
        known = dciodvfy_elements(_encoded(pydicom.dcmread(sent[name])))
        results = _results(orthanc, study_uid)
        assert set(results) == {"SEG-9100", "SR-9101"}, results.keys()
        for result in results.values():
            assert dciodvfy_elements(_encoded(result)) <= known, (name, result.Modality)
            assert result.get("SpecificCharacterSet", "") == source.get("SpecificCharacterSet", "")
            assert str(result.PatientName) == str(source.PatientName)
        masks[name] = hd.seg.Segmentation.from_dataset(results["SEG-9100"]).get_volume(combine_segments=True)
        if name == "field":
            (job,) = study["jobs"]
            repaired = {(r["attribute"], r["rule"]) for r in job["repairs"]}
            assert {("StudyDate", "emptied"), ("PatientBirthDate", "emptied")} <= repaired
            assert all("***" not in r["reason"] for r in job["repairs"])
            assert results["SR-9101"].StudyDate == ""
            assert str(results["SR-9101"].PatientName).startswith("Wang^XiaoDong=")
    enhanced, classic = masks["enhanced-mr"], masks["field"]
    assert enhanced.spatial_shape == classic.spatial_shape
    a, b = enhanced.array > 0, classic.array > 0
    dice = 2 * (a & b).sum() / (a.sum() + b.sum())
    print(f"brain extraction Dice, enhanced vs classic MPRAGE: {dice:.4f}")
    assert dice >= 0.99


def test_an_enhanced_head_ct_gets_the_test_models_results(
    node: Node, orthanc: Orthanc, sent: dict[str, Path]
) -> None:
    study_uid = _study_uid(sent["enhanced-ct"])
    study = _settled(node, study_uid)
    jobs = {job["pipeline"]: job for job in study["jobs"]}
    assert jobs["threshold-ts"]["state"] == "DONE", jobs["threshold-ts"]
    known = dciodvfy_elements(_encoded(pydicom.dcmread(sent["enhanced-ct"])))
    results = _results(orthanc, study_uid)
    seg, sr = results["SEG-9400"], results["SR-9401"]
    for result in (seg, sr):
        assert dciodvfy_elements(_encoded(result)) <= known, result.Modality
    source_uid = pydicom.dcmread(sent["enhanced-ct"], stop_before_pixels=True).SOPInstanceUID
    frame = seg.PerFrameFunctionalGroupsSequence[0].DerivationImageSequence[0].SourceImageSequence[0]
    assert frame.ReferencedSOPInstanceUID == source_uid and int(frame.ReferencedFrameNumber) >= 1


def test_a_series_without_a_frame_of_reference_fails_with_a_sentence(
    node: Node, sent: dict[str, Path]
) -> None:
    study = _settled(node, _study_uid(sent["unplaced"]))
    (job,) = study["jobs"]
    assert job["state"] == "FAILED"
    assert job["error"].startswith("the SEG could not be written: FrameOfReferenceUID is missing in series")
    assert "Error" not in job["error"] and "Exception" not in job["error"]
