"""Label arrays, fast on CT-sized masks: their distinct values and their bounding box.

``np.unique`` sorts or hashes every voxel: about 0.05 s per ten million voxels, paid several
times per request on a CT-sized mask. A mask holds few labels (most often 0 and 1), so its
range is found in two passes, and only the values inside a small range are looked for. Its
bounding box likewise comes from per-axis projections, not from listing every voxel's index.
"""

from __future__ import annotations

import numpy as np

#: Widest range (max - min) of integers searched value by value; wider ones go to ``np.unique``.
MAX_SEARCHED_RANGE = 16


def distinct_labels(values: np.ndarray) -> np.ndarray:
    """The sorted distinct values of ``values``, as ``np.unique(values)`` returns them."""
    flat = np.asarray(values).ravel()
    if flat.size == 0 or not np.issubdtype(flat.dtype, np.integer):
        return np.unique(flat)
    low, high = flat.min(), flat.max()
    if int(high) - int(low) > MAX_SEARCHED_RANGE:
        return np.unique(flat)
    inner = [v for v in range(int(low) + 1, int(high)) if np.any(flat == v)]
    found = [low, *inner, high] if high != low else [low]
    return np.array(found, dtype=flat.dtype)


def nonzero_bounds(values: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """The indices (in ``values``' axis order) of the first and last non-zero element along each
    axis, ``np.argwhere(values).min(0)`` and ``.max(0)``; None when every element is zero."""
    array = np.asarray(values)
    if array.ndim == 0 or array.size == 0:
        return None
    slices = np.flatnonzero(array.any(axis=tuple(range(1, array.ndim))))
    if not slices.size:
        return None
    # The other axes are searched only in the slab of the first axis that holds anything.
    slab = array[slices[0] : slices[-1] + 1]
    first, last = [slices[0]], [slices[-1]]
    for axis in range(1, array.ndim):
        hits = np.flatnonzero(slab.any(axis=tuple(a for a in range(array.ndim) if a != axis)))
        first.append(hits[0])
        last.append(hits[-1])
    return np.array(first, dtype=np.intp), np.array(last, dtype=np.intp)


def nonzero_box(
    values: np.ndarray, spacing: np.ndarray, reach_mm: float, *, extra_voxels: int = 1
) -> tuple[slice, ...] | None:
    """Slices of ``values`` (axis order and ``spacing`` alike) covering its non-zero elements
    plus ``reach_mm`` and ``extra_voxels`` on every side, clipped to the array; None when every
    element is zero."""
    bounds = nonzero_bounds(values)
    if bounds is None:
        return None
    pad = np.ceil(reach_mm / np.asarray(spacing, dtype=float)).astype(int) + extra_voxels
    lower = np.maximum(bounds[0] - pad, 0)
    upper = np.minimum(bounds[1] + pad + 1, np.shape(values))
    return tuple(slice(int(lo), int(hi)) for lo, hi in zip(lower, upper, strict=True))
