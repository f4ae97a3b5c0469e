"""Inconsistent series fail with a reason that names the problem (synthetic: the real MPRAGE, altered)."""

from __future__ import annotations

import copy

import pydicom
import pytest

from radrouter.inference.volume import InconsistentSeries, check_geometry, load_volume
from tests.services import MPRAGE


@pytest.fixture(scope="module")
def headers() -> list[pydicom.Dataset]:
    return [pydicom.dcmread(path, stop_before_pixels=True) for path in sorted(MPRAGE.glob("*.dcm"))[:40]]


def test_the_real_series_is_consistent(headers: list[pydicom.Dataset]) -> None:
    check_geometry(headers)


def test_mixed_orientations(headers: list[pydicom.Dataset]) -> None:
    altered = copy.deepcopy(headers)
    altered[5].ImageOrientationPatient = [1, 0, 0, 0, 0, -1]
    with pytest.raises(InconsistentSeries, match="mixed orientations: 1 of 40"):
        check_geometry(altered)


def test_duplicated_positions(headers: list[pydicom.Dataset]) -> None:
    altered = copy.deepcopy(headers)
    altered[7].ImagePositionPatient = list(altered[8].ImagePositionPatient)
    with pytest.raises(InconsistentSeries, match="duplicated positions"):
        check_geometry(altered)


def test_missing_slices(headers: list[pydicom.Dataset]) -> None:
    with pytest.raises(InconsistentSeries, match="missing slices: 1 gap"):
        check_geometry(headers[:10] + headers[13:])


def test_load_volume_refuses_before_decoding_pixels(headers: list[pydicom.Dataset]) -> None:
    with pytest.raises(InconsistentSeries):
        load_volume(headers[:10] + headers[12:])
