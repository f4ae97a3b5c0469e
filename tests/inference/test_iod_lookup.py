"""The cache on highdicom's IOD lookup is in use, and answers as highdicom does."""

from __future__ import annotations

import pydicom
from highdicom import _standard_utils

from radrouter.inference.models.brain_extraction import BrainExtraction
from radrouter.inference.results import iod_lookup
from radrouter.inference.results.content import ResultIdentity
from radrouter.inference.results.seg import build_segmentation
from radrouter.inference.volume import load_volume
from tests.inference.variants import threshold_prediction
from tests.services import MPRAGE


def test_building_a_seg_goes_through_the_cached_lookup() -> None:
    """Fails when a highdicom upgrade stops calling the lookup through its module: drop the cache."""
    assert _standard_utils.is_attribute_in_iod is iod_lookup.is_attribute_in_iod
    slices = [pydicom.dcmread(path) for path in sorted(MPRAGE.glob("*.dcm"))[:20]]
    pipeline = BrainExtraction()
    identity = ResultIdentity("series/brain-extraction/1", pipeline.name, pipeline.version, 9000)
    before = iod_lookup._lookup.cache_info()
    build_segmentation(slices, threshold_prediction(load_volume(slices)), pipeline.segments, identity)
    after = iod_lookup._lookup.cache_info()
    assert after.hits + after.misses - before.hits - before.misses >= len(slices)


def test_the_cached_lookup_answers_as_highdicom() -> None:
    mr, enhanced_mr, seg = (
        "1.2.840.10008.5.1.4.1.1.4",
        "1.2.840.10008.5.1.4.1.1.4.1",
        "1.2.840.10008.5.1.4.1.1.66.4",
    )
    for attribute in ("NumberOfFrames", "ContentDate", "PixelSpacing", "SegmentSequence"):
        for sop_class in (mr, enhanced_mr, seg):
            for exclude in (None, ["SharedFunctionalGroupsSequence"]):
                assert iod_lookup.is_attribute_in_iod(attribute, sop_class, exclude) == iod_lookup._uncached(
                    attribute, sop_class, exclude
                ), (attribute, sop_class, exclude)
