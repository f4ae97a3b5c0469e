"""``radrouter evaluate`` on the real abdomen CT and its reference liver SEG (made by dcmqi).

The expected figures are computed here from the raw SEG frames, each mapped to its CT slice by its
Referenced SOP Instance UID, not through the volume code that the evaluation itself uses.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from typer.testing import CliRunner

from radrouter.cli import app
from radrouter.inference import registry
from radrouter.inference.pipeline import InputSpec, Prediction, SegmentSpec
from tests.services import DATA

ABDOMEN = DATA / "ct-abdomen-3slice-with-seg"
LIVER_SEG = ABDOMEN / "seg" / "liver.dcm"
CT_FILES = sorted((ABDOMEN / "ct").glob("*.dcm"))
runner = CliRunner()


def reference_frames() -> dict[str, np.ndarray]:
    """CT SOP Instance UID → the liver mask of that slice, straight from the SEG's frames."""
    seg = pydicom.dcmread(LIVER_SEG)
    frames = seg.pixel_array.reshape(-1, seg.Rows, seg.Columns).astype(bool)
    return {
        str(item.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID): frames[i]
        for i, item in enumerate(seg.PerFrameFunctionalGroupsSequence)
    }


def case_folder(root: Path, *names: str) -> Path:
    cases = root / "cases"
    cases.mkdir()
    for name in names:
        (cases / name).symlink_to(ABDOMEN, target_is_directory=True)
    return cases


def write_seg(path: Path, masks: dict[str, np.ndarray]) -> None:
    """A SEG with the reference's segment description and the given per-slice masks."""
    reference = hd.seg.segread(LIVER_SEG)
    sources: list[Dataset] = [pydicom.dcmread(f) for f in CT_FILES]
    for source in sources:  # these GE files carry an empty (0008,0005), which highdicom refuses
        if not source.get("SpecificCharacterSet"):
            source.pop("SpecificCharacterSet", None)
    pixels = np.stack([masks[str(ds.SOPInstanceUID)] for ds in sources]).astype(np.uint8)
    seg = hd.seg.Segmentation(
        source_images=sources,
        pixel_array=pixels,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=reference.SegmentSequence,
        series_instance_uid=hd.UID(),
        series_number=99,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer="test",
        manufacturer_model_name="test",
        software_versions="0",
        device_serial_number="0",
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    seg.save_as(path)


def evaluate(*args: str | Path) -> dict:  # type: ignore[type-arg]
    json_path = Path(str(args[-1]))
    result = runner.invoke(app, ["evaluate", *map(str, args[:-1]), "--json", str(json_path)])
    assert result.exit_code == 0, result.output
    return json.loads(json_path.read_text())  # type: ignore[no-any-return]


def test_reference_against_itself_gives_dice_one(tmp_path: Path) -> None:
    cases = case_folder(tmp_path, "abdomen")
    (tmp_path / "predictions" / "abdomen").mkdir(parents=True)
    (tmp_path / "predictions" / "abdomen" / "liver.dcm").symlink_to(LIVER_SEG)
    (tmp_path / "predictions" / "abdomen" / "notes.txt").write_text("not DICOM: ignored")
    report = evaluate(cases, "--predictions", tmp_path / "predictions", tmp_path / "r.json")
    [case] = report["cases"]
    assert case["segments"] == {"Liver": {"dice": 1.0, "hd95_mm": 0.0}}
    assert case["descriptors"]["manufacturer"] == "GE MEDICAL SYSTEMS"
    assert report["overall"]["segments"]["Liver"]["dice_mean"] == 1.0


def test_removing_voxels_gives_the_exact_dice(tmp_path: Path) -> None:
    frames = reference_frames()
    total = sum(int(mask.sum()) for mask in frames.values())
    removed = 1000
    first_uid = next(uid for uid, mask in frames.items() if mask.sum() >= removed)
    thinned = {uid: mask.copy() for uid, mask in frames.items()}
    rows, columns = np.nonzero(thinned[first_uid])
    thinned[first_uid][rows[:removed], columns[:removed]] = False
    write_seg(tmp_path / "predictions" / "abdomen" / "thinned.dcm", thinned)
    cases = case_folder(tmp_path, "abdomen")
    html = tmp_path / "report.html"
    report = evaluate(cases, "--predictions", tmp_path / "predictions", "--html", html, tmp_path / "r.json")
    expected = 2 * (total - removed) / (total + total - removed)
    assert report["cases"][0]["segments"]["Liver"]["dice"] == pytest.approx(expected, abs=1e-12)
    assert report["cases"][0]["segments"]["Liver"]["dice"] < 1.0
    page = html.read_text()
    assert "Liver" in page and "data:image/png;base64," in page


def test_findings_scored_against_labels_overall_and_by_subgroup(tmp_path: Path) -> None:
    cases = case_folder(tmp_path, "a", "b", "c")
    (cases / "labels.csv").write_text("case,code,label\na,SCT:1,1\nb,SCT:1,0\nc,SCT:1,1\n")
    predictions = tmp_path / "predictions"
    predictions.mkdir()
    (predictions / "findings.csv").write_text(
        "case,code,probability\na,SCT:1,0.9\nb,SCT:1,0.7\nc,SCT:1,0.2\n"
    )
    report = evaluate(cases, "--predictions", predictions, tmp_path / "r.json")
    overall = report["overall"]["findings"]["SCT:1"]
    # a: TP, b: FP, c: FN; AUC: 0.9 > 0.7 right, 0.2 > 0.7 wrong → 1/2.
    assert (overall["sensitivity"], overall["specificity"], overall["ppv"]) == (0.5, 0.0, 0.5)
    assert overall["auc"] == 0.5
    by_maker = report["subgroups"]["manufacturer"]["GE MEDICAL SYSTEMS"]["findings"]["SCT:1"]
    assert by_maker["cases"] == 3
    assert set(report["subgroups"]) == {"manufacturer", "model", "slice_thickness", "protocol"}


class LiverByDensity:
    """A test pipeline: soft tissue between 40 and 200 HU is called liver."""

    name = "test-liver-density"
    version = "1"
    description = "test"
    procedure = codes.SCT.Liver
    series_number = 9900
    input = InputSpec()
    segments = (SegmentSpec(1, "Liver", codes.SCT.Organ, codes.SCT.Liver),)
    measurements = ()
    findings = ()

    def load(self, device: object) -> None:
        return None

    def predict(self, volume: hd.Volume) -> Prediction:
        started = time.perf_counter()
        mask = ((volume.array >= 40) & (volume.array <= 200)).astype(np.uint8)
        return Prediction(volume.with_array(mask), time.perf_counter() - started)


def test_a_pipeline_run_through_the_worker_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(registry.BUILT_IN, LiverByDensity.name, LiverByDensity)  # type: ignore[arg-type]
    frames = reference_frames()
    intersection = predicted = reference = 0
    for path in CT_FILES:
        ds = pydicom.dcmread(path)
        hu = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
        mask = (hu >= 40) & (hu <= 200)
        truth = frames[str(ds.SOPInstanceUID)]
        intersection += int((mask & truth).sum())
        predicted, reference = predicted + int(mask.sum()), reference + int(truth.sum())
    report = evaluate(
        case_folder(tmp_path, "abdomen"),
        "--pipeline",
        LiverByDensity.name,
        "--device",
        "cpu",
        tmp_path / "r.json",
    )
    assert report["source"] == "test-liver-density (1)"
    dice = report["cases"][0]["segments"]["Liver"]["dice"]
    assert dice == pytest.approx(2 * intersection / (predicted + reference), abs=1e-12)
    assert 0 < dice < 1


def test_clear_errors_for_bad_input(tmp_path: Path) -> None:
    result = runner.invoke(app, ["evaluate", str(tmp_path)])
    assert result.exit_code == 2 and "exactly one of" in result.output
    result = runner.invoke(app, ["evaluate", str(tmp_path), "--pipeline", "nope"])
    assert result.exit_code == 2 and "no case folders" in result.output
    cases = case_folder(tmp_path, "abdomen")
    (cases / "labels.csv").write_text("case,code,label\nabdomen,SCT:1,yes\n")
    result = runner.invoke(app, ["evaluate", str(cases), "--pipeline", "nope"])
    assert result.exit_code == 2 and "line 2" in result.output
