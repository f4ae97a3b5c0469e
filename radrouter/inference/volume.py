"""Stored series → :class:`highdicom.Volume`, with geometry, rescale and orientation from the headers.

A series that is not one regular block of slices (mixed orientations, duplicated positions, missing
slices) is refused with :class:`InconsistentSeries`, whose message names the problem: the job fails
with that reason instead of a model running on a wrong grid.
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


def read_series(paths: Sequence[str | Path]) -> list[Dataset]:
    """Read every instance of a series; pixel data is decoded later, once, by highdicom."""
    return [pydicom.dcmread(path) for path in paths]


def check_geometry(datasets: Sequence[Dataset]) -> None:
    """Raise :class:`InconsistentSeries` unless the slices share one orientation and are evenly spaced."""
    single_frame = [ds for ds in datasets if int(ds.get("NumberOfFrames", 1) or 1) == 1]
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


def load_volume(datasets: Sequence[Dataset]) -> hd.Volume:
    """The series as a float32 volume in its stored orientation (frames sorted by position)."""
    check_geometry(datasets)
    return hd.get_volume_from_series(datasets, dtype=np.float32)
