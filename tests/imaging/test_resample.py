"""Separable cubic B-spline resampling: ITK's values, voxel for voxel, at a fraction of its cost."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from lungsurv.imaging.convert import ConvertSettings, crop_grid, load_patient
from lungsurv.imaging.resample import (
    AIR_HU,
    bspline_weights,
    is_axis_aligned,
    resample_bspline,
    source_region,
)

#: A direction shared by image and grid that is not the identity (axes swapped and tilted).
TILTED = tuple(
    np.linalg.qr(np.array([[0.0, 1.0, 0.2], [1.0, 0.0, 0.1], [0.3, 0.1, -1.0]]))[0].ravel()
)


def itk_bspline(image: sitk.Image, grid: sitk.Image) -> np.ndarray:
    source = sitk.Cast(image, sitk.sitkFloat32)
    resampled = sitk.Resample(
        source, grid, sitk.Transform(), sitk.sitkBSpline, AIR_HU, sitk.sitkFloat32
    )
    return sitk.GetArrayFromImage(resampled)


def volume(size: tuple[int, int, int], spacing: tuple[float, float, float], seed: int):
    rng = np.random.default_rng(seed)
    values = rng.normal(0.0, 300.0, size[::-1]).astype(np.int16)  # HU-like, stored as a CT is
    image = sitk.GetImageFromArray(values)
    image.SetSpacing(spacing)
    image.SetOrigin((-40.3, 12.7, -101.5))
    return image


def grid_over(image: sitk.Image, size, spacing, shift) -> sitk.Image:
    grid = sitk.Image(list(size), sitk.sitkUInt8)
    grid.SetSpacing(spacing)
    grid.SetDirection(image.GetDirection())
    offset = np.asarray(image.GetDirection()).reshape(3, 3) @ np.asarray(shift, dtype=float)
    grid.SetOrigin(tuple(np.asarray(image.GetOrigin()) + offset))
    return grid


@pytest.mark.parametrize(
    ("size", "spacing", "grid_size", "shift", "direction"),
    [
        ((30, 28, 12), (0.98, 0.98, 3.0), (29, 27, 36), (0.3, 0.1, 0.4), None),  # a planning CT
        ((25, 25, 20), (0.7, 0.7, 2.5), (18, 18, 50), (0.05, 0.2, 0.0), None),  # finer in-plane
        ((20, 22, 9), (1.3, 1.1, 5.0), (26, 24, 45), (-0.6, -0.4, -2.0), None),  # partly outside
        ((16, 17, 8), (1.0, 1.0, 1.0), (16, 17, 8), (0.0, 0.0, 0.0), None),  # the same grid
        ((12, 14, 1), (0.9, 0.9, 3.0), (11, 12, 1), (0.2, 0.3, 0.0), None),  # one slice
        ((18, 16, 10), (0.9, 1.2, 2.0), (17, 20, 20), (0.4, 0.2, 0.5), TILTED),  # oblique, aligned
    ],
)
def test_equals_itk_voxel_for_voxel(size, spacing, grid_size, shift, direction) -> None:
    image = volume(size, spacing, seed=sum(size))
    if direction is not None:
        image.SetDirection(direction)
    grid = grid_over(image, grid_size, (1.0, 1.0, 1.0), shift)
    ours = sitk.GetArrayFromImage(resample_bspline(image, grid, AIR_HU))
    theirs = itk_bspline(image, grid)
    assert ours.dtype == np.float32 and ours.shape == theirs.shape
    # Equal up to double-precision rounding that float32 storage almost always hides.
    assert np.abs(ours - theirs).max() <= 1e-4 and np.mean(ours == theirs) > 0.99
    assert (ours == AIR_HU).any() == (theirs == AIR_HU).any()


@pytest.mark.slow
def test_equals_itk_on_a_real_ct(lung1_row: dict) -> None:
    loaded = load_patient(lung1_row, ConvertSettings(), Path("unused"))
    grid, _, _ = crop_grid(loaded.gtv, 35.0, 1.0)
    source = source_region(loaded.image, grid)
    ours = sitk.GetArrayFromImage(resample_bspline(source, grid, AIR_HU))
    assert np.array_equal(ours, itk_bspline(source, grid))


def test_the_weights_are_a_partition_of_unity_mirrored_at_the_edges() -> None:
    positions = np.array([-0.4, 0.0, 0.25, 3.5, 4.9])
    weights = bspline_weights(positions, 5).toarray()
    assert np.allclose(weights.sum(axis=1), 1.0)
    assert np.allclose(weights[1], [4 / 6, 2 / 6, 0, 0, 0])  # taps -1 and 1 meet at index 1
    assert np.allclose(bspline_weights(np.array([0.3]), 1).toarray(), [[1.0]])
    with pytest.raises(ValueError, match="length must be >= 1, got 0"):
        bspline_weights(positions, 0)


def test_a_grid_not_aligned_with_the_image_is_refused() -> None:
    image = volume((10, 10, 6), (1.0, 1.0, 2.0), seed=0)
    grid = grid_over(image, (8, 8, 8), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0))
    grid.SetDirection(TILTED)
    assert not is_axis_aligned(image, grid)
    with pytest.raises(ValueError, match="not separable"):
        resample_bspline(image, grid, AIR_HU)
