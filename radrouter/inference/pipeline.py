"""What a pipeline is: a model plus the coded description of what it produces.

A pipeline receives the series as a :class:`highdicom.Volume` (correct geometry, rescaled) and returns
a label map on the same grid. radrouter does the rest: segment volumes, the SEG, the SR, delivery.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import highdicom as hd
import torch
from pydicom.sr.coding import Code


@dataclass(frozen=True)
class SegmentSpec:
    """One label of the label map, described with codes (DICOM PS3.3 C.8.20.2 Segment Description)."""

    label: int
    name: str
    category: Code
    property_type: Code
    color_rgb: tuple[int, int, int] = (255, 255, 0)


@dataclass(frozen=True)
class Prediction:
    """A pipeline's output: a label map (uint8, 0 = background) on the input volume's grid."""

    labelmap: hd.Volume
    model_seconds: float
    extra: dict[str, float] = field(default_factory=dict)


class Pipeline(Protocol):
    """The interface every pipeline implements; ``load`` is called once per worker process."""

    name: str
    version: str
    description: str
    procedure: Code
    series_number: int
    segments: tuple[SegmentSpec, ...]

    def load(self, device: torch.device) -> None: ...

    def predict(self, volume: hd.Volume) -> Prediction: ...
