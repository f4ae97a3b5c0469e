"""Dice, HD95 and the finding figures on cases small enough to work out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from radrouter.evaluation.scores import dice, finding_scores, hausdorff95


def test_dice_counts_overlap_against_both_sizes() -> None:
    predicted = np.zeros((4, 4, 4), bool)
    reference = np.zeros((4, 4, 4), bool)
    predicted[0, 0, :4] = True  # 4 voxels
    reference[0, 0, 2:4] = True  # 2 voxels, both inside
    assert dice(predicted, reference) == pytest.approx(2 * 2 / (4 + 2))
    assert dice(np.zeros((2, 2, 2), bool), np.zeros((2, 2, 2), bool)) == 1.0
    assert dice(predicted, np.zeros_like(reference)) == 0.0


def test_hd95_is_the_distance_in_millimetres_with_anisotropic_spacing() -> None:
    predicted = np.zeros((6, 3, 3), bool)
    reference = np.zeros((6, 3, 3), bool)
    predicted[0, 1, 1] = True
    reference[4, 1, 1] = True
    assert hausdorff95(predicted, reference, (2.5, 1.0, 1.0)) == pytest.approx(10.0)
    assert hausdorff95(reference, reference, (2.5, 1.0, 1.0)) == 0.0
    assert math.isinf(hausdorff95(predicted, np.zeros_like(reference), (1.0, 1.0, 1.0)))


def test_finding_scores_from_a_confusion_table() -> None:
    truth = [True, True, True, False, False, False, False]
    probability = [0.9, 0.6, 0.2, 0.7, 0.1, 0.3, 0.4]
    scores = finding_scores(truth, probability, threshold=0.5)
    # called positive: 0.9, 0.6 (TP), 0.7 (FP); missed: 0.2 (FN); TN: 0.1, 0.3, 0.4
    assert (scores.sensitivity, scores.specificity) == pytest.approx((2 / 3, 3 / 4))
    assert scores.ppv == pytest.approx(2 / 3)
    assert scores.f1 == pytest.approx(2 * 2 / (2 * 2 + 1 + 1))
    # AUC: share of (positive, negative) pairs ranked right: 0.9>all 4, 0.6>3, 0.2>1 → 8 of 12.
    assert scores.auc == pytest.approx(8 / 12)
    assert finding_scores([True, True], [0.9, 0.1], 0.5).auc is None
