"""radiomics.acceleration: each PyRadiomics patch gives the original's values and is undone."""

from __future__ import annotations

import numpy as np
import pytest
from radiomics import base, cMatrices, imageoperations
from radiomics.firstorder import RadiomicsFirstOrder

from lungsurv.radiomics.acceleration import accelerated_pyradiomics, fast_bin_edges, fast_moments


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


def test_everything_is_put_back() -> None:
    before = (
        base.RadiomicsFeaturesBase._applyBinning,
        imageoperations.getBinEdges,
        RadiomicsFirstOrder.__dict__["_moment"],
        cMatrices.calculate_glcm,
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
    )
    assert after == before
