"""highdicom asks, for every source image of a SEG, whether its SOP class is a multi-frame IOD by
walking the standard's module tables (``is_attribute_in_iod``): 0.6 ms a call, about 340 calls for
one 170-slice MPRAGE SEG, most of highdicom's own time for it. The answer depends only on the
arguments and the tables highdicom ships, so it is cached here.

This replaces a private function (``highdicom._standard_utils.is_attribute_in_iod``, called by
``is_multiframe_image`` through its module's globals); tests/inference/test_iod_lookup.py fails when
highdicom no longer calls it that way, so an upgrade cannot leave the cache silently unused. The
fix belongs upstream (a cache on the lookup in highdicom); this goes once highdicom has one.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

from highdicom import _standard_utils

_uncached = _standard_utils.is_attribute_in_iod


@functools.lru_cache(maxsize=4096)
def _lookup(attribute: str, sop_class_uid: str, exclude: tuple[str, ...] | None) -> bool:
    return bool(_uncached(attribute, sop_class_uid, list(exclude) if exclude is not None else None))


def is_attribute_in_iod(
    attribute: str, sop_class_uid: str, exclude_path_elements: Sequence[str] | None = None
) -> bool:
    """highdicom's answer, computed once per (attribute, SOP class, exclusions)."""
    exclude = tuple(exclude_path_elements) if exclude_path_elements is not None else None
    return _lookup(attribute, str(sop_class_uid), exclude)


def cache_iod_lookups() -> None:
    """Make highdicom's multi-frame test (and any other lookup through its module) use the cache."""
    _standard_utils.is_attribute_in_iod = is_attribute_in_iod
