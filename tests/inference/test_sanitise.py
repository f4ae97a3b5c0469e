"""The sanitiser on the real MPRAGE header with the values scanners in the field write."""

from __future__ import annotations

from pathlib import Path

import pydicom
import pytest
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.tag import Tag

from radrouter.inference.results.sanitise import RepairRule, sanitise_sources
from tests.inference.variants import reread, with_raw
from tests.services import CT_CHEST, CT_HEAD, MPRAGE

FIRST_SLICE = sorted(MPRAGE.glob("*.dcm"))[0]


def header(keyword: str, value: bytes | None) -> Dataset:
    return reread(with_raw(pydicom.dcmread(FIRST_SLICE, stop_before_pixels=True), keyword, value))


@pytest.mark.parametrize(
    ("keyword", "sent", "rule", "kept"),
    [
        ("StudyDate", b"***", RepairRule.EMPTIED, ""),
        ("PatientBirthDate", b"00000000", RepairRule.EMPTIED, ""),
        ("StudyDate", b"2021.09.02", RepairRule.REFORMATTED, "20210902"),
        ("StudyTime", b"13:05:14.25", RepairRule.REFORMATTED, "130514.25"),
        ("StudyTime", b"250000", RepairRule.EMPTIED, ""),
        ("PatientAge", b"unknown", RepairRule.DROPPED, None),
        ("PatientAge", b"45Y", RepairRule.REFORMATTED, "045Y"),
        ("PatientWeight", b"70,5", RepairRule.DROPPED, None),
        ("PatientSize", b"1.75000000000000001", RepairRule.REFORMATTED, "1.75"),
        ("SeriesNumber", b"3.0", RepairRule.REFORMATTED, "3"),
        ("PatientName", b"A^B^C^D^E^F", RepairRule.EMPTIED, ""),
        ("PatientSex", b"male", RepairRule.EMPTIED, ""),
        ("PatientSex", b"f", RepairRule.UPPERCASED, "F"),
        ("AccessionNumber", b"A" * 17, RepairRule.EMPTIED, ""),
        ("StudyDescription", b"x" * 65, RepairRule.DROPPED, None),
        ("PatientID", b"12\x0134", RepairRule.EMPTIED, ""),
        ("StudyInstanceUID", b"1.2.03.4", RepairRule.KEPT, "1.2.03.4"),
        ("IrradiationEventUID", b"1.2.03.4", RepairRule.DROPPED, None),
        ("PatientID", None, RepairRule.EMPTIED, ""),
    ],
)
def test_a_non_conforming_value_is_repaired_emptied_or_dropped(
    keyword: str, sent: bytes | None, rule: RepairRule, kept: str | None
) -> None:
    dataset = header(keyword, sent)
    repairs = sanitise_sources([dataset])
    assert [(r.attribute, r.rule) for r in repairs] == [(keyword, rule)]
    if kept is None:
        assert keyword not in dataset
    else:
        assert str(dataset[keyword].value) == kept
    if sent:
        assert sent.decode("latin-1") not in repairs[0].reason  # attribute and rule, never the value


def test_conforming_headers_of_every_real_series_need_no_repair() -> None:
    for folder in (MPRAGE, CT_HEAD, CT_CHEST):
        files = [path for path in sorted(Path(folder).iterdir()) if not path.name.endswith(".txt")][:5]
        assert sanitise_sources([pydicom.dcmread(path) for path in files]) == [], folder.name


def test_a_repair_found_on_every_slice_is_recorded_once() -> None:
    datasets = [header("StudyDate", b"***") for _ in range(3)]
    assert len(sanitise_sources(datasets)) == 1


def test_a_value_seen_conforming_on_one_slice_does_not_hide_a_bad_value_on_the_next() -> None:
    """Values already found conforming are not checked again; a different value on a later slice is."""
    datasets = [header("StudyDate", b"20210902"), header("StudyDate", b"***"), header("StudyDate", b"***")]
    repairs = sanitise_sources(datasets)
    assert [(r.attribute, r.rule) for r in repairs] == [("StudyDate", RepairRule.EMPTIED)]
    assert [str(ds.StudyDate) for ds in datasets] == ["20210902", "", ""]  # each slice repaired


def _with_value_map(label: bytes) -> Dataset:
    """The first slice with a value map whose LUT Label (SH, at most 16 characters) is ``label``,
    read back as a worker reads a slice header: the sequence, of defined length, still as bytes."""
    dataset = pydicom.dcmread(FIRST_SLICE, stop_before_pixels=True)
    dataset.RealWorldValueMappingSequence[0].LUTLabel = label.decode("latin-1")
    dataset["RealWorldValueMappingSequence"].is_undefined_length = False
    read_back = reread(dataset)
    assert isinstance(read_back.get_item(Tag("RealWorldValueMappingSequence")), RawDataElement)
    return read_back


def test_a_sequence_seen_conforming_is_not_read_again_and_a_bad_one_is_repaired_on_every_slice() -> None:
    """A sequence's bytes seen conforming on one slice are not parsed again on the next (a Philips
    value map on each of 170 slices); a sequence holding a bad value is repaired wherever it is."""
    good = [_with_value_map(b"Philips") for _ in range(3)]
    assert sanitise_sources(good) == []
    assert isinstance(good[2].get_item(Tag("RealWorldValueMappingSequence")), RawDataElement)

    mixed = [_with_value_map(b"Philips"), _with_value_map(b"x" * 17), _with_value_map(b"x" * 17)]
    repairs = sanitise_sources(mixed)
    assert [(r.attribute, r.rule) for r in repairs] == [("LUTLabel", RepairRule.DROPPED)]
    assert [item.RealWorldValueMappingSequence[0].get("LUTLabel") for item in mixed] == [
        "Philips",
        None,
        None,
    ]
