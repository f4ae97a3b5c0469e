"""highdicom's look-ups in the standard's tables are remembered, with the answers highdicom gives."""

from __future__ import annotations

from highdicom import _standard_utils, base
from pydicom.uid import Comprehensive3DSRStorage, CTImageStorage, EnhancedMRImageStorage, MRImageStorage

import radrouter.inference.volume  # noqa: F401 (importing it installs the remembered look-up)
from radrouter.inference.standard_tables import is_attribute_in_iod


def test_highdicom_asks_the_remembered_look_up() -> None:
    assert _standard_utils.is_attribute_in_iod is is_attribute_in_iod
    assert base.is_attribute_in_iod is is_attribute_in_iod


def test_its_answers_are_the_standards() -> None:
    assert _standard_utils.does_iod_have_pixel_data(MRImageStorage)
    assert _standard_utils.does_iod_have_pixel_data(CTImageStorage)
    assert not _standard_utils.does_iod_have_pixel_data(Comprehensive3DSRStorage)
    assert is_attribute_in_iod("NumberOfFrames", EnhancedMRImageStorage)
    assert not is_attribute_in_iod("NumberOfFrames", MRImageStorage)
    # The list highdicom passes is remembered as the same question each time.
    assert is_attribute_in_iod("PixelData", MRImageStorage, ["IconImageSequence"])
    assert not is_attribute_in_iod("PixelData", Comprehensive3DSRStorage, ["IconImageSequence"])
