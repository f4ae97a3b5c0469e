"""Brain extraction on 3D T1-weighted MRI with deepbet (Fisch et al., 2024), weights from its wheel.

deepbet was trained on volumes in RAS+ voxel order (nibabel's closest canonical orientation), so the
volume is reoriented to that order for the model and the mask is put back onto the source grid.
"""

from __future__ import annotations

import time
from importlib.metadata import version

import highdicom as hd
import numpy as np
import torch
from pydicom.sr.codedict import codes

from radrouter.inference.pipeline import FindingSpec, InputSpec, MeasurementSpec, Prediction, SegmentSpec

#: nibabel's RAS+ expressed in highdicom's patient orientation letters (H = head = superior).
MODEL_ORIENTATION = "RAH"


class BrainExtraction:
    """deepbet's bounding-box and segmentation networks, kept loaded between tasks."""

    name = "brain-extraction"
    version = f"deepbet {version('deepbet')}"
    description = "Brain mask and brain volume from 3D T1-weighted MRI (deepbet). Not a diagnostic device."
    procedure = codes.LN.BrainMRI
    series_number = 9100
    input = InputSpec(modalities=("MR",), min_slices=32)
    segments: tuple[SegmentSpec, ...] = (
        SegmentSpec(
            label=1,
            name="Brain",
            category=codes.SCT.AnatomicalStructure,
            property_type=codes.SCT.Brain,
            color_rgb=(255, 200, 60),
        ),
    )
    #: deepbet's networks give the brain only (no intracranial mask), so brain volume is all it reports.
    measurements: tuple[MeasurementSpec, ...] = ()
    findings: tuple[FindingSpec, ...] = ()

    def __init__(self, threshold: float = 0.5) -> None:
        self.threshold = threshold
        self._model: object | None = None

    def load(self, device: torch.device) -> None:
        from deepbet import BrainExtraction as DeepBet

        self._model = DeepBet(no_gpu=device.type != "cuda")

    def predict(self, volume: hd.Volume) -> Prediction:
        if self._model is None:
            raise RuntimeError("load() the model before predict()")
        model = self._model
        canonical = volume.to_patient_orientation(MODEL_ORIENTATION)
        started = time.perf_counter()
        probabilities = model.run_model(np.ascontiguousarray(canonical.array, dtype=np.float32))  # type: ignore[attr-defined]
        mask = model.postprocess(probabilities > self.threshold)  # type: ignore[attr-defined]
        seconds = time.perf_counter() - started
        labelmap = canonical.with_array(mask.astype(np.uint8)).match_geometry(volume)
        return Prediction(labelmap=labelmap, model_seconds=seconds)
