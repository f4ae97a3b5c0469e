"""Every operator on real headers, on missing attributes, and on odd values such as ``***``."""

from __future__ import annotations

import copy
from typing import Any

import pydicom
import pytest
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.tag import Tag

from radrouter.config.rules import Condition, Match
from radrouter.router.route.conditions import evaluate_condition, evaluate_match
from radrouter.router.route.header import SeriesHeader
from tests.services import CT_HEAD, DATA, MPRAGE

LIDC = sorted((DATA / "ct-chest-lidc0001-partial").glob("*.dcm"))[0]


def series(dataset: Dataset, calling_ae: str = "MODALITY") -> SeriesHeader:
    return SeriesHeader(str(dataset.SeriesInstanceUID), dataset, calling_ae, "RADROUTER")


@pytest.fixture(scope="module")
def mr() -> SeriesHeader:
    return series(pydicom.dcmread(sorted(MPRAGE.glob("*.dcm"))[0], stop_before_pixels=True))


@pytest.fixture(scope="module")
def ct() -> SeriesHeader:
    return series(pydicom.dcmread(CT_HEAD / "I10", stop_before_pixels=True))


@pytest.fixture(scope="module")
def odd(ct: SeriesHeader) -> SeriesHeader:
    """The head CT with ``***`` where a modality put junk in a date, an age and a thickness."""
    dataset = copy.deepcopy(ct.dataset)
    for keyword, vr in (("StudyDate", "DA"), ("PatientAge", "AS"), ("SliceThickness", "DS")):
        tag = Tag(keyword)
        dataset[tag] = RawDataElement(tag, vr, 4, b"*** ", 0, False, True)  # as read from a file
    return series(dataset)


def holds(match: dict[str, Any], header: SeriesHeader) -> bool:
    return evaluate_match(Match.model_validate(match), header, 20.0).held


def why(match: dict[str, Any], header: SeriesHeader) -> str:
    return evaluate_match(Match.model_validate(match), header, 20.0).reason


def test_equality_ignores_case_and_padding(mr: SeriesHeader) -> None:
    assert holds({"SeriesDescription": " adni_sag3d MPRAGE "}, mr)
    assert not holds({"SeriesDescription": "adni_sag3d"}, mr)
    assert why({"Modality": "CT"}, mr) == "Modality = 'MR' is not 'CT'"


def test_numeric_equality_and_in(ct: SeriesHeader) -> None:
    assert holds({"SliceThickness": 5}, ct) and holds({"SliceThickness": [2.5, 5.0]}, ct)
    assert not holds({"SliceThickness": {"in": [1, 2.5]}}, ct)


def test_regex_is_searched_and_case_sensitive_unless_asked(mr: SeriesHeader) -> None:
    assert holds({"SeriesDescription": {"regex": "(?i)mprage"}}, mr)
    assert not holds({"SeriesDescription": {"regex": "mprage"}}, mr)
    assert "does not match /mprage/" in why({"SeriesDescription": {"regex": "mprage"}}, mr)


def test_range_bounds_are_inclusive_and_open_ends_work(ct: SeriesHeader) -> None:
    assert holds({"SliceThickness": {"range": [5, 5]}}, ct)
    assert holds({"SliceThickness": {"range": [None, 6]}}, ct)
    assert not holds({"SliceThickness": {"range": [5.01, None]}}, ct)
    assert why({"SliceThickness": {"range": [0, 2.5]}}, ct) == "SliceThickness = '5' is outside [0, 2.5]"


def test_ages_compare_in_years_and_dates_as_numbers(mr: SeriesHeader, ct: SeriesHeader) -> None:
    assert mr.dataset.PatientAge == "041Y"
    assert holds({"PatientAge": {"range": [18, 65]}}, mr)
    assert not holds({"PatientAge": {"range": [None, 17]}}, mr)
    months = copy.deepcopy(mr.dataset)
    months.PatientAge = "006M"
    assert holds({"PatientAge": {"range": [None, 1]}}, series(months))
    assert holds({"StudyDate": {"range": [20150101, 20151231]}}, ct)  # 20150206


def test_an_age_without_unit_is_read_as_years() -> None:
    nih = pydicom.dcmread(next((DATA / "cxr").glob("1.3.6.1.4.1.11129.*.dcm")), stop_before_pixels=True)
    assert nih.PatientAge == "81"
    assert holds({"PatientAge": {"range": [65, None]}}, series(nih))


@pytest.mark.parametrize("keyword", ["StudyDate", "PatientAge", "SliceThickness"])
def test_odd_values_fail_numeric_tests_with_a_reason_and_never_raise(odd: SeriesHeader, keyword: str) -> None:
    assert not holds({keyword: {"range": [0, None]}}, odd)
    assert why({keyword: {"range": [0, None]}}, odd) == f"{keyword} = '***' is not a number"
    assert not holds({keyword: 5}, odd)
    assert holds({keyword: "***"}, odd)  # the raw text is still there to compare
    assert holds({keyword: {"regex": r"^\*+$"}}, odd)
    assert holds({keyword: {"exists": True}}, odd)


@pytest.mark.parametrize(
    "condition",
    ["3D", {"regex": "3D"}, {"in": ["2D", "3D"]}, {"range": [0, 10]}, {"exists": True}, {"missing": False}],
)
def test_a_missing_attribute_does_not_match_and_says_so(ct: SeriesHeader, condition: Any) -> None:
    assert not holds({"MRAcquisitionType": condition}, ct)
    assert why({"MRAcquisitionType": condition}, ct) == "MRAcquisitionType is missing"


def test_exists_and_missing(mr: SeriesHeader, ct: SeriesHeader) -> None:
    assert mr.dataset.ContrastBolusAgent == ""  # present but empty counts as missing
    assert holds({"ContrastBolusAgent": {"missing": True}}, mr)
    assert holds({"ContrastBolusAgent": {"exists": False}}, mr)
    assert holds({"MRAcquisitionType": {"missing": True}}, ct)
    assert not holds({"MRAcquisitionType": {"missing": True}}, mr)
    assert holds({"MRAcquisitionType": {"exists": True}}, mr)


def test_multi_valued_attributes_match_on_any_value(mr: SeriesHeader, ct: SeriesHeader) -> None:
    assert holds({"ImageType": "m_ffe"}, mr)
    assert not holds({"ImageType": "m_ffe"}, ct)
    assert holds({"ImageType": {"regex": "^AXIAL$"}}, ct)


def test_not_negates_and_holds_when_the_attribute_is_missing(mr: SeriesHeader, ct: SeriesHeader) -> None:
    not_3d = {"not": {"MRAcquisitionType": "3D"}}
    assert holds(not_3d, ct) and not holds(not_3d, mr)
    assert why(not_3d, mr).startswith("not (MRAcquisitionType = '3D' equals '3D')")


def test_all_and_any_groups(mr: SeriesHeader, ct: SeriesHeader) -> None:
    brain = {
        "BodyPartExamined": "BRAIN",
        "any": [
            {"Modality": "MR", "MRAcquisitionType": "3D"},
            {"Modality": "CT", "SliceThickness": {"range": [None, 5]}},
        ],
    }
    assert holds(brain, mr) and holds(brain, ct)
    thin = {"all": [{"Modality": "CT"}, {"SliceThickness": {"range": [None, 2]}}]}
    assert not holds(thin, ct)
    assert why(thin, ct) == "SliceThickness = '5' is outside [-inf, 2]"
    neither = {"any": [{"Modality": "PT"}, {"Modality": "NM"}]}
    assert why(neither, ct) == "none of any: Modality = 'CT' is not 'PT' | Modality = 'CT' is not 'NM'"


def test_derived_keys(mr: SeriesHeader, ct: SeriesHeader) -> None:
    assert holds({"orientation": "axial", "kind": "image", "slices": {"range": [1, None]}}, ct)
    assert holds({"orientation": {"in": ["sagittal", "oblique"]}}, mr)
    assert holds({"calling_ae": "modality", "called_ae": "RADROUTER"}, mr)
    assert why({"calling_ae": "X"}, series(ct.dataset, calling_ae="")) == "calling_ae is missing"


def test_identifying_values_are_never_shown(mr: SeriesHeader) -> None:
    reason = evaluate_condition(
        "PatientID", Condition.model_validate("nobody"), [str(mr.dataset.PatientID)]
    ).reason
    assert reason == "PatientID = (value hidden) is not 'nobody'"
    assert str(mr.dataset.PatientID) not in reason


def test_a_lidc_header_with_an_empty_age_does_not_match_an_age_range() -> None:
    lidc = pydicom.dcmread(LIDC, stop_before_pixels=True)
    assert lidc.PatientAge == ""
    assert why({"PatientAge": {"range": [18, None]}}, series(lidc)) == "PatientAge is missing"
