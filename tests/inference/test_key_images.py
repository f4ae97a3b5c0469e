"""Key images for SEG-blind viewers, built from the real MPRAGE: valid Secondary Captures whose
burned-in outlines are the boundary of the SEG read back, with the legend and notice off the anatomy."""

from __future__ import annotations

from pathlib import Path

import highdicom as hd
import numpy as np
import pytest
from pydicom.uid import generate_uid

from radrouter.inference.models.brain_extraction import BrainExtraction
from radrouter.inference.pipeline import SegmentSpec
from radrouter.inference.results.build import ResultObjects, build_results
from radrouter.inference.results.content import PROCESSING_ALGORITHM, ResultIdentity
from radrouter.inference.results.key_images import KeyImageRequest, choose_slices, notice
from radrouter.inference.volume import load_volume, read_series
from tests.inference.variants import (
    dataset_bytes,
    dciodvfy_elements,
    enhanced_copy,
    reread,
    threshold_prediction,
)
from tests.services import MPRAGE

SPREAD = 2  # the default of key_images.spread_slices
JOB_KEY = str(generate_uid())


def _build(job_key: str) -> tuple[ResultObjects, list[str]]:
    datasets = read_series(sorted(p for p in MPRAGE.iterdir() if p.name.endswith(".dcm")))
    volume = load_volume(datasets)
    identity = ResultIdentity(job_key, "brain-extraction", "test", 9100)
    request = KeyImageRequest(volume, spread_slices=SPREAD, max_images=24)
    built = build_results(
        datasets, threshold_prediction(volume), BrainExtraction(), identity, key_images=request
    )
    return built, [str(ds.SOPInstanceUID) for ds in datasets]


@pytest.fixture(scope="module")
def built() -> tuple[ResultObjects, list[str]]:
    return _build(JOB_KEY)


def test_the_largest_slice_of_each_segment_and_some_spread_over_it_are_chosen() -> None:
    brain = BrainExtraction.segments[0]
    other = SegmentSpec(2, "Other", brain.category, brain.property_type)
    labels = np.zeros((12, 4, 4), dtype=np.uint8)
    labels[1:10, :2, :2] = 1
    labels[2] = 1  # the largest cross-section of segment 1
    labels[10, 0, 0] = 2
    chosen = choose_slices(labels, (brain, other), spread=2, most=24)
    assert chosen == [2, 4, 6, 10]  # 2 and 10 the largest; 4 and 6 at a third and two thirds of 1..9
    assert choose_slices(labels, (brain, other), spread=2, most=2) == [2, 10]  # the largest first


def test_key_images_are_valid_derived_secondary_captures_in_the_same_study(
    built: tuple[ResultObjects, list[str]],
) -> None:
    results, source_uids = built
    assert 1 <= len(results.key_images) <= 1 + SPREAD
    for image in results.key_images:
        assert dciodvfy_elements(dataset_bytes(image)) == set()
        assert list(image.ImageType)[:2] == ["DERIVED", "SECONDARY"]
        assert image.StudyInstanceUID == results.segmentation.StudyInstanceUID
        assert image.SeriesNumber == 9102 and image.BurnedInAnnotation == "YES"
        assert image.SourceImageSequence[0].ReferencedSOPInstanceUID in source_uids
        purposes = [
            item.PurposeOfReferenceCodeSequence[0].CodeValue for item in image.ContributingEquipmentSequence
        ]
        assert PROCESSING_ALGORITHM.value in purposes
        assert image.ImageComments == notice(ResultIdentity("", "brain-extraction", "test", 0))
    assert len({image.SeriesInstanceUID for image in results.key_images}) == 1
    assert results.key_objects is not None
    assert dciodvfy_elements(dataset_bytes(results.key_objects)) == set()
    flagged = {
        item.ReferencedSOPSequence[0].ReferencedSOPInstanceUID
        for item in results.key_objects.ContentSequence
        if "ReferencedSOPSequence" in item
    }
    assert flagged == {image.SOPInstanceUID for image in results.key_images}


def test_outlines_are_the_boundary_of_the_seg_read_back_and_nothing_else_is_drawn_over_the_slice(
    built: tuple[ResultObjects, list[str]],
) -> None:
    results, _ = built
    seg = hd.seg.Segmentation.from_dataset(reread(results.segmentation))
    colour = np.array(BrainExtraction.segments[0].color_rgb, dtype=np.uint8)
    for image in results.key_images:
        source_uid = image.SourceImageSequence[0].ReferencedSOPInstanceUID
        mask = seg.get_pixels_by_source_instance([source_uid], segment_numbers=[1])[0, :, :, 0]
        mask = mask.astype(bool)
        rows, columns = mask.shape
        pixels = image.pixel_array
        assert pixels.shape[0] > rows  # the legend and notice are in a band below the slice
        on_slice = pixels[:rows, :columns]
        drawn = np.all(on_slice == colour, axis=-1)
        padded = np.pad(mask, 1)
        outside_next = ~padded[:-2, 1:-1] | ~padded[2:, 1:-1] | ~padded[1:-1, :-2] | ~padded[1:-1, 2:]
        boundary = mask & outside_next  # in the segment, next to a pixel outside it
        assert boundary.any()
        np.testing.assert_array_equal(drawn, boundary)  # 1 pixel wide on this 256-pixel slice
        grey = on_slice[~drawn]
        assert (grey[:, 0] == grey[:, 1]).all() and (grey[:, 1] == grey[:, 2]).all()  # no text on it
        assert pixels[rows:].max() > 0  # the band holds text


def test_a_retry_writes_the_same_key_images(built: tuple[ResultObjects, list[str]]) -> None:
    again, _ = _build(JOB_KEY)
    results, _ = built
    assert [i.SOPInstanceUID for i in again.key_images] == [i.SOPInstanceUID for i in results.key_images]
    assert again.key_objects is not None and results.key_objects is not None
    assert again.key_objects.SOPInstanceUID == results.key_objects.SOPInstanceUID


def test_key_images_of_a_multiframe_source_name_the_frame_they_show(tmp_path: Path) -> None:
    enhanced = read_series([enhanced_copy(sorted(MPRAGE.glob("*.dcm")), tmp_path / "enhanced.dcm")])
    volume = load_volume(enhanced)
    identity = ResultIdentity(str(generate_uid()), "brain-extraction", "test", 9100)
    built = build_results(
        enhanced,
        threshold_prediction(volume),
        BrainExtraction(),
        identity,
        key_images=KeyImageRequest(volume, spread_slices=SPREAD, max_images=24),
    )
    seg = hd.seg.Segmentation.from_dataset(reread(built.segmentation))
    assert built.key_images
    for image in built.key_images:
        source = image.SourceImageSequence[0]
        assert source.ReferencedSOPInstanceUID == enhanced[0].SOPInstanceUID
        frame = int(source.ReferencedFrameNumber)
        assert 1 <= frame <= int(enhanced[0].NumberOfFrames)
        mask = seg.get_pixels_by_source_frame(enhanced[0].SOPInstanceUID, [frame], segment_numbers=[1])[
            0, :, :, 0
        ].astype(bool)
        colour = np.array(BrainExtraction.segments[0].color_rgb, dtype=np.uint8)
        drawn = np.all(image.pixel_array[: mask.shape[0], : mask.shape[1]] == colour, axis=-1)
        assert drawn.any() and (drawn <= mask).all()  # the outline of the segment on that frame
        assert dciodvfy_elements(dataset_bytes(image)) == set()
