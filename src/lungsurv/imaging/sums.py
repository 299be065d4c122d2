"""Exact sums of a CT's integer voxels, in one numba pass (the conversion's scan statistics).

A module of its own so that importing the conversion does not import numba: the rings stage's
workers import it and never sum a scan.
"""

from __future__ import annotations

import numpy as np

from lungsurv.core.jit import cached_njit

#: Voxel types whose sums :func:`integer_sums` makes exactly in 64-bit integers (the squares of
#: fewer than 2^31 such values sum to below 2^63).
EXACT_SUM_TYPES = (np.int8, np.uint8, np.int16, np.uint16)


@cached_njit
def integer_sums(values: np.ndarray) -> tuple[int, int]:
    """The exact sum and sum of squares of a flat array of small integers."""
    total = 0
    squares = 0
    for i in range(values.size):
        value = np.int64(values[i])
        total += value
        squares += value * value
    return total, squares


def warm_up() -> None:
    """Compile (or load from numba's cache) :func:`integer_sums` for every voxel type."""
    for dtype in EXACT_SUM_TYPES:
        integer_sums(np.zeros(2, dtype=dtype))
