"""lungsurv.core.labels: np.unique's answer for any integer type, range and size; the box."""

from __future__ import annotations

import numpy as np
import pytest

from lungsurv.core.labels import MAX_SEARCHED_RANGE, distinct_labels, nonzero_bounds, nonzero_box


@pytest.mark.parametrize(
    "dtype", [np.uint8, np.int8, np.uint16, np.int16, np.uint32, np.int32, np.int64, np.float32]
)
@pytest.mark.parametrize(
    "values",
    [
        [0, 1, 1, 0],  # a binary mask
        [0, 0, 0],  # empty
        [3],  # one label
        [0, 2, 5, 2],  # gaps inside the range
        [0, MAX_SEARCHED_RANGE + 1, 4],  # wider than searched: np.unique
        [-3, 5, -3],  # negative labels (signed types)
        [],
    ],
)
def test_same_as_unique(dtype: type, values: list[int]) -> None:
    # Negative values wrap around in an unsigned type: both functions see the same array.
    array = np.array(values, dtype=np.int64).astype(dtype).reshape(-1, 1, 1)
    found = distinct_labels(array)
    expected = np.unique(array)
    assert np.array_equal(found, expected) and found.dtype == expected.dtype


def test_a_ct_sized_mask() -> None:
    rng = np.random.default_rng(0)
    mask = (rng.random((40, 128, 128)) < 0.01).astype(np.uint8) * 3
    mask[0, 0, 0] = 7
    assert list(distinct_labels(mask)) == [0, 3, 7]


@pytest.mark.parametrize("shape", [(7,), (5, 9), (6, 4, 8)])
@pytest.mark.parametrize("seed", range(4))
def test_nonzero_bounds_are_argwheres_extremes(shape: tuple[int, ...], seed: int) -> None:
    rng = np.random.default_rng(seed)
    array = (rng.random(shape) > 0.9).astype(np.uint8)
    array.flat[rng.integers(array.size)] = 1  # never empty
    first, last = nonzero_bounds(array)
    where = np.argwhere(array)
    assert first.tolist() == where.min(axis=0).tolist()
    assert last.tolist() == where.max(axis=0).tolist()


@pytest.mark.parametrize("array", [np.zeros((3, 4, 5), bool), np.zeros((0, 4)), np.array(0)])
def test_nonzero_bounds_of_nothing_is_none(array: np.ndarray) -> None:
    assert nonzero_bounds(array) is None


@pytest.mark.parametrize(
    ("spacing", "reach_mm", "extra", "expected"),
    [
        ((1.0, 1.0, 1.0), 2.0, 1, (slice(1, 8), slice(0, 9), slice(5, 10))),
        ((2.5, 1.0, 0.5), 2.0, 0, (slice(3, 6), slice(1, 8), slice(4, 10))),
    ],
)
def test_nonzero_box_pads_in_mm_and_clips(spacing, reach_mm, extra, expected) -> None:
    values = np.zeros((10, 10, 10), dtype=bool)
    values[4, 3:6, 8] = True
    assert nonzero_box(values, np.array(spacing), reach_mm, extra_voxels=extra) == expected
    assert nonzero_box(np.zeros((3, 3, 3)), np.ones(3), 1.0) is None
