"""The series read once (headers without private groups, pixel values as stored) gives exactly what
the full path gives: the same volume on every real series, the same SEG, SR and key images, read
from the files alone or with the slice records the SCP keeps in the index; anything not plain
(compressed, enhanced multi-frame) takes the full path."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.filereader import read_file_meta_info
from pydicom.tag import Tag
from pydicom.uid import UID, RLELossless

from radrouter.inference.models.brain_extraction import BrainExtraction
from radrouter.inference.results.build import build_results
from radrouter.inference.results.content import ResultIdentity
from radrouter.inference.results.key_images import KeyImageRequest
from radrouter.inference.stored_series import load_series, read_stored_series, stored_volume
from radrouter.inference.volume import load_volume, read_series
from radrouter.router.receive.header import index_header
from radrouter.storage.slices import SliceRecord, decode_slice_header, slice_record
from tests.inference.variants import enhanced_copy, threshold_prediction
from tests.services import CT_CHEST, CT_HEAD, DATA, MPRAGE

VALUE_MAP = Tag("RealWorldValueMappingSequence")
SERIES = [MPRAGE, CT_HEAD, CT_CHEST, DATA / "ct-abdomen-3slice-with-seg" / "ct"]


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix not in (".txt", ".md"))


def slice_records(paths: list[Path]) -> list[SliceRecord | None]:
    """What the SCP keeps of each file in the index, from the same header reader."""
    records = []
    for path in paths:
        syntax = UID(read_file_meta_info(path).TransferSyntaxUID)
        header, pixel_data_at = index_header(path, syntax)
        records.append(slice_record(header, syntax, pixel_data_at))
    return records


def _read(folder: Path, with_records: bool) -> Any:
    paths = _images(folder)
    return read_stored_series(paths, slice_records(paths) if with_records else None)


@pytest.mark.parametrize("with_records", [False, True], ids=["files", "slice-records"])
@pytest.mark.parametrize("folder", SERIES, ids=[f.name for f in SERIES])
def test_the_volume_from_stored_pixels_equals_the_full_path(folder: Path, with_records: bool) -> None:
    full = load_volume(read_series(_images(folder)))
    stored = _read(folder, with_records)
    assert all(values is not None for values in stored.pixels)  # every real slice is plain
    # From the records, only the first header is the file's: the others hold no patient data.
    assert ("PatientID" in stored.headers[-1]) is not with_records
    fast = stored_volume(stored)
    assert fast is not None
    assert fast.array.dtype == full.array.dtype == np.float32
    np.testing.assert_array_equal(fast.array, full.array)
    np.testing.assert_array_equal(fast.affine, full.affine)
    assert fast.frame_of_reference_uid == full.frame_of_reference_uid
    assert not any(element.tag.is_private for ds in stored.headers for element in ds)


#: What differs between two builds of the same result: the clock, and highdicom's random UIDs.
_PER_BUILD = {"ContentDate", "ContentTime", "InstanceCreationDate", "InstanceCreationTime"}
_PER_BUILD |= {
    "ContributionDateTime",
    "DimensionOrganizationUID",
    "DateOfSecondaryCapture",
    "TimeOfSecondaryCapture",
}


def _without_timestamps(dataset: Dataset) -> Dataset:
    for element in list(dataset):
        if element.keyword in _PER_BUILD:
            del dataset[element.tag]
        elif element.VR == "SQ":
            for item in element.value:
                _without_timestamps(item)
    return dataset


@pytest.mark.parametrize("folder", [MPRAGE, CT_CHEST], ids=["mprage", "ct-chest"])
def test_the_results_from_the_headers_equal_those_from_the_full_datasets(folder: Path) -> None:
    """The results copy public attributes only, of the other slices only what the slice records
    keep: leaving the private groups, or all but the slice header, unread changes nothing."""
    full = read_series(_images(folder))
    headers, volume = load_series(_read(folder, with_records=False))
    sliced, _ = load_series(_read(folder, with_records=True))
    prediction = threshold_prediction(volume)
    pipeline = BrainExtraction()
    identity = ResultIdentity("series/brain-extraction/1", pipeline.name, pipeline.version, 9000)
    built = [
        build_results(datasets, prediction, pipeline, identity, key_images=KeyImageRequest(volume, 2, 4))
        for datasets in (full, headers, sliced)
    ]
    assert built[0].key_images and built[0].repairs == built[1].repairs == built[2].repairs
    for kind in ("segmentation", "report", "key_objects"):
        first, *others = (_without_timestamps(getattr(b, kind)) for b in built)
        assert all(first == other for other in others), kind
    for images in zip(*(b.key_images for b in built), strict=True):
        first, *others = (_without_timestamps(image) for image in images)
        assert all(first == other for other in others), "key images"


def test_a_slice_whose_pixel_data_is_not_where_its_record_says_is_read_from_its_file() -> None:
    paths = _images(CT_CHEST)
    records = slice_records(paths)
    moved = records[3]
    assert moved is not None and moved.pixel_data_at is not None
    records[3] = SliceRecord(moved.header, moved.transfer_syntax_uid, moved.pixel_data_at - 2)
    records[5] = None  # no record: an instance indexed before records were kept
    stored = read_stored_series(paths, records)
    assert "PatientID" in stored.headers[3] and "PatientID" in stored.headers[5]  # read from the file
    assert "PatientID" not in stored.headers[4]
    fast = stored_volume(stored)
    assert fast is not None
    np.testing.assert_array_equal(fast.array, load_volume(read_series(paths)).array)


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


def test_a_sequence_of_undefined_length_is_kept_with_its_length() -> None:
    """A sequence sent with undefined length (the MPRAGE files' value map) is kept in the slice header
    with its length: a worker reads it back unparsed and parses it only if it asks for it."""
    paths = _images(MPRAGE)[:2]
    sent = pydicom.dcmread(paths[1], stop_before_pixels=True)
    assert sent[VALUE_MAP].is_undefined_length
    record = slice_records(paths)[1]
    assert record is not None
    header = decode_slice_header(record)
    assert isinstance(header.get_item(VALUE_MAP), RawDataElement)
    assert header.RealWorldValueMappingSequence == sent.RealWorldValueMappingSequence


def _mprage_slices(target: Path, change: Callable[[int, Dataset], None], count: int = 6) -> list[Path]:
    """The first ``count`` MPRAGE slices, each changed by ``change(number, dataset)``, as files."""
    paths = []
    for number, source in enumerate(_images(MPRAGE)[:count]):
        dataset = pydicom.dcmread(source)
        change(number, dataset)
        dataset.save_as(target / source.name)
        paths.append(target / source.name)
    return paths


@pytest.mark.parametrize("with_records", [False, True], ids=["files", "slice-records"])
def test_each_slice_keeps_its_own_value_map(tmp_path: Path, with_records: bool) -> None:
    """A value map is read once for the slices that encode it alike, and each slice's own is applied."""

    def own_slope(number: int, dataset: Dataset) -> None:
        if number in (2, 3):
            dataset.RealWorldValueMappingSequence[0].RealWorldValueSlope = 1.5 + number

    paths = _mprage_slices(tmp_path, own_slope)
    fast = stored_volume(read_stored_series(paths, slice_records(paths) if with_records else None))
    assert fast is not None
    full = load_volume(read_series(paths))
    np.testing.assert_array_equal(fast.array, full.array)
    plain = load_volume(read_series(_images(MPRAGE)[:6]))
    assert not np.array_equal(fast.array, plain.array)  # the two slices' own slopes were applied


@pytest.mark.parametrize("with_records", [False, True], ids=["files", "slice-records"])
def test_a_slice_with_values_outside_its_shared_value_map_takes_the_full_path(
    tmp_path: Path, with_records: bool
) -> None:
    def past_the_map(number: int, dataset: Dataset) -> None:
        if number == 4:
            values = dataset.pixel_array.copy()
            values[0, 0] = dataset.RealWorldValueMappingSequence[0].RealWorldValueLastValueMapped + 1
            dataset.PixelData = values.tobytes()

    paths = _mprage_slices(tmp_path, past_the_map)
    stored = read_stored_series(paths, slice_records(paths) if with_records else None)
    assert all(values is not None for values in stored.pixels)
    assert stored_volume(stored) is None
