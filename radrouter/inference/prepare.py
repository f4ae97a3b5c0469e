"""Between the series and a model: input checks, the model's grid (orientation, spacing) and intensities.

A :class:`ModelGrid` takes the source volume to the grid the model declared and brings per-class
probabilities back to the source grid, so label maps always land on the series the SEG references.
"""

from __future__ import annotations

from collections.abc import Sequence

import highdicom as hd
import numpy as np
import torch
import torch.nn.functional as F
from pydicom.dataset import Dataset

from radrouter.inference.pipeline import InputSpec, PipelineInputError


def check_input(spec: InputSpec, datasets: Sequence[Dataset], volume: hd.Volume) -> None:
    """Refuse a series the pipeline cannot read, with a reason a PACS admin understands."""
    modality = str(datasets[0].get("Modality", ""))
    if spec.modalities and modality not in spec.modalities:
        raise PipelineInputError(f"needs modality {'/'.join(spec.modalities)}, the series is {modality!r}")
    slices = volume.spatial_shape[0]
    if slices < spec.min_slices:
        raise PipelineInputError(f"needs at least {spec.min_slices} slices, the series has {slices}")


def normalise_intensities(array: np.ndarray, spec: InputSpec) -> np.ndarray:
    """Clip to the declared window, then scale as declared (window → [0, 1], zscore → mean 0, sd 1)."""
    values = array.astype(np.float32)
    if spec.window is not None:
        low, high = spec.window
        values = np.clip(values, low, high)
        if spec.normalisation == "window":
            values = (values - low) / max(high - low, 1e-6)
    if spec.normalisation == "zscore":
        values = (values - values.mean()) / max(float(values.std()), 1e-6)
    return values


class ModelGrid:
    """The source volume in the model's orientation and spacing, and the way back."""

    def __init__(self, volume: hd.Volume, spec: InputSpec) -> None:
        self.source = volume
        self.oriented = volume.to_patient_orientation(spec.orientation) if spec.orientation else volume
        self.spec = spec
        self.model_shape: tuple[int, ...]
        if spec.spacing_mm is None:
            self.model_shape = self.oriented.spatial_shape
        else:
            self.model_shape = tuple(
                max(1, round(n * have / want))
                for n, have, want in zip(
                    self.oriented.spatial_shape, self.oriented.spacing, spec.spacing_mm, strict=True
                )
            )

    def model_input(self) -> torch.Tensor:
        """A (1, 1, D, H, W) float tensor on the model grid, intensities prepared as declared."""
        values = torch.from_numpy(np.ascontiguousarray(normalise_intensities(self.oriented.array, self.spec)))
        tensor = values[None, None]
        if self.model_shape != self.oriented.spatial_shape:
            tensor = F.interpolate(tensor, size=self.model_shape, mode="trilinear", align_corners=False)
        return tensor

    def to_source(self, probabilities: torch.Tensor) -> torch.Tensor:
        """(1, C, ...) on the model grid → (C, ...) on the oriented source grid."""
        if tuple(probabilities.shape[2:]) != self.oriented.spatial_shape:
            probabilities = F.interpolate(
                probabilities.float(), size=self.oriented.spatial_shape, mode="trilinear", align_corners=False
            )
        return probabilities[0]

    def labelmap(self, labels: np.ndarray) -> hd.Volume:
        """A label array on the oriented grid → the label map on the source volume's grid."""
        return self.oriented.with_array(labels.astype(np.uint8)).match_geometry(self.source)
