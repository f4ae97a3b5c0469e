"""Stored series → :class:`highdicom.Volume`, with geometry, rescale and orientation from the headers."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
from pydicom.dataset import Dataset


def read_series(paths: Sequence[str | Path]) -> list[Dataset]:
    """Read every instance of a series; pixel data is decoded later, once, by highdicom."""
    return [pydicom.dcmread(path) for path in paths]


def load_volume(datasets: Sequence[Dataset]) -> hd.Volume:
    """The series as a float32 volume in its stored orientation (frames sorted by position)."""
    return hd.get_volume_from_series(datasets, dtype=np.float32)
