"""Input checks and the model grid, on real series."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from radrouter.inference.pipeline import InputSpec, PipelineInputError
from radrouter.inference.prepare import ModelGrid, check_input, normalise_intensities
from radrouter.inference.volume import load_volume, read_series
from tests.services import CT_CHEST


@pytest.fixture(scope="module")
def chest() -> tuple[list, object]:
    datasets = read_series(sorted(CT_CHEST.glob("*.dcm")))
    return datasets, load_volume(datasets)


def test_a_series_that_does_not_fit_is_refused_with_the_reason(chest: tuple) -> None:
    datasets, volume = chest
    check_input(InputSpec(modalities=("CT",), min_slices=16), datasets, volume)
    with pytest.raises(PipelineInputError, match="needs modality MR, the series is 'CT'"):
        check_input(InputSpec(modalities=("MR",)), datasets, volume)
    with pytest.raises(PipelineInputError, match="needs at least 17 slices, the series has 16"):
        check_input(InputSpec(min_slices=17), datasets, volume)


def test_window_and_normalisation() -> None:
    values = np.array([-2000.0, -1000.0, 0.0, 1000.0, 3000.0])
    windowed = normalise_intensities(values, InputSpec(window=(-1000, 1000), normalisation="window"))
    np.testing.assert_allclose(windowed, [0, 0, 0.5, 1, 1])
    zscored = normalise_intensities(values, InputSpec(normalisation="zscore"))
    assert abs(zscored.mean()) < 1e-6 and zscored.std() == pytest.approx(1, rel=1e-5)


def test_the_model_grid_is_oriented_and_resampled_and_labels_come_back(chest: tuple) -> None:
    _, volume = chest
    grid = ModelGrid(volume, InputSpec(orientation="LPH", spacing_mm=(1.4, 1.4, 5.0)))
    image = grid.model_input()
    assert tuple(image.shape) == (1, 1, 257, 257, 8)
    scores = torch.cat([image < -500, image >= -500], dim=1).float()
    back = grid.to_source(scores)
    labelmap = grid.labelmap(back.argmax(0).numpy())
    assert labelmap.spatial_shape == volume.spatial_shape
    np.testing.assert_allclose(labelmap.affine, volume.affine)
    agreement = ((labelmap.array == 1) == (volume.array >= -500)).mean()
    assert agreement > 0.97
