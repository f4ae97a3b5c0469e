"""Lung segmentation on chest CT by HU thresholds, with lung volumes and the emphysema index LAA-950.

A quantitative reference pipeline in plain torch tensor ops (it runs on the GPU when the worker has
one), not a trained model and not a diagnostic device. Steps, after the classic threshold method
(Hu, Hoffman and Reinhardt, IEEE TMI 2001):

1. air = voxels below -320 HU; components of air that touch the in-plane border are outside the body;
2. inside-body air components: tube-like ones of nearly pure air (trachea, main bronchi) are removed;
3. the two largest components are the lungs (one component spanning the midline is split at its
   narrowest column); the one toward the patient's left is the left lung;
4. each lung is closed in-plane, so vessels inside it count as lung;
5. per lung: volume, mean density, and LAA-950 = % of lung voxels below -950 HU.

Components are found on an in-plane grid of about 5 mm (label propagation by max pooling), grown by one
cell and intersected with the full-resolution air mask.
"""

from __future__ import annotations

import time

import highdicom as hd
import numpy as np
import torch
import torch.nn.functional as F
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code

from radrouter.inference.pipeline import (
    FindingSpec,
    InputSpec,
    MeasuredValue,
    MeasurementSpec,
    Prediction,
    SegmentSpec,
)
from radrouter.inference.prepare import ModelGrid

RIGHT_LUNG, LEFT_LUNG = 1, 2
AIR_HU, EMPHYSEMA_HU, AIRWAY_HU = -320.0, -950.0, -900.0
COMPONENT_GRID_MM = 5.0
MIN_LUNG_ML = 5.0
#: Largest mean cross-section (cm²) of an air component that is taken for an airway, not a lung.
AIRWAY_MAX_AREA_CM2 = 6.0
CLOSING_MM = 6.0
PERCENT = Code("%", "UCUM", "percent")
HOUNSFIELD = Code("[hnsf'U]", "UCUM", "Hounsfield unit")
CT_CHEST = Code("24627-2", "LN", "CT Chest")


def connected_components(mask: torch.Tensor) -> torch.Tensor:
    """6-connected components of a 3D mask: int64 labels 1..n (0 = background).

    Each voxel's index spreads through the mask by 1D max pooling along each axis in turn, until no
    label changes; every component ends up with its highest voxel index, which is then made compact.
    """
    ids = torch.arange(1, mask.numel() + 1, device=mask.device, dtype=torch.float32).reshape(mask.shape)
    inside = mask[None, None].float()
    labels = ids[None, None] * inside
    kernels = ((3, 1, 1), (1, 3, 1), (1, 1, 3))
    while True:
        previous = labels
        for _ in range(16):
            for kernel in kernels:
                padding = tuple(k // 2 for k in kernel)
                labels = F.max_pool3d(labels, kernel, stride=1, padding=padding) * inside
        if torch.equal(labels, previous):
            break
    compact: torch.Tensor = torch.unique(labels[0, 0], return_inverse=True)[1]
    return compact + 1 if bool(mask.all()) else compact


def _close_in_plane(mask: torch.Tensor, size: int) -> torch.Tensor:
    """Morphological closing in each slice (dilate then erode), which fills vessels inside the lung."""
    closed = mask[None, None].float()
    for sign in (1, -1):  # a square max filter is two 1D ones; erosion is dilation of the negative
        for kernel in ((1, size, 1), (1, 1, size)):
            padding = tuple(k // 2 for k in kernel)
            closed = sign * F.max_pool3d(sign * closed, kernel, stride=1, padding=padding)
    return closed[0, 0] > 0.5


class CTLung:
    """Left and right lung, their volumes, mean density and LAA-950."""

    name = "ct-lung"
    version = "1.0 (HU thresholds)"
    description = (
        "Left and right lung on chest CT by HU thresholds, with volume, mean density and LAA-950 per "
        "lung. A quantitative reference pipeline, not a diagnostic device."
    )
    procedure = CT_CHEST
    series_number = 9300
    input = InputSpec(modalities=("CT",), min_slices=3)
    segments: tuple[SegmentSpec, ...] = (
        SegmentSpec(
            RIGHT_LUNG,
            "Right lung",
            codes.SCT.AnatomicalStructure,
            Code("3341006", "SCT", "Right lung"),
            (80, 160, 230),
        ),
        SegmentSpec(
            LEFT_LUNG,
            "Left lung",
            codes.SCT.AnatomicalStructure,
            Code("44029006", "SCT", "Left lung"),
            (230, 160, 80),
        ),
    )
    measurements: tuple[MeasurementSpec, ...] = (
        MeasurementSpec("LAA-950", None, PERCENT),
        MeasurementSpec("Mean lung density", codes.DCM.MeanAttenuationCoefficient, HOUNSFIELD),
    )
    findings: tuple[FindingSpec, ...] = ()

    def __init__(self) -> None:
        self.device = torch.device("cpu")

    def load(self, device: torch.device) -> None:
        self.device = device

    def predict(self, volume: hd.Volume) -> Prediction:
        grid = ModelGrid(volume, InputSpec(orientation="HPL"))
        started = time.perf_counter()
        hu = torch.from_numpy(np.ascontiguousarray(grid.oriented.array)).to(self.device, torch.float32)
        labels = self._segment(hu, grid.oriented.spacing)
        measurements: list[MeasuredValue] = []
        for label in (RIGHT_LUNG, LEFT_LUNG):
            values = hu[labels == label].clamp(min=-1024)
            if values.numel():
                laa = float((values < EMPHYSEMA_HU).float().mean()) * 100
                measurements += [
                    MeasuredValue("LAA-950", round(laa, 2), label),
                    MeasuredValue("Mean lung density", round(float(values.mean()), 1), label),
                ]
        seconds = time.perf_counter() - started
        return Prediction(
            labelmap=grid.labelmap(labels.cpu().numpy()), model_seconds=seconds, measurements=measurements
        )

    def _segment(self, hu: torch.Tensor, spacing: tuple[float, float, float]) -> torch.Tensor:
        step = max(1, round(COMPONENT_GRID_MM / min(spacing[1], spacing[2])))
        in_view = hu >= -1024  # scanners pad outside the reconstruction circle with -2048 or so
        air = (hu < AIR_HU) | ~in_view
        coarse = F.avg_pool3d(air[None, None].float(), (1, step, step), ceil_mode=True)[0, 0] > 0.5
        components = connected_components(coarse)
        border = torch.cat(
            [components[:, 0, :], components[:, -1, :], components[:, :, 0], components[:, :, -1]], dim=1
        )
        count = int(components.max()) + 1
        outside = torch.zeros(count, dtype=torch.bool, device=hu.device)
        outside[border.ravel()] = True
        coarse_hu = F.avg_pool3d(hu.clamp(min=-1024)[None, None], (1, step, step), ceil_mode=True)[0, 0]
        voxel_ml = spacing[0] * (spacing[1] * step) * (spacing[2] * step) / 1000
        sizes = torch.bincount(components.ravel(), minlength=count)
        mean_hu = torch.bincount(
            components.ravel(), weights=coarse_hu.ravel(), minlength=count
        ) / sizes.clamp(1)
        slices = torch.stack([torch.bincount(s.ravel(), minlength=count) > 0 for s in components]).sum(0)
        area_cm2 = sizes * (spacing[1] * step) * (spacing[2] * step) / 100 / slices.clamp(1)
        airway = (mean_hu < AIRWAY_HU) & (area_cm2 < AIRWAY_MAX_AREA_CM2)
        keep = ~outside & ~airway & (sizes * voxel_ml >= MIN_LUNG_ML)
        keep[0] = False
        lungs = self._left_and_right(components, torch.nonzero(keep).ravel(), sizes)
        lungs = F.max_pool3d(lungs[None, None].float(), (1, 3, 3), stride=1, padding=(0, 1, 1))[0, 0].long()
        full = lungs.repeat_interleave(step, 1).repeat_interleave(step, 2)[:, : hu.shape[1], : hu.shape[2]]
        full = torch.where(air & in_view, full, 0)
        closing = max(3, round(CLOSING_MM / spacing[1]) | 1)
        labels = torch.zeros_like(full)
        for label in (LEFT_LUNG, RIGHT_LUNG):
            closed = _close_in_plane(full == label, closing) & in_view
            labels = torch.where(closed & (labels == 0), label, labels)
        return labels.to(torch.uint8)

    @staticmethod
    def _left_and_right(components: torch.Tensor, kept: torch.Tensor, sizes: torch.Tensor) -> torch.Tensor:
        """Coarse map with RIGHT_LUNG / LEFT_LUNG from the two largest kept components (or one, split)."""
        lungs = torch.zeros_like(components)
        if kept.numel() == 0:
            return lungs
        ranked = kept[torch.argsort(sizes[kept], descending=True)]
        largest = components == ranked[0]
        if ranked.numel() > 1 and sizes[ranked[1]] >= 0.15 * sizes[ranked[0]]:
            second = components == ranked[1]
        else:
            columns = largest.sum(dim=(0, 1))
            occupied = torch.nonzero(columns).ravel()
            low, high = int(occupied[0]), int(occupied[-1])
            middle = slice(low + (high - low) // 3, high - (high - low) // 3 + 1)
            cut = middle.start + int(torch.argmin(columns[middle]))
            second = largest.clone()
            second[:, :, :cut] = False
            largest[:, :, cut:] = False
        # Axis 2 of the HPL grid increases toward the patient's left.
        column = torch.arange(components.shape[2], device=components.device)
        centre = [
            float((mask.sum(dim=(0, 1)) * column).sum() / mask.sum().clamp(1)) for mask in (largest, second)
        ]
        left, right = (largest, second) if centre[0] > centre[1] else (second, largest)
        lungs[right] = RIGHT_LUNG
        lungs[left] = LEFT_LUNG
        return lungs
