"""Enhanced multi-frame input (one instance = the whole series) on the same path as classic slices,
built from real pixels with highdicom's legacy converters."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from radrouter.inference.models.brain_extraction import BrainExtraction
from radrouter.inference.results.build import build_results
from radrouter.inference.results.content import ResultIdentity
from radrouter.inference.volume import InconsistentSeries, load_volume, read_series
from tests.inference.variants import enhanced_copy, threshold_prediction
from tests.services import CT_HEAD, MPRAGE


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.endswith(".txt"))


@pytest.fixture(scope="module")
def enhanced_mr(tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    return pydicom.dcmread(enhanced_copy(_images(MPRAGE), tmp_path_factory.mktemp("mr") / "mr.dcm"))


@pytest.mark.parametrize("folder", [MPRAGE, CT_HEAD], ids=["mprage", "head-ct"])
def test_an_enhanced_copy_loads_as_the_same_volume_as_the_classic_series(
    folder: Path, tmp_path: Path
) -> None:
    classic = load_volume(read_series(_images(folder)))
    enhanced = load_volume(read_series([enhanced_copy(_images(folder), tmp_path / "enhanced.dcm")]))
    assert enhanced.spatial_shape == classic.spatial_shape
    np.testing.assert_allclose(enhanced.affine, classic.affine, atol=1e-4)
    np.testing.assert_array_equal(enhanced.array, classic.array)  # rescale from the functional groups


def test_the_seg_references_the_source_frames_and_the_sr_the_instance(enhanced_mr: Dataset) -> None:
    volume = load_volume([enhanced_mr])
    identity = ResultIdentity(str(generate_uid()), "brain-extraction", "test", 9100)
    built = build_results([enhanced_mr], threshold_prediction(volume), BrainExtraction(), identity)
    referenced = set()
    for frame in built.segmentation.PerFrameFunctionalGroupsSequence:
        source = frame.DerivationImageSequence[0].SourceImageSequence[0]
        assert source.ReferencedSOPInstanceUID == enhanced_mr.SOPInstanceUID
        referenced.add(int(source.ReferencedFrameNumber))
    assert referenced <= set(range(1, int(enhanced_mr.NumberOfFrames) + 1)) and len(referenced) > 1
    evidence = built.report.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence
    instances = {
        item.ReferencedSOPInstanceUID for series in evidence for item in series.ReferencedSOPSequence
    }
    assert enhanced_mr.SOPInstanceUID in instances


def test_an_instance_with_two_stacks_is_refused_with_the_reason(enhanced_mr: Dataset) -> None:
    two_stacks = copy.deepcopy(enhanced_mr)
    for number, frame in enumerate(two_stacks.PerFrameFunctionalGroupsSequence):
        frame.FrameContentSequence[0].StackID = "1" if number % 2 else "2"
    with pytest.raises(InconsistentSeries, match="holds 2 stacks"):
        load_volume([two_stacks])


def test_frames_sharing_a_position_are_refused_with_the_reason(enhanced_mr: Dataset) -> None:
    echoes = copy.deepcopy(enhanced_mr)
    frames = echoes.PerFrameFunctionalGroupsSequence
    frames[1].PlanePositionSequence = copy.deepcopy(frames[0].PlanePositionSequence)
    with pytest.raises(InconsistentSeries, match="several frames per position"):
        load_volume([echoes])


def test_a_series_mixing_multi_frame_and_classic_instances_is_refused(enhanced_mr: Dataset) -> None:
    with pytest.raises(InconsistentSeries, match="1 multi-frame instance"):
        load_volume([enhanced_mr, *read_series(_images(MPRAGE)[:2])])
