"""Stored series → :class:`highdicom.Volume`, with geometry, rescale and orientation from the headers.

A series arrives either as classic single-frame instances (one slice each) or as one multi-frame
instance that holds the whole series (Enhanced MR/CT/PET, Legacy Converted Enhanced: the layout of
current Siemens XA and Philips scanners), whose geometry, spacing and rescale are in the shared and
per-frame functional groups (PS3.3 C.7.6.16). Both load on the same path into the same volume.

A series that is not one regular block of slices (mixed orientations, duplicated positions, missing
slices, several stacks or time points in one instance) is refused with :class:`InconsistentSeries`,
whose message names the problem: the job fails with that reason instead of a model running on a
wrong grid.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
from pydicom.dataset import Dataset

#: Tolerances: direction cosines (unitless) and positions (mm, as a fraction of the slice spacing).
_ORIENTATION_TOLERANCE = 1e-3
_GAP_FACTOR = 1.5


class InconsistentSeries(ValueError):
    """The instances of a series do not form one regular volume."""


class NoFrameOfReference(InconsistentSeries):
    """The series has no patient coordinate system, so no SEG can be placed on it."""


def read_series(paths: Sequence[str | Path]) -> list[Dataset]:
    """Read every instance of a series; pixel data is decoded later, once, by highdicom."""
    return [pydicom.dcmread(path) for path in paths]


def frame_count(dataset: Dataset) -> int:
    """Number of Frames, 1 for a single-frame instance (and for a value that is not a number)."""
    try:
        return max(1, int(dataset.get("NumberOfFrames", 1) or 1))
    except (TypeError, ValueError):
        return 1


def is_multiframe(dataset: Dataset) -> bool:
    """An instance whose frames carry their geometry in functional groups (one instance, many slices)."""
    return "PerFrameFunctionalGroupsSequence" in dataset or "SharedFunctionalGroupsSequence" in dataset


def check_geometry(datasets: Sequence[Dataset]) -> None:
    """Raise :class:`InconsistentSeries` unless the slices share one orientation and are evenly spaced."""
    single_frame = [ds for ds in datasets if frame_count(ds) == 1 and not is_multiframe(ds)]
    if len(single_frame) < 2:
        return
    try:
        orientations = np.array([[float(v) for v in ds.ImageOrientationPatient] for ds in single_frame])
        positions = np.array([[float(v) for v in ds.ImagePositionPatient] for ds in single_frame])
    except (AttributeError, TypeError, ValueError) as error:
        raise InconsistentSeries(f"an instance lacks a usable orientation or position ({error})") from None
    mixed = np.abs(orientations - orientations[0]).max(axis=1) > _ORIENTATION_TOLERANCE
    if mixed.any():
        raise InconsistentSeries(
            f"mixed orientations: {int(mixed.sum())} of {len(single_frame)} slices differ from the first"
        )
    normal = np.cross(orientations[0][:3], orientations[0][3:])
    depths = np.sort(positions @ normal)
    steps = np.diff(depths)
    duplicates = int((steps < 1e-3).sum())
    if duplicates:
        raise InconsistentSeries(f"duplicated positions: {duplicates} slice(s) share a position with another")
    spacing = float(np.median(steps))
    gaps = int((steps > _GAP_FACTOR * spacing).sum())
    if gaps:
        raise InconsistentSeries(
            f"missing slices: {gaps} gap(s) wider than {_GAP_FACTOR} x the {spacing:.2f} mm slice spacing"
        )


def _stack_ids(dataset: Dataset) -> set[str]:
    """The Stack IDs (Frame Content, C.7.6.16.2.2) of a multi-frame instance's frames."""
    stacks: set[str] = set()
    for frame in dataset.get("PerFrameFunctionalGroupsSequence", []):
        for content in frame.get("FrameContentSequence", []):
            if content.get("StackID") not in (None, ""):
                stacks.add(str(content.StackID))
    return stacks


def load_multiframe_volume(dataset: Dataset) -> hd.Volume:
    """One multi-frame instance as a volume; several stacks or frames sharing a position are refused."""
    stacks = _stack_ids(dataset)
    if len(stacks) > 1:
        raise InconsistentSeries(
            f"the multi-frame instance holds {len(stacks)} stacks (Stack ID {', '.join(sorted(stacks))});"
            " send each stack as its own series"
        )
    try:
        return hd.Image.from_dataset(dataset, copy=False).get_volume(dtype=np.float32)
    except (RuntimeError, ValueError, KeyError, AttributeError) as error:
        raise InconsistentSeries(
            f"the {frame_count(dataset)} frames of the multi-frame instance do not form one volume"
            f" (several frames per position, as with echoes, time points or b-values, or no plane"
            f" geometry): {error}"
        ) from None


def check_series(datasets: Sequence[Dataset]) -> Dataset | None:
    """Refuse a series that is no volume (from its headers alone); return its multi-frame instance."""
    unplaced = sum(1 for ds in datasets if not ds.get("FrameOfReferenceUID"))
    if unplaced:
        raise NoFrameOfReference(
            f"{unplaced} of {len(datasets)} instance(s) have no patient coordinate system"
        )
    multiframe = [ds for ds in datasets if is_multiframe(ds)]
    if multiframe:
        if len(datasets) > 1:
            raise InconsistentSeries(
                f"the series has {len(multiframe)} multi-frame instance(s) among {len(datasets)};"
                " a series is read as one multi-frame instance or as single-frame slices"
            )
        return multiframe[0]
    check_geometry(datasets)
    return None


def load_volume(datasets: Sequence[Dataset]) -> hd.Volume:
    """The series as a float32 volume in its stored orientation (frames sorted by position)."""
    multiframe = check_series(datasets)
    if multiframe is not None:
        return load_multiframe_volume(multiframe)
    return hd.get_volume_from_series(datasets, dtype=np.float32)
