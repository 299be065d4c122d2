"""distinct_labels: np.unique's answer for every integer type, range and size."""

from __future__ import annotations

import numpy as np
import pytest

from lungsurv.core.labels import MAX_SEARCHED_RANGE, distinct_labels


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
