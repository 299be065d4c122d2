"""radiomics.recursive_gaussian: the LoG filter equals SimpleITK's bit for bit."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import SimpleITK as sitk
from radiomics import imageoperations

from lungsurv.radiomics.recursive_gaussian import (
    laplacian_of_gaussian,
    log_images,
    recursive_gaussian_coefficients,
)


def _image(
    shape: tuple[int, int, int], spacing: tuple[float, float, float], seed: int
) -> sitk.Image:
    rng = np.random.default_rng(seed)
    # A smooth field plus noise and a step, like a CT around a tumour, on a non-trivial grid.
    values = rng.normal(0.0, 100.0, shape) + np.linspace(-500, 500, shape[2])[None, None, :]
    values[: shape[0] // 2] += 300.0
    image = sitk.GetImageFromArray(values.astype(np.float32))
    image.SetSpacing(spacing)
    image.SetOrigin((-12.5, 40.0, 7.25))
    image.SetDirection((0.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, -1.0))
    return image


def _sitk_log(image: sitk.Image, sigma: float) -> sitk.Image:
    log = sitk.LaplacianRecursiveGaussianImageFilter()
    log.SetNormalizeAcrossScale(True)
    log.SetSigma(sigma)
    return log.Execute(image)


@pytest.mark.parametrize(
    ("shape", "spacing"),
    [
        ((4, 4, 4), (1.0, 1.0, 1.0)),  # the smallest ITK filters: every edge case at once
        ((5, 9, 4), (1.0, 1.0, 1.0)),
        ((23, 41, 30), (0.7, 1.3, 2.5)),
        ((40, 37, 600), (1.0, 1.0, 1.0)),  # wider than one block of lines
    ],
)
@pytest.mark.parametrize("sigma", [0.5, 1.0, 2.5, 5.0])
@pytest.mark.parametrize("pixel_type", [sitk.sitkFloat32, sitk.sitkFloat64, sitk.sitkInt16])
def test_equals_simpleitk_bit_for_bit(
    shape: tuple[int, int, int], spacing: tuple[float, float, float], sigma: float, pixel_type: int
) -> None:
    image = _image(shape, spacing, seed=sum(shape))
    # float64: PyRadiomics' own normalisation gives doubles; int16: a CT as stored.
    image = sitk.Cast(image * (1.0 if pixel_type != sitk.sitkFloat64 else 1.1), pixel_type)
    expected = _sitk_log(image, sigma)
    got = laplacian_of_gaussian(image, sigma)
    assert np.array_equal(sitk.GetArrayViewFromImage(got), sitk.GetArrayViewFromImage(expected))
    assert got.GetPixelID() == expected.GetPixelID() == sitk.sitkFloat32
    assert got.GetSpacing() == expected.GetSpacing()
    assert got.GetOrigin() == expected.GetOrigin()
    assert got.GetDirection() == expected.GetDirection()


@pytest.mark.parametrize(
    ("image", "message"),
    [
        (sitk.Image(8, 8, 8, sitk.sitkInt64), "32-bit integer"),
        (sitk.Image([8, 8, 8], sitk.sitkVectorFloat32, 2), "scalar"),
        (sitk.Image(8, 8, sitk.sitkFloat32), "3-D"),
        (sitk.Image(8, 3, 8, sitk.sitkFloat32), "at least 4"),
    ],
)
def test_unsupported_images_are_refused(image: sitk.Image, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        laplacian_of_gaussian(image, 1.0)


@pytest.mark.parametrize(("sigma", "spacing"), [(0.0, 1.0), (1.0, 0.0), (-1.0, 1.0)])
def test_coefficients_refuse_non_positive_values(sigma: float, spacing: float) -> None:
    with pytest.raises(ValueError, match="must be > 0"):
        recursive_gaussian_coefficients(sigma, spacing, second_order=True)


@pytest.mark.parametrize("pixel_type", [sitk.sitkFloat32, sitk.sitkInt16, sitk.sitkInt64])
def test_log_images_match_pyradiomics_names_settings_and_skips(
    pixel_type: int, caplog: pytest.LogCaptureFixture
) -> None:
    image = sitk.Cast(_image((6, 20, 20), (1.0, 1.0, 1.0), seed=3), pixel_type)
    mask = sitk.Image(image.GetSize(), sitk.sitkUInt8)
    settings = {"sigma": [1, 2.5, 0, 8.0], "binWidth": 25}
    with caplog.at_level(logging.WARNING):
        ours = list(log_images(image, mask, **settings))
    theirs = list(imageoperations.getLoGImage(image, mask, **settings))
    # sigma 0 is refused and sigma 8 does not fit the 6 slices, as in PyRadiomics.
    assert [name for _, name, _ in ours] == [name for _, name, _ in theirs]
    assert [name for _, name, _ in ours] == ["log-sigma-1-mm-3D", "log-sigma-2-5-mm-3D"]
    for (got, _, got_settings), (expected, _, expected_settings) in zip(ours, theirs, strict=True):
        assert got_settings == expected_settings
        assert np.array_equal(sitk.GetArrayViewFromImage(got), sitk.GetArrayViewFromImage(expected))
    if pixel_type != sitk.sitkInt64:  # ours; int64 goes to PyRadiomics, which logs its own
        assert "sigma must be greater than 0.0" in caplog.text
        assert "must be greater than the size" in caplog.text


def test_too_small_images_yield_nothing() -> None:
    image = sitk.Image(3, 10, 10, sitk.sitkFloat32)
    assert list(log_images(image, image, sigma=[1.0])) == []
