"""radiomics.wavelet: the asked sub-bands equal PyRadiomics' getWaveletImage bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from radiomics import imageoperations

from lungsurv.radiomics.wavelet import wavelet_images


def _image(shape: tuple[int, int, int], seed: int = 0) -> tuple[sitk.Image, sitk.Image]:
    values = np.random.default_rng(seed).normal(size=shape).astype(np.float32)
    image = sitk.GetImageFromArray(values)
    image.SetSpacing((0.9, 1.0, 2.5))
    image.SetOrigin((4.0, -2.0, 7.5))
    return image, sitk.Cast(image > 0, sitk.sitkUInt32)


def _arrays(images: object) -> dict[str, np.ndarray]:
    return {name: sitk.GetArrayFromImage(image) for image, name, _ in images}  # type: ignore[attr-defined]


@pytest.mark.parametrize("shape", [(9, 12, 7), (10, 10, 10), (5, 8, 11)])
@pytest.mark.parametrize("settings", [{}, {"force2D": True, "force2Ddimension": 0}])
def test_every_sub_band_equals_pyradiomics_in_its_order(shape: tuple, settings: dict) -> None:
    image, mask = _image(shape)
    theirs = list(imageoperations.getWaveletImage(image, mask, **settings))
    ours = list(wavelet_images(image, mask, {name for _, name, _ in theirs}, **settings))
    assert [name for _, name, _ in ours] == [name for _, name, _ in theirs]
    for (mine, _, _), (reference, _, _) in zip(ours, theirs, strict=True):
        assert np.array_equal(sitk.GetArrayFromImage(mine), sitk.GetArrayFromImage(reference))
        assert mine.GetPixelID() == reference.GetPixelID()
        assert mine.GetOrigin() == reference.GetOrigin()
        assert mine.GetSpacing() == reference.GetSpacing()


@pytest.mark.parametrize("bands", [{"wavelet-LLH"}, {"wavelet-HHL", "wavelet-LLL"}, set()])
def test_only_the_asked_sub_bands_are_made(bands: set[str]) -> None:
    image, mask = _image((9, 8, 7))
    reference = _arrays(imageoperations.getWaveletImage(image, mask))
    ours = _arrays(wavelet_images(image, mask, bands))
    assert set(ours) == bands
    assert all(np.array_equal(ours[name], reference[name]) for name in bands)


def test_two_levels_go_to_pyradiomics() -> None:
    image, mask = _image((8, 8, 8))
    reference = _arrays(imageoperations.getWaveletImage(image, mask, level=2))
    ours = _arrays(wavelet_images(image, mask, {"wavelet2-LLH"}, level=2))
    assert set(ours) == {"wavelet2-LLH"}
    assert np.array_equal(ours["wavelet2-LLH"], reference["wavelet2-LLH"])


@pytest.mark.parametrize("name", ["wavelet-LLX", "wavelet-LL", "wavelet-LLHH"])
def test_a_name_that_is_no_sub_band_is_a_value_error_naming_it(name: str) -> None:
    image, mask = _image((6, 6, 6))
    with pytest.raises(ValueError, match=name):
        list(wavelet_images(image, mask, {name}))
