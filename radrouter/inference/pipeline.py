"""What a pipeline is: a model plus the coded description of what it needs and what it produces.

A pipeline declares its input (:class:`InputSpec`) and its outputs (segments, measurements, findings).
It receives the series as a :class:`highdicom.Volume` (correct geometry, rescaled) and returns a label
map on the same grid, with values for the measurements and findings it declared. radrouter does the
rest: input checks, segment volumes, the SEG, the SR, delivery.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol

import highdicom as hd
import torch
from pydicom.sr.coding import Code

Normalisation = Literal["none", "window", "zscore"]


class PipelineInputError(ValueError):
    """The series is not what the pipeline declared it needs (modality, slices, geometry)."""


@dataclass(frozen=True)
class InputSpec:
    """What a pipeline needs; radrouter checks it before the model runs and prepares the volume for it.

    ``orientation`` is three highdicom patient-orientation letters (e.g. ``LPH``, ``RAH``) the volume is
    reordered to; ``spacing_mm`` the model grid the volume is resampled to (and the label map back from);
    ``window`` clips intensities to [low, high] and, with ``normalisation="window"``, scales them to [0, 1].
    """

    modalities: tuple[str, ...] = ()
    min_slices: int = 1
    orientation: str | None = None
    spacing_mm: tuple[float, float, float] | None = None
    window: tuple[float, float] | None = None
    normalisation: Normalisation = "none"


@dataclass(frozen=True)
class SegmentSpec:
    """One label of the label map, described with codes (DICOM PS3.3 C.8.20.2 Segment Description)."""

    label: int
    name: str
    category: Code
    property_type: Code
    color_rgb: tuple[int, int, int] = (255, 255, 0)


@dataclass(frozen=True)
class MeasurementSpec:
    """A quantity the pipeline reports (TID 1419 measurement); ``code`` None gives a private code."""

    name: str
    code: Code | None
    unit: Code


@dataclass(frozen=True)
class FindingSpec:
    """A qualitative finding (TID 1500 qualitative evaluation) with a probability; ``segment``: where."""

    name: str
    code: Code
    threshold: float = 0.5
    segment: int | None = None


@dataclass(frozen=True)
class MeasuredValue:
    """One value of a declared measurement, for one segment (its label) or the whole series (None)."""

    name: str
    value: float
    segment: int | None = None


@dataclass(frozen=True)
class FindingValue:
    """One declared finding: present when ``probability`` reaches its threshold; optional location."""

    name: str
    probability: float | None
    present: bool
    segment: int | None = None


@dataclass(frozen=True)
class Prediction:
    """A pipeline's output: a label map (uint8, 0 = background) on the input volume's grid, and values."""

    labelmap: hd.Volume
    model_seconds: float
    measurements: list[MeasuredValue] = field(default_factory=list)
    findings: list[FindingValue] = field(default_factory=list)


class Pipeline(Protocol):
    """The interface every pipeline implements; ``load`` is called once per worker process."""

    name: str
    version: str
    description: str
    procedure: Code
    series_number: int
    input: InputSpec
    segments: tuple[SegmentSpec, ...]
    measurements: tuple[MeasurementSpec, ...]
    findings: tuple[FindingSpec, ...]

    def load(self, device: torch.device) -> None: ...

    def predict(self, volume: hd.Volume) -> Prediction: ...
