"""What rules derive from a header: the kind of series, its plane, its number of images."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from radrouter.config.rules import Orientation, SeriesKind
from radrouter.router.route.header import (
    SeriesHeader,
    headers_from_folder,
    orientation,
    series_kind,
    values_of,
)
from tests.inference.variants import enhanced_copy
from tests.router.synthetic import SECONDARY_CAPTURE, dose_report, localizer
from tests.services import CT_HEAD, DATA, MPRAGE

CXR_CR = DATA / "cxr" / "RG1_J2KI.dcm"
CXR_SC = next((DATA / "cxr").glob("1.3.6.1.4.1.11129.*.dcm"))


def header(path: Path) -> Dataset:
    return pydicom.dcmread(path, stop_before_pixels=True)


@pytest.fixture(scope="module")
def ct() -> Dataset:
    return header(CT_HEAD / "I10")


def test_real_images_are_images(ct: Dataset) -> None:
    assert series_kind(ct) is SeriesKind.IMAGE
    assert series_kind(header(next(MPRAGE.glob("*.dcm")))) is SeriesKind.IMAGE
    assert series_kind(header(CXR_CR)) is SeriesKind.IMAGE


def test_a_secondary_capture_is_told_apart() -> None:
    assert series_kind(header(CXR_SC)) is SeriesKind.SECONDARY_CAPTURE


def test_a_localizer_is_told_apart_by_image_type_or_description(ct: Dataset) -> None:
    assert series_kind(localizer(CT_HEAD / "I10", generate_uid())[0]) is SeriesKind.LOCALIZER
    scout = copy.deepcopy(ct)
    scout.SeriesDescription = "Topogram 0.6 T20s"
    assert series_kind(scout) is SeriesKind.LOCALIZER


def test_dose_reports_and_dose_screens_are_told_apart(ct: Dataset) -> None:
    assert series_kind(dose_report(ct, generate_uid())) is SeriesKind.DOSE_REPORT
    screen = copy.deepcopy(ct)
    screen.SOPClassUID, screen.SeriesDescription = SECONDARY_CAPTURE, "Dose Info"
    assert series_kind(screen) is SeriesKind.DOSE_REPORT


def test_other_non_image_objects(ct: Dataset) -> None:
    report = dose_report(ct, generate_uid())
    report.SOPClassUID = "1.2.840.10008.5.1.4.1.1.88.34"  # Comprehensive 3D SR
    assert series_kind(report) is SeriesKind.OTHER


def test_planes_of_real_series(ct: Dataset) -> None:
    assert orientation(ct, 20) is Orientation.AXIAL
    mprage = header(next(MPRAGE.glob("*.dcm")))
    assert orientation(mprage, 20) is Orientation.SAGITTAL  # slightly oblique (a few degrees)
    assert orientation(mprage, 1) is Orientation.OBLIQUE
    assert orientation(localizer(CT_HEAD / "I10", generate_uid())[0], 20) is Orientation.CORONAL


@pytest.mark.parametrize(
    ("tilt", "tolerance", "plane"), [(10, 20, "axial"), (30, 20, "oblique"), (30, 35, "axial")]
)
def test_a_gantry_tilt_is_axial_within_the_tolerance(
    ct: Dataset, tilt: float, tolerance: float, plane: str
) -> None:
    tilted = copy.deepcopy(ct)
    tilted.ImageOrientationPatient = [1, 0, 0, 0, math.cos(math.radians(tilt)), math.sin(math.radians(tilt))]
    assert orientation(tilted, tolerance) == plane


@pytest.mark.parametrize("value", [None, ["***"] * 6, ["1", "0", "0"], ["0"] * 6])
def test_an_unusable_orientation_is_unknown_not_an_error(ct: Dataset, value: object) -> None:
    odd = copy.deepcopy(ct)
    del odd.ImageOrientationPatient
    if value is not None:
        odd.add_new("ImageOrientationPatient", "LO", value)
    assert orientation(odd, 20) is None


def test_orientation_of_an_enhanced_multiframe_comes_from_its_functional_groups(ct: Dataset) -> None:
    plane = Dataset()
    plane.ImageOrientationPatient = [0, 1, 0, 0, 0, -1]
    shared = Dataset()
    shared.PlaneOrientationSequence = [plane]
    enhanced = copy.deepcopy(ct)
    del enhanced.ImageOrientationPatient
    enhanced.SharedFunctionalGroupsSequence = [shared]
    enhanced.NumberOfFrames = 120
    assert orientation(enhanced, 20) is Orientation.SAGITTAL
    assert SeriesHeader("1.2", enhanced, instances=1).slices == 120


def test_a_folder_gives_one_header_per_series_with_its_instance_count(tmp_path: Path) -> None:
    headers = headers_from_folder(DATA / "cxr", "MODALITY", "RADROUTER")
    assert len(headers) == 2  # the licences and provenance files are skipped
    headers = headers_from_folder(CT_HEAD, "MODALITY", "RADROUTER")
    assert [(h.slices, h.calling_ae, h.called_ae) for h in headers] == [(28, "MODALITY", "RADROUTER")]


def test_an_enhanced_instance_is_routed_on_what_its_functional_groups_hold(tmp_path: Path) -> None:
    """MRAcquisitionType and SliceThickness sit in a functional group macro of an enhanced MR, not at
    the top level; a rule written for classic slices matches both."""
    sources = sorted(MPRAGE.glob("*.dcm"))[:8]
    enhanced = header(enhanced_copy(sources, tmp_path / "enhanced.dcm"))
    classic = header(sources[0])
    assert "MRAcquisitionType" not in enhanced
    for key in ("MRAcquisitionType", "SliceThickness", "Modality"):
        found = values_of(SeriesHeader("1.2", enhanced, instances=1), key, 20.0)
        assert found == values_of(SeriesHeader("1.2", classic, instances=8), key, 20.0), key
