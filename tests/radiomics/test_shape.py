"""Shape coefficients equal PyRadiomics' own C routine, on random blobs and rings."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from lungsurv.radiomics.shape import _C_COEFFICIENTS, cube_patterns, mesh_coefficients


def blob(seed: int, shape: tuple[int, int, int] = (30, 36, 33), level: float = 0.1) -> np.ndarray:
    field = ndimage.gaussian_filter(np.random.default_rng(seed).standard_normal(shape), 2.0)
    return np.pad(field / field.std() > level, 1)


def ring(radius: int = 9, width: int = 3) -> np.ndarray:
    z, y, x = np.indices((2 * (radius + width) + 3,) * 3) - (radius + width + 1)
    distance = np.sqrt(x**2 + y**2 + z**2)
    return np.pad((distance > radius) & (distance <= radius + width), 1)


@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (3.0, 0.977, 0.977)])
@pytest.mark.parametrize("mask_factory", [lambda: blob(1), lambda: blob(2, level=1.2), ring])
def test_equal_to_pyradiomics(spacing: tuple[float, float, float], mask_factory) -> None:
    mask = mask_factory()
    assert mask.any()
    spacing_array = np.asarray(spacing)
    area, volume, diameters = _C_COEFFICIENTS(mask, spacing_array)
    fast_area, fast_volume, fast_diameters = mesh_coefficients(mask, spacing_array)
    assert fast_area == pytest.approx(area, rel=1e-10)
    assert fast_volume == pytest.approx(volume, rel=1e-10)
    assert np.array_equal(fast_diameters, np.asarray(diameters))


def test_single_voxel_and_flat_masks() -> None:
    for mask in (np.pad(np.ones((1, 1, 1), bool), 1), np.pad(np.ones((1, 6, 7), bool), 1)):
        expected = _C_COEFFICIENTS(mask, np.ones(3))
        area, volume, diameters = mesh_coefficients(mask, np.ones(3))
        assert area == pytest.approx(expected[0], rel=1e-10)
        assert volume == pytest.approx(expected[1], rel=1e-10)
        assert np.array_equal(diameters, np.asarray(expected[2]))


def test_cube_patterns_bits() -> None:
    mask = np.zeros((2, 2, 2), bool)
    mask[1, 1, 0] = True  # the corner PyRadiomics numbers 7
    assert cube_patterns(mask)[0, 0, 0] == 1 << 7
