"""ct-lung on a real chest CT (LIDC-IDRI-0001, 16 slices): two lungs, on the right sides, plausible HU."""

from __future__ import annotations

import highdicom as hd
import numpy as np
import pytest
import torch

from radrouter.inference.models.ct_lung import LEFT_LUNG, RIGHT_LUNG, CTLung, connected_components
from radrouter.inference.pipeline import Prediction
from radrouter.inference.volume import load_volume, read_series
from tests.services import CT_CHEST


@pytest.fixture(scope="module")
def lungs() -> tuple[hd.Volume, Prediction]:
    volume = load_volume(read_series(sorted(CT_CHEST.glob("*.dcm"))))
    pipeline = CTLung()
    pipeline.load(torch.device("cpu"))
    return volume, pipeline.predict(volume)


def test_two_lungs_left_of_each_other_as_the_patient_is(lungs: tuple[hd.Volume, Prediction]) -> None:
    volume, prediction = lungs
    labels = prediction.labelmap.array
    assert set(np.unique(labels)) == {0, RIGHT_LUNG, LEFT_LUNG}
    x = {label: (volume.affine @ np.append(np.argwhere(labels == label).mean(0), 1))[0] for label in (1, 2)}
    assert x[LEFT_LUNG] > x[RIGHT_LUNG] + 50  # DICOM +x points to the patient's left


def test_lung_voxels_have_lung_densities(lungs: tuple[hd.Volume, Prediction]) -> None:
    volume, prediction = lungs
    for label in (RIGHT_LUNG, LEFT_LUNG):
        inside = volume.array[prediction.labelmap.array == label]
        assert -920 < inside.mean() < -700
        assert np.percentile(inside, 5) < -850
        # The trachea, outside air and the table are not lung: no voxel of pure air outside the body.
        assert (inside < -1010).mean() < 0.01


def test_measurements_are_those_of_the_mask(lungs: tuple[hd.Volume, Prediction]) -> None:
    volume, prediction = lungs
    values = {(m.name, m.segment): m.value for m in prediction.measurements}
    for label in (RIGHT_LUNG, LEFT_LUNG):
        inside = volume.array[prediction.labelmap.array == label]
        assert values[("LAA-950", label)] == pytest.approx(100 * (inside < -950).mean(), abs=0.01)
        assert values[("Mean lung density", label)] == pytest.approx(inside.mean(), abs=0.1)


def test_connected_components_separate_and_join() -> None:
    mask = torch.zeros(3, 8, 8, dtype=torch.bool)
    mask[:, 1:3, 1:3] = True  # one block through all slices
    mask[1, 5:7, 5:7] = True  # another, only in the middle slice
    mask[0, 3, 2] = True  # touches the first block side by side: same component
    labels = connected_components(mask)
    assert labels[0, 1, 1] == labels[2, 2, 2] == labels[0, 3, 2] != 0
    assert labels[1, 5, 5] not in (0, labels[0, 1, 1])
    assert int(labels.max()) == 2 and bool((labels[~mask] == 0).all())
