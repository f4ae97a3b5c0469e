"""The PS3.15 Basic Profile and its options, on a real CT slice with distinctive PHI put in."""

from __future__ import annotations

from datetime import datetime, timedelta

import pydicom
import pytest
from pydantic import ValidationError
from pydicom import Dataset
from pydicom.uid import generate_uid

from radrouter.config.deidentification import DateHandling, Deidentification
from radrouter.config.settings import Destination
from radrouter.deid import IssuedPseudonym, deidentify, is_pseudonymous, reidentify
from radrouter.storage.index import PseudonymKind
from tests.services import CT_HEAD

KEY = "a-test-key-of-enough-length"
SLICE = sorted(p for p in CT_HEAD.iterdir() if p.name.startswith("I"))[0]
PHI = {
    "PatientName": "DOE^JANE",
    "PatientID": "MRN-4711",
    "PatientBirthDate": "19610314",
    "AccessionNumber": "ACC-0815",
    "StudyDate": "20240229",
    "ReferringPhysicianName": "HOUSE^GREGORY",
    "InstitutionName": "Saint Elsewhere",
}


def with_phi(**extra: str) -> Dataset:
    dataset = pydicom.dcmread(SLICE)
    for keyword, value in {**PHI, **extra}.items():
        setattr(dataset, keyword, value)
    dataset.add_new(0x00091010, "LO", "private, may hold anything")
    return dataset


def options(**changes: object) -> Deidentification:
    return Deidentification.model_validate({"key": KEY, **changes})


def as_lookup(issued: list[IssuedPseudonym]) -> object:
    table = {p.pseudonym: p for p in issued}
    return lambda values: {v: table[v] for v in values if v in table}


def test_the_basic_profile_removes_identity_and_keeps_pixels() -> None:
    original, dataset = with_phi(), with_phi()
    deidentify(dataset, options(dates="remove"))
    text = str(dataset)
    for value in PHI.values():
        assert value not in text
    assert is_pseudonymous(dataset.PatientID) and dataset.PatientName == dataset.PatientID
    assert (
        dataset.get("PatientBirthDate", "") in ("", "00010101") and dataset.get("AccessionNumber", "") == ""
    )
    assert (0x0009, 0x1010) not in dataset
    assert dataset.StudyDate in ("", "00010101")
    assert dataset.PatientIdentityRemoved == "YES"
    assert [c.CodeValue for c in dataset.DeidentificationMethodCodeSequence] == ["113100"]
    assert dataset.PixelData == original.PixelData
    assert dataset.SOPClassUID == original.SOPClassUID  # a well-known UID is never remapped


def test_the_same_patient_gets_the_same_pseudonym_and_uids_across_sends() -> None:
    first, second, other = with_phi(), with_phi(), with_phi(PatientID="MRN-9999")
    deidentify(first, options())
    deidentify(second, options())
    deidentify(other, options())
    assert first.PatientID == second.PatientID != other.PatientID
    assert first.SOPInstanceUID == second.SOPInstanceUID
    assert deidentify(with_phi(), options(key="another-key-of-enough-length")) != deidentify(
        with_phi(), options()
    )


def test_uids_are_remapped_under_2_25_or_retained() -> None:
    original, remapped, retained = with_phi(), with_phi(), with_phi()
    issued = deidentify(remapped, options())
    for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "FrameOfReferenceUID"):
        assert remapped[keyword].value != original[keyword].value and remapped[keyword].value.startswith(
            "2.25."
        )
        assert len(remapped[keyword].value) <= 64
    assert remapped.file_meta.MediaStorageSOPInstanceUID == remapped.SOPInstanceUID
    study = next(p for p in issued if p.kind == PseudonymKind.STUDY)
    assert (study.pseudonym, study.original) == (remapped.StudyInstanceUID, original.StudyInstanceUID)
    assert study.identity["AccessionNumber"] == "ACC-0815"
    deidentify(retained, options(retain_uids=True))
    assert retained.SOPInstanceUID == original.SOPInstanceUID
    assert "113110" in [c.CodeValue for c in retained.DeidentificationMethodCodeSequence]


@pytest.mark.parametrize(
    ("dates", "expected"),
    [(DateHandling.KEEP, "20240229"), (DateHandling.SHIFT, None), (DateHandling.REMOVE, "")],
)
def test_dates_are_kept_shifted_per_patient_or_removed(dates: DateHandling, expected: str | None) -> None:
    dataset, again = with_phi(ContentDate="20240301"), with_phi(ContentDate="20240301")
    deidentify(dataset, options(dates=dates, max_date_shift_days=30))
    if expected is None:
        study_date, content_date = dataset.StudyDate, dataset.ContentDate
        assert "20240130" <= study_date < "20240229"
        # one offset for the whole patient: the interval between two dates is kept (2024 is a leap year)
        interval = datetime.strptime(content_date, "%Y%m%d") - datetime.strptime(study_date, "%Y%m%d")
        assert interval == timedelta(days=1)
        deidentify(again, options(dates=dates, max_date_shift_days=30))
        assert again.StudyDate == study_date
    else:
        assert dataset.StudyDate in (expected, "00010101")
    assert dataset.get("PatientBirthDate") in ("", "00010101")  # never kept nor shifted
    assert dataset.StudyTime == with_phi().StudyTime or dates == DateHandling.REMOVE


def test_reidentification_restores_identifiers_uids_and_study_attributes() -> None:
    original, returned = with_phi(), with_phi()
    issued = deidentify(returned, options())
    # a derived object made outside: a new instance referencing the pseudonymous study and image
    returned.SOPInstanceUID = generate_uid()
    returned.SeriesInstanceUID = generate_uid()
    assert reidentify(returned, as_lookup(issued))  # type: ignore[arg-type]
    for keyword in ("PatientName", "PatientID", "PatientBirthDate", "AccessionNumber", "StudyDate"):
        assert returned[keyword].value == original[keyword].value, keyword
    assert returned.StudyInstanceUID == original.StudyInstanceUID
    assert returned.FrameOfReferenceUID == original.FrameOfReferenceUID
    assert "PatientIdentityRemoved" not in returned


def test_an_unknown_pseudonym_or_a_real_patient_is_left_alone() -> None:
    dataset = with_phi()
    assert not reidentify(dataset, as_lookup([]))  # type: ignore[arg-type]
    deidentify(dataset, options())
    assert not reidentify(dataset, as_lookup([]))  # type: ignore[arg-type]
    assert is_pseudonymous(dataset.PatientID)


def test_an_external_destination_needs_a_key() -> None:
    with pytest.raises(ValidationError, match="needs a `deidentify` block"):
        Destination(host="h", port=104, ae_title="CLOUD", external=True)
    with pytest.raises(ValidationError, match="at least 16"):
        Destination.model_validate(
            {"host": "h", "port": 104, "ae_title": "CLOUD", "external": True, "deidentify": {"key": "short"}}
        )
    assert (
        Destination.model_validate(
            {"host": "h", "port": 104, "ae_title": "CLOUD", "external": True, "deidentify": {"key": KEY}}
        ).deidentify.key.get_secret_value()
        == KEY
    )  # type: ignore[union-attr]
    assert KEY not in repr(options())
