"""radiomics.acceleration: each PyRadiomics patch gives the original's values and is undone."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from radiomics import base, cMatrices, imageoperations
from radiomics.firstorder import RadiomicsFirstOrder

from lungsurv.radiomics.acceleration import (
    accelerated_pyradiomics,
    fast_bin_edges,
    fast_moments,
    shared_binning,
    shared_percentiles,
)


def _values(kind: str) -> np.ndarray:
    rng = np.random.default_rng(7)
    if kind == "float32 z-scored":
        return (rng.normal(0, 100, 5000)).astype(np.float32)
    if kind == "float64 HU":
        return rng.normal(-300, 400, 5000)
    if kind == "negative edge":
        return np.array([-50.0, -25.0, 0.0, 24.999, 25.0])
    if kind == "constant":
        return np.full(40, 12.5)
    raise ValueError(kind)


@pytest.mark.parametrize("settings", [{"binWidth": 25}, {"binWidth": 7.5}, {"binCount": 16}])
@pytest.mark.parametrize("kind", ["float32 z-scored", "float64 HU", "negative edge", "constant"])
def test_bin_edges_equal_pyradiomics(kind: str, settings: dict) -> None:
    values = _values(kind)
    expected = imageoperations.getBinEdges(values, **settings)
    with fast_bin_edges():
        edges = imageoperations.getBinEdges(values, **settings)
    assert np.asarray(edges).dtype == np.asarray(expected).dtype
    assert np.array_equal(edges, expected)


def test_bin_edges_with_nan_go_to_the_original() -> None:
    values = np.array([3.0, np.nan, 80.0])  # Python's min/max skip a NaN after the first value
    expected = imageoperations.getBinEdges(values, binWidth=25)
    with fast_bin_edges():
        assert np.array_equal(imageoperations.getBinEdges(values, binWidth=25), expected)


@pytest.mark.parametrize("order", [2, 3, 4])
def test_moments_match_pyradiomics(order: int) -> None:
    voxels = np.random.default_rng(order).normal(-200, 300, (1, 20000))
    expected = RadiomicsFirstOrder._moment(voxels, order)
    with fast_moments():
        ours = RadiomicsFirstOrder._moment(voxels, order)
    if order == 2:
        assert np.array_equal(ours, expected)  # numpy squares for power 2 too
    else:
        # Products instead of pow(): a few units in the last place.
        np.testing.assert_allclose(ours, expected, rtol=1e-13, atol=0)


def test_moments_with_nan_rows_go_to_the_original() -> None:
    voxels = np.array([[1.0, 2.0, np.nan, 7.0]])
    expected = RadiomicsFirstOrder._moment(voxels, 3)
    with fast_moments():
        assert np.array_equal(RadiomicsFirstOrder._moment(voxels, 3), expected)


PERCENTILE_FEATURES = (
    "get10PercentileFeatureValue",
    "get90PercentileFeatureValue",
    "getInterquartileRangeFeatureValue",
    "getMedianFeatureValue",
    "getRobustMeanAbsoluteDeviationFeatureValue",
)


def _first_order(voxels: np.ndarray) -> RadiomicsFirstOrder:
    """A first-order feature class over ``voxels`` (a row), without an image behind it."""
    features = RadiomicsFirstOrder.__new__(RadiomicsFirstOrder)
    features.targetVoxelArray = voxels
    return features


@pytest.mark.parametrize("n_voxels", [1, 2, 7, 600, 601, 20000, 20001])
@pytest.mark.parametrize("kind", ["continuous", "ties"])
def test_percentile_features_equal_pyradiomics_bit_for_bit(n_voxels: int, kind: str) -> None:
    rng = np.random.default_rng(n_voxels)
    voxels = rng.normal(-200, 300, (1, n_voxels))
    if kind == "ties":  # HU-like integers with many repeats
        voxels = np.round(voxels / 50) * 50
    expected = {name: getattr(_first_order(voxels), name)() for name in PERCENTILE_FEATURES}
    with shared_percentiles():
        features = _first_order(voxels)  # one instance for every feature, as in PyRadiomics
        for name in PERCENTILE_FEATURES:
            assert np.array_equal(getattr(features, name)(), expected[name], equal_nan=True)


def test_percentiles_with_nan_rows_go_to_the_original() -> None:
    voxels = np.array([[1.0, 2.0, np.nan, 7.0, 3.0]])
    expected = [getattr(_first_order(voxels), name)() for name in PERCENTILE_FEATURES]
    with shared_percentiles():
        for name, value in zip(PERCENTILE_FEATURES, expected, strict=True):
            got = getattr(_first_order(voxels), name)()
            assert np.array_equal(got, value, equal_nan=True)


def test_nested_percentile_blocks_leave_pyradiomics_as_shipped() -> None:
    """Two extractions overlapping in time (serving's prediction threads) enter the block twice;
    whichever leaves last, PyRadiomics ends up unpatched."""
    shipped = RadiomicsFirstOrder.__dict__["getMedianFeatureValue"]
    with shared_percentiles():
        patched = RadiomicsFirstOrder.__dict__["getMedianFeatureValue"]
        assert patched is not shipped
        with shared_percentiles():
            assert RadiomicsFirstOrder.__dict__["getMedianFeatureValue"] is patched
        assert RadiomicsFirstOrder.__dict__["getMedianFeatureValue"] is patched
    assert RadiomicsFirstOrder.__dict__["getMedianFeatureValue"] is shipped


def _texture_inputs(seed: int) -> tuple[sitk.Image, sitk.Image]:
    rng = np.random.default_rng(seed)
    image = sitk.GetImageFromArray(rng.normal(0, 100, (12, 14, 16)).astype(np.float32))
    mask = sitk.GetImageFromArray((rng.random((12, 14, 16)) < 0.6).astype(np.uint8))
    mask.CopyInformation(image)
    return image, mask


def test_shared_binning_gives_every_class_pyradiomics_own_levels() -> None:
    from radiomics.glcm import RadiomicsGLCM
    from radiomics.glrlm import RadiomicsGLRLM

    image, mask = _texture_inputs(0)
    other_image, other_mask = _texture_inputs(1)
    twin_mask = sitk.Image(mask)  # the same voxels in another object: compared, then reused
    cases = [
        (RadiomicsGLCM, image, mask),
        (RadiomicsGLRLM, image, mask),  # same objects: reused without comparing
        (RadiomicsGLRLM, image, twin_mask),
        (RadiomicsGLCM, other_image, other_mask),  # another ROI: binned afresh
        (RadiomicsGLRLM, image, mask),
    ]
    expected = [feature_class(i, m, binWidth=25) for feature_class, i, m in cases]
    with shared_binning():
        for (feature_class, i, m), reference in zip(cases, expected, strict=True):
            binned = feature_class(i, m, binWidth=25)
            assert np.array_equal(binned.imageArray, reference.imageArray)
            assert binned.coefficients["Ng"] == reference.coefficients["Ng"]
            assert np.array_equal(
                binned.coefficients["grayLevels"], reference.coefficients["grayLevels"]
            )


def test_everything_is_put_back() -> None:
    before = (
        base.RadiomicsFeaturesBase._applyBinning,
        imageoperations.getBinEdges,
        RadiomicsFirstOrder.__dict__["_moment"],
        cMatrices.calculate_glcm,
        RadiomicsFirstOrder.__dict__["getMedianFeatureValue"],
    )
    with pytest.raises(RuntimeError), accelerated_pyradiomics():
        assert imageoperations.getBinEdges is not before[1]
        assert cMatrices.calculate_glcm is not before[3]
        raise RuntimeError("an extraction failing inside the block")
    after = (
        base.RadiomicsFeaturesBase._applyBinning,
        imageoperations.getBinEdges,
        RadiomicsFirstOrder.__dict__["_moment"],
        cMatrices.calculate_glcm,
        RadiomicsFirstOrder.__dict__["getMedianFeatureValue"],
    )
    assert after == before
