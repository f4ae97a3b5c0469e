"""The SEG built from frames in the source images' order is the SEG highdicom builds from the volume
(matching each plane to its source image itself), on real series in any order; where the frames do
not lie one on each source slice, the volume goes to highdicom as before."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import pytest
from pydicom.uid import generate_uid

from radrouter.inference.models.brain_extraction import BrainExtraction
from radrouter.inference.models.ct_lung import CTLung
from radrouter.inference.pipeline import Prediction, SegmentSpec
from radrouter.inference.results import seg
from radrouter.inference.results.content import ResultIdentity
from radrouter.inference.stored_series import load_series, read_stored_series
from tests.inference.variants import comparable
from tests.services import CT_CHEST, MPRAGE


def _labels(volume: Any, segments: tuple[SegmentSpec, ...]) -> Prediction:
    """A label map from the image itself: brighter thirds get the higher labels."""
    labels = np.zeros(volume.shape, np.uint8)
    for number, spec in enumerate(segments, start=1):
        labels[volume.array > np.percentile(volume.array, 100 - 30 * number / len(segments))] = spec.label
    return Prediction(volume.with_array(labels), 0.0)


@pytest.mark.parametrize(
    ("series", "segments", "shuffled"),
    [
        (MPRAGE, BrainExtraction.segments, False),
        (CT_CHEST, CTLung.segments, False),
        (CT_CHEST, CTLung.segments, True),
    ],
    ids=["mprage-binary", "ct-labelmap", "ct-labelmap-slices-in-any-order"],
)
def test_the_seg_from_frames_is_the_seg_from_the_volume(
    series: Any, segments: tuple[SegmentSpec, ...], shuffled: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    datasets, volume = load_series(read_stored_series(sorted(series.glob("*.dcm"))))
    if shuffled:
        datasets = random.Random(7).sample(list(datasets), len(datasets))
    prediction = _labels(volume, segments)
    identity = ResultIdentity(str(generate_uid()), "p", "1", 90)

    frames = seg.frames_on_sources(datasets, prediction.labelmap)
    assert frames is not None and frames.shape == prediction.labelmap.shape
    from_frames = seg.build_segmentation(datasets, prediction, segments, identity)
    monkeypatch.setattr(seg, "frames_on_sources", lambda *_: None)  # highdicom matches the planes
    from_volume = seg.build_segmentation(datasets, prediction, segments, identity)

    assert from_frames.NumberOfFrames == from_volume.NumberOfFrames > 0
    assert comparable(from_frames) == comparable(from_volume)


def test_frames_off_the_source_slices_go_to_highdicom_as_a_volume() -> None:
    datasets, volume = load_series(read_stored_series(sorted(CT_CHEST.glob("*.dcm"))))
    labels = volume.with_array(np.zeros(volume.shape, np.uint8))
    assert seg.frames_on_sources(datasets, labels) is not None
    # Half a slice along the normal: no frame lies on a source slice.
    half_slice = volume.affine.copy()
    half_slice[:3, 3] += volume.affine[:3, 0] * 0.5
    shifted = type(labels)(labels.array, half_slice, labels.coordinate_system, labels.frame_of_reference_uid)
    assert seg.frames_on_sources(datasets, shifted) is None
    # One source slice more or fewer than the label map's: not one frame per source image.
    assert seg.frames_on_sources(datasets[:-1], labels) is None
    assert seg.frames_on_sources(datasets, labels[1:]) is None
