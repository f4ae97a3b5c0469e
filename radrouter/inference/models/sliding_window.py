"""A pipeline around any torch network that maps a (1, 1, D, H, W) volume to per-class scores.

TorchScript files and MONAI bundles both become one of these: radrouter prepares the volume on the
model's grid, runs MONAI's sliding-window inference (ROI and overlap from settings, optional mixed
precision on CUDA), turns scores into probabilities, and brings them back to the series' grid. The
label of a voxel is its most probable class; a finding's probability is its class's highest
probability anywhere in the volume.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import highdicom as hd
import numpy as np
import torch
from monai.inferers.utils import sliding_window_inference
from pydicom.sr.coding import Code

from radrouter.config.pipelines import NetworkPipelineSetting
from radrouter.inference.pipeline import (
    FindingSpec,
    FindingValue,
    InputSpec,
    MeasurementSpec,
    Prediction,
    SegmentSpec,
)
from radrouter.inference.prepare import ModelGrid

Activation = Literal["auto", "softmax", "sigmoid", "none"]


@dataclass(frozen=True)
class WindowedInference:
    """How a network sees a large volume: ROI, overlap and batch of the sliding window; AMP on CUDA."""

    roi_size: tuple[int, int, int] = (96, 96, 96)
    overlap: float = 0.25
    batch_size: int = 1
    amp: bool = True


class NetworkPipeline:
    """A user network with its declared input and label table; built by the TorchScript or bundle loader."""

    measurements: tuple[MeasurementSpec, ...] = ()

    def __init__(
        self,
        *,
        name: str,
        version: str,
        description: str,
        procedure: Code,
        series_number: int,
        input_spec: InputSpec,
        segments: tuple[SegmentSpec, ...],
        findings: tuple[FindingSpec, ...],
        load_network: Callable[[torch.device], torch.nn.Module],
        activation: Activation,
        windowing: WindowedInference,
    ) -> None:
        self.name, self.version, self.description = name, version, description
        self.procedure, self.series_number = procedure, series_number
        self.input, self.segments, self.findings = input_spec, segments, findings
        self.activation = activation
        self.windowing = windowing
        self._load_network = load_network
        self._network: torch.nn.Module | None = None
        self._device = torch.device("cpu")

    def load(self, device: torch.device) -> None:
        self._device = device
        self._network = self._load_network(device).eval()

    def predict(self, volume: hd.Volume) -> Prediction:
        if self._network is None:
            raise RuntimeError("load() the model before predict()")
        grid = ModelGrid(volume, self.input)
        started = time.perf_counter()
        probabilities = grid.to_source(self._probabilities(grid.model_input().to(self._device))).cpu()
        seconds = time.perf_counter() - started
        labels = probabilities.argmax(dim=0).numpy().astype(np.uint8)
        findings = [self._finding(spec, probabilities) for spec in self.findings]
        return Prediction(labelmap=grid.labelmap(labels), model_seconds=seconds, findings=findings)

    def _probabilities(self, image: torch.Tensor) -> torch.Tensor:
        assert self._network is not None
        network = self._network
        autocast = (
            torch.autocast("cuda", dtype=torch.float16)
            if self.windowing.amp and self._device.type == "cuda"
            else contextlib.nullcontext()
        )
        with torch.inference_mode(), autocast:
            scores = sliding_window_inference(
                image,
                roi_size=self.windowing.roi_size,
                sw_batch_size=self.windowing.batch_size,
                predictor=network,
                overlap=self.windowing.overlap,
                mode="gaussian",
            )
        assert isinstance(scores, torch.Tensor)
        scores = scores.float()
        activation = self.activation
        if activation == "auto":
            activation = "sigmoid" if scores.shape[1] == 1 else "softmax"
        if activation == "softmax":
            return torch.softmax(scores, dim=1)
        if activation == "sigmoid":
            foreground = torch.sigmoid(scores)
            return torch.cat([1 - foreground.amax(dim=1, keepdim=True), foreground], dim=1)
        return scores

    @staticmethod
    def _finding(spec: FindingSpec, probabilities: torch.Tensor) -> FindingValue:
        if spec.segment is None or spec.segment >= probabilities.shape[0]:
            raise ValueError(f"finding {spec.name!r} needs the label of a class the network outputs")
        probability = float(probabilities[spec.segment].max())
        return FindingValue(
            name=spec.name,
            probability=round(probability, 4),
            present=probability >= spec.threshold,
            segment=spec.segment,
        )


def declared_pipeline(
    name: str,
    declared: NetworkPipelineSetting,
    version: str,
    load_network: Callable[[torch.device], torch.nn.Module],
    windowing: WindowedInference,
) -> NetworkPipeline:
    """A network pipeline from its config declaration (input spec, label table, findings)."""
    put = declared.input
    return NetworkPipeline(
        name=name,
        version=version,
        description=declared.description,
        procedure=declared.procedure.code(),
        series_number=declared.series_number,
        input_spec=InputSpec(
            modalities=tuple(put.modalities),
            min_slices=put.min_slices,
            orientation=put.orientation,
            spacing_mm=put.spacing_mm,
            window=put.window,
            normalisation=put.normalisation,
        ),
        segments=tuple(
            SegmentSpec(
                label=entry.label,
                name=entry.name,
                category=entry.category.code(),
                property_type=entry.type.code(),
                color_rgb=entry.color,
            )
            for entry in sorted(declared.labels, key=lambda entry: entry.label)
        ),
        findings=tuple(
            FindingSpec(name=f.name, code=f.code.code(), threshold=f.threshold, segment=f.label)
            for f in declared.findings
        ),
        load_network=load_network,
        activation=declared.activation,
        windowing=windowing,
    )
