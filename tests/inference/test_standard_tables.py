"""highdicom's look-ups in the standard's tables are remembered, with the answers highdicom gives."""

from __future__ import annotations

import subprocess
import sys
from types import ModuleType

import highdicom.sr.content
from highdicom import _standard_utils, base
from pydicom.uid import Comprehensive3DSRStorage, CTImageStorage, EnhancedMRImageStorage, MRImageStorage

from radrouter.inference.standard_tables import (
    cache_standard_lookups,
    highdicom_callers,
    is_attribute_in_iod,
)


def _lookups() -> dict[str, object]:
    return {
        name: module.is_attribute_in_iod
        for name, module in sys.modules.items()
        if name.startswith("highdicom")
        and isinstance(module, ModuleType)
        and hasattr(module, "is_attribute_in_iod")
    }


def test_importing_radrouter_changes_nothing_in_highdicom() -> None:
    """The cache is applied when a worker starts, not as a side effect of an import."""
    probe = (
        "import radrouter.inference.volume, radrouter.inference.run, radrouter.inference.tasks\n"
        "from highdicom import _standard_utils, base\n"
        "import highdicom.sr.content as content\n"
        "from radrouter.inference.standard_tables import is_attribute_in_iod as cached\n"
        "assert cached not in (_standard_utils.is_attribute_in_iod, base.is_attribute_in_iod, "
        "content.is_attribute_in_iod)\n"
    )
    subprocess.run([sys.executable, "-c", probe], check=True)


def test_every_highdicom_module_asks_the_remembered_look_up() -> None:
    cache_standard_lookups()
    # The SR path imports the look-up by name too: it must be covered, not only volume and SEG.
    assert highdicom.sr.content.is_attribute_in_iod is is_attribute_in_iod
    assert base.is_attribute_in_iod is is_attribute_in_iod
    assert _standard_utils.is_attribute_in_iod is is_attribute_in_iod
    assert not highdicom_callers(), "a module still holds highdicom's own look-up"
    assert all(lookup is is_attribute_in_iod for lookup in _lookups().values())


def test_its_answers_are_the_standards() -> None:
    cache_standard_lookups()
    assert _standard_utils.does_iod_have_pixel_data(MRImageStorage)
    assert _standard_utils.does_iod_have_pixel_data(CTImageStorage)
    assert not _standard_utils.does_iod_have_pixel_data(Comprehensive3DSRStorage)
    assert is_attribute_in_iod("NumberOfFrames", EnhancedMRImageStorage)
    assert not is_attribute_in_iod("NumberOfFrames", MRImageStorage)
    # The list highdicom passes is remembered as the same question each time.
    assert is_attribute_in_iod("PixelData", MRImageStorage, ["IconImageSequence"])
    assert not is_attribute_in_iod("PixelData", Comprehensive3DSRStorage, ["IconImageSequence"])
