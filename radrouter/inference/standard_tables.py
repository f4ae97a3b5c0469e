"""highdicom's look-ups in the DICOM standard's tables, answered once per question instead of per image.

highdicom 0.28 asks "is this attribute in this SOP class's IOD?" (does it hold pixel data, is it
multi-frame) for every source image, both when it builds a volume and when it builds a SEG, by
walking every module of the IOD: about 2 ms an image, 0.3 s for each of the two on a 170-slice MR
series, and 0.7 s more on a process's first call, which loads the tables. The answer depends on the
question only, so a cache changes nothing but the time.
"""

from __future__ import annotations

import functools
import importlib
import pkgutil
import sys
from collections.abc import Sequence
from types import ModuleType

import highdicom
from highdicom import _standard_utils
from pydicom.uid import MRImageStorage

_LOOKUP = "is_attribute_in_iod"
_ORIGINAL = _standard_utils.is_attribute_in_iod


@functools.cache
def _answer(attribute: str, sop_class_uid: str, exclude_path_elements: tuple[str, ...] | None) -> bool:
    return _ORIGINAL(attribute, sop_class_uid, exclude_path_elements)


def is_attribute_in_iod(
    attribute: str, sop_class_uid: str, exclude_path_elements: Sequence[str] | None = None
) -> bool:
    """highdicom's look-up, remembered (the excluded path elements, often a list, as a tuple)."""
    excluded = tuple(exclude_path_elements) if exclude_path_elements is not None else None
    return _answer(attribute, sop_class_uid, excluded)


def highdicom_callers() -> list[ModuleType]:
    """Every highdicom module holding the original look-up: its own (whose helpers, such as
    ``does_iod_have_pixel_data``, call it by its global name) and each that imported it by name
    (``base``, ``sr.content``, ... whichever this highdicom version has)."""
    for info in pkgutil.walk_packages(highdicom.__path__, "highdicom."):
        if not info.name.rsplit(".", 1)[-1].startswith("_") or info.name == _standard_utils.__name__:
            importlib.import_module(info.name)
    return [
        module
        for name, module in sorted(sys.modules.items())
        if name.startswith("highdicom") and getattr(module, _LOOKUP, None) is _ORIGINAL
    ]


def cache_standard_lookups() -> None:
    """Give highdicom the remembered look-up; called once when a worker (or an evaluation) starts.

    A module whose look-up is no longer the original, as in another highdicom version, is left alone.
    """
    for module in highdicom_callers():
        setattr(module, _LOOKUP, is_attribute_in_iod)


def load_standard_tables() -> None:
    """Load the tables now, at a worker's start, rather than inside its first study's time."""
    _standard_utils.does_iod_have_pixel_data(MRImageStorage)
