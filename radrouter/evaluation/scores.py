"""Agreement of a model with the reference: overlap and boundary distance for masks, ROC figures for findings.

Dice and the 95th-percentile Hausdorff distance follow the definitions of the Metrics Reloaded
recommendations (Maier-Hein et al., 2024): HD95 is the larger of the two directed 95th percentiles of
the distances between the masks' surfaces, in millimetres. Finding metrics come from scikit-learn.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage
from sklearn.metrics import confusion_matrix, roc_auc_score

Mask = NDArray[np.bool_]


def dice(predicted: Mask, reference: Mask) -> float:
    """2|A∩B| / (|A|+|B|); 1.0 when both masks are empty (the model rightly found nothing)."""
    total = int(predicted.sum()) + int(reference.sum())
    if total == 0:
        return 1.0
    return 2.0 * int(np.logical_and(predicted, reference).sum()) / total


def _surface(mask: Mask) -> Mask:
    return np.asarray(np.logical_and(mask, ~ndimage.binary_erosion(mask, border_value=0)), dtype=np.bool_)


def hausdorff95(predicted: Mask, reference: Mask, spacing_mm: Sequence[float]) -> float:
    """Symmetric 95th-percentile surface distance in mm; 0 for two empty masks, inf when one is empty."""
    if not predicted.any() and not reference.any():
        return 0.0
    if not predicted.any() or not reference.any():
        return math.inf
    surface_p, surface_r = _surface(predicted), _surface(reference)
    to_reference = ndimage.distance_transform_edt(~surface_r, sampling=spacing_mm)
    to_predicted = ndimage.distance_transform_edt(~surface_p, sampling=spacing_mm)
    return float(max(np.percentile(to_reference[surface_p], 95), np.percentile(to_predicted[surface_r], 95)))


@dataclass(frozen=True)
class FindingScores:
    """Detection figures of one finding over a set of cases, at the given probability threshold."""

    cases: int
    positives: int
    sensitivity: float | None
    specificity: float | None
    ppv: float | None
    f1: float | None
    auc: float | None


def _ratio(numerator: int, denominator: int) -> float | None:
    return numerator / denominator if denominator else None


def finding_scores(truth: Sequence[bool], probability: Sequence[float], threshold: float) -> FindingScores:
    """Sensitivity, specificity, PPV, F1 at ``threshold``; AUC when both classes are present."""
    labels = np.asarray(truth, dtype=bool)
    scores = np.asarray(probability, dtype=float)
    called = scores >= threshold
    tn, fp, fn, tp = (int(v) for v in confusion_matrix(labels, called, labels=[False, True]).ravel())
    auc = float(roc_auc_score(labels, scores)) if 0 < labels.sum() < len(labels) else None
    return FindingScores(
        cases=len(labels),
        positives=int(labels.sum()),
        sensitivity=_ratio(tp, tp + fn),
        specificity=_ratio(tn, tn + fp),
        ppv=_ratio(tp, tp + fp),
        f1=_ratio(2 * tp, 2 * tp + fp + fn),
        auc=auc,
    )
