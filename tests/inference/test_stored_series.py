"""The series read once (headers without private groups, pixel values as stored) gives exactly what
the full path gives: the same volume on every real series, the same SEG and SR; anything not plain
(compressed, enhanced multi-frame) takes the full path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import RLELossless

from radrouter.inference.models.brain_extraction import BrainExtraction
from radrouter.inference.results.build import build_results
from radrouter.inference.results.content import ResultIdentity
from radrouter.inference.stored_series import load_series, read_stored_series, stored_volume
from radrouter.inference.volume import load_volume, read_series
from tests.inference.variants import enhanced_copy, threshold_prediction
from tests.services import CT_CHEST, CT_HEAD, DATA, MPRAGE

SERIES = [MPRAGE, CT_HEAD, CT_CHEST, DATA / "ct-abdomen-3slice-with-seg" / "ct"]


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix not in (".txt", ".md"))


@pytest.mark.parametrize("folder", SERIES, ids=[f.name for f in SERIES])
def test_the_volume_from_stored_pixels_equals_the_full_path(folder: Path) -> None:
    full = load_volume(read_series(_images(folder)))
    stored = read_stored_series(_images(folder))
    assert all(values is not None for values in stored.pixels)  # every real slice is plain
    fast = stored_volume(stored)
    assert fast is not None
    assert fast.array.dtype == full.array.dtype == np.float32
    np.testing.assert_array_equal(fast.array, full.array)
    np.testing.assert_array_equal(fast.affine, full.affine)
    assert fast.frame_of_reference_uid == full.frame_of_reference_uid
    assert not any(element.tag.is_private for ds in stored.headers for element in ds)


#: What differs between two builds of the same result: the clock, and highdicom's random UIDs.
_PER_BUILD = {"ContentDate", "ContentTime", "InstanceCreationDate", "InstanceCreationTime"}
_PER_BUILD |= {"ContributionDateTime", "DimensionOrganizationUID"}


def _without_timestamps(dataset: Dataset) -> Dataset:
    for element in list(dataset):
        if element.keyword in _PER_BUILD:
            del dataset[element.tag]
        elif element.VR == "SQ":
            for item in element.value:
                _without_timestamps(item)
    return dataset


def test_the_seg_and_sr_from_the_headers_equal_those_from_the_full_datasets() -> None:
    """The results copy public attributes only: leaving the private groups unread changes nothing."""
    full = read_series(_images(MPRAGE))
    headers, volume = load_series(read_stored_series(_images(MPRAGE)))
    prediction = threshold_prediction(volume)
    pipeline = BrainExtraction()
    identity = ResultIdentity("series/brain-extraction/1", pipeline.name, pipeline.version, 9000)
    built = [build_results(datasets, prediction, pipeline, identity) for datasets in (full, headers)]
    assert built[0].repairs == built[1].repairs
    for kind in ("segmentation", "report"):
        first, second = (_without_timestamps(getattr(b, kind)) for b in built)
        assert first == second, kind


def test_a_compressed_series_takes_the_full_path(tmp_path: Path) -> None:
    for path in _images(CT_CHEST):
        dataset = pydicom.dcmread(path)
        dataset.compress(RLELossless)
        dataset.save_as(tmp_path / path.name)
    stored = read_stored_series(_images(tmp_path))
    assert all(values is None for values in stored.pixels)
    assert stored_volume(stored) is None
    datasets, volume = load_series(stored)
    assert "PixelData" in datasets[0]  # read whole again
    np.testing.assert_array_equal(volume.array, load_volume(read_series(_images(CT_CHEST))).array)


def test_an_enhanced_instance_takes_the_full_path(tmp_path: Path) -> None:
    path = enhanced_copy(_images(CT_HEAD), tmp_path / "enhanced.dcm")
    stored = read_stored_series([path])
    assert stored.pixels == [None]
    datasets, volume = load_series(stored)
    assert "PixelData" in datasets[0]
    np.testing.assert_array_equal(volume.array, load_volume(read_series(_images(CT_HEAD))).array)
