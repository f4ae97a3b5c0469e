"""The story of a study: a brain MRI arrives from a modality, and its SEG and SR land in the PACS."""

from __future__ import annotations

import subprocess
import tempfile
import time
from io import BytesIO

import highdicom as hd
import numpy as np
import pydicom
import pytest
from pydicom.sr.codedict import codes

from tests.services import ECHOSCU, MPRAGE, Node, Orthanc, storescu, wait_until


def dciodvfy_errors(data: bytes) -> list[str]:
    with tempfile.NamedTemporaryFile(suffix=".dcm") as handle:
        handle.write(data)
        handle.flush()
        output = subprocess.run(["dciodvfy", handle.name], capture_output=True, text=True).stderr
    return [line for line in output.splitlines() if line.startswith("Error")]


def test_echo(node: Node) -> None:
    result = subprocess.run([ECHOSCU, "-aec", "RADROUTER", "127.0.0.1", str(node.port)], capture_output=True)
    assert result.returncode == 0, result.stderr


@pytest.fixture(scope="module")
def delivered(node: Node, orthanc: Orthanc) -> dict[str, object]:
    """Send the Philips MPRAGE with dcmtk's storescu and wait for SEG and SR in Orthanc."""
    files = sorted(MPRAGE.glob("*.dcm"))
    study_uid = str(pydicom.dcmread(files[0], stop_before_pixels=True).StudyInstanceUID)
    sent = storescu(node.port, files)
    last_response = time.monotonic()
    assert sent.returncode == 0, sent.stderr

    def both_in_pacs() -> bool:
        return bool(orthanc.find_series(study_uid, "SEG") and orthanc.find_series(study_uid, "SR"))

    wait_until(both_in_pacs, 180, "SEG and SR in Orthanc", interval_s=0.05)
    elapsed = time.monotonic() - last_response
    seg = pydicom.dcmread(BytesIO(orthanc.instance_files(orthanc.find_series(study_uid, "SEG")[0])[0]))
    sr = pydicom.dcmread(BytesIO(orthanc.instance_files(orthanc.find_series(study_uid, "SR")[0])[0]))
    study = wait_until(lambda: (s := node.study(study_uid))["state"] == "DONE" and s, 30, "study DONE")
    print(
        f"\nlast instance -> SEG and SR in Orthanc: {elapsed:.2f} s; "
        f"job timings {study['jobs'][0]['timings']}"
    )
    return {"files": files, "study_uid": study_uid, "seg": seg, "sr": sr, "study": study, "elapsed": elapsed}


def test_results_are_in_the_same_study(delivered: dict[str, object]) -> None:
    seg, sr = delivered["seg"], delivered["sr"]
    assert isinstance(seg, pydicom.Dataset) and isinstance(sr, pydicom.Dataset)
    assert seg.StudyInstanceUID == sr.StudyInstanceUID == delivered["study_uid"]
    assert seg.SOPClassUID == "1.2.840.10008.5.1.4.1.1.66.4"
    assert sr.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.34"
    assert (seg.SeriesNumber, sr.SeriesNumber) == (9100, 9101)


def test_results_pass_dciodvfy(delivered: dict[str, object]) -> None:
    for name in ("seg", "sr"):
        dataset = delivered[name]
        assert isinstance(dataset, pydicom.Dataset)
        buffer = BytesIO()
        dataset.save_as(buffer, enforce_file_format=True)
        assert dciodvfy_errors(buffer.getvalue()) == [], name


def test_seg_planes_match_the_source_geometry(delivered: dict[str, object]) -> None:
    files = delivered["files"]
    assert isinstance(files, list)
    sources = {
        str(ds.SOPInstanceUID): ds for ds in (pydicom.dcmread(f, stop_before_pixels=True) for f in files)
    }
    seg = hd.seg.Segmentation.from_dataset(delivered["seg"])
    assert seg.FrameOfReferenceUID == next(iter(sources.values())).FrameOfReferenceUID
    shared = seg.SharedFunctionalGroupsSequence[0]
    source = next(iter(sources.values()))
    np.testing.assert_allclose(
        shared.PlaneOrientationSequence[0].ImageOrientationPatient, source.ImageOrientationPatient, atol=1e-6
    )
    np.testing.assert_allclose(shared.PixelMeasuresSequence[0].PixelSpacing, source.PixelSpacing, atol=1e-6)
    assert seg.NumberOfFrames > 100  # the brain spans most of the 170 sagittal slices
    for frame in seg.PerFrameFunctionalGroupsSequence:
        referenced = frame.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
        np.testing.assert_allclose(
            frame.PlanePositionSequence[0].ImagePositionPatient,
            sources[referenced].ImagePositionPatient,
            atol=1e-3,
        )


def test_brain_volume_is_plausible_and_consistent(delivered: dict[str, object]) -> None:
    sr = hd.sr.Comprehensive3DSR.from_dataset(delivered["sr"])
    groups = sr.content.get_volumetric_roi_measurement_groups()
    assert len(groups) == 1
    volume = groups[0].get_measurements(name=codes.SCT.Volume)[0]
    assert volume.unit.value == "mL" and volume.unit.scheme_designator == "UCUM"
    assert 900 <= volume.value <= 1800
    seg = hd.seg.Segmentation.from_dataset(delivered["seg"])
    mask = seg.get_volume(combine_segments=True)
    assert volume.value == pytest.approx(int(mask.array.sum()) * mask.voxel_volume / 1000, rel=0.01)


def test_ihe_ai_results_identification(delivered: dict[str, object]) -> None:
    for name in ("seg", "sr"):
        dataset = delivered[name]
        assert isinstance(dataset, pydicom.Dataset)
        purposes = [item.PurposeOfReferenceCodeSequence[0] for item in dataset.ContributingEquipmentSequence]
        assert any((p.CodeValue, p.CodingSchemeDesignator) == ("Newcode1", "99IHE") for p in purposes), name
    seg = delivered["seg"]
    assert isinstance(seg, pydicom.Dataset)
    algorithm = seg.SegmentSequence[0].SegmentAlgorithmName
    assert algorithm == "brain-extraction"
    property_type = seg.SegmentSequence[0].SegmentedPropertyTypeCodeSequence[0]
    assert (property_type.CodeValue, property_type.CodingSchemeDesignator) == ("12738006", "SCT")
    sr = delivered["sr"]
    assert isinstance(sr, pydicom.Dataset)
    tid4019 = {code: values for code, values in _text_items(sr).items() if code in ("111001", "111003")}
    assert set(tid4019["111001"]) == {"brain-extraction"}
    assert tid4019["111003"] and all(v.startswith("deepbet ") for v in tid4019["111003"])


def _text_items(dataset: pydicom.Dataset) -> dict[str, list[str]]:
    """TEXT content items anywhere in an SR tree, by concept code (TID 4019 uses DCM 111001, 111003)."""
    found: dict[str, list[str]] = {}
    for item in dataset.get("ContentSequence", []):
        if item.ValueType == "TEXT":
            found.setdefault(item.ConceptNameCodeSequence[0].CodeValue, []).append(item.TextValue)
        for code, values in _text_items(item).items():
            found.setdefault(code, []).extend(values)
    return found


def test_every_hop_is_recorded(delivered: dict[str, object]) -> None:
    study = delivered["study"]
    assert isinstance(study, dict)
    hops = [event["hop"] for event in study["events"]]
    for hop in ("received", "complete", "routed", "queued", "inference_started", "inferred", "delivered"):
        assert hop in hops
    assert [d["state"] for d in study["deliveries"]] == ["DELIVERED", "DELIVERED"]
    assert study["series"][0]["instances"] == 170
    complete = next(e for e in study["events"] if e["hop"] == "complete")
    assert complete["detail"]["quiet_s"] < 3.0


def test_the_jobs_triage_and_monitoring_are_recorded(node: Node, delivered: dict[str, object]) -> None:
    """What the reconciler reads to send a lost triage or monitoring task again."""
    study_uid = str(delivered["study_uid"])
    job = wait_until(
        lambda: (j := node.study(study_uid)["jobs"][0])["triaged_at"] and j["monitored_at"] and j,
        60,
        "the job's triage and monitoring recorded",
    )
    assert job["triaged_at"] >= job["finished_at"] and job["monitored_at"] >= job["finished_at"]
