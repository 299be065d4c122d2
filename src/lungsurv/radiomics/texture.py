"""PyRadiomics' texture matrices (GLCM, GLRLM, GLSZM, NGTDM, GLDM), computed faster, same values.

PyRadiomics builds its texture matrices in C (``radiomics._cmatrices``), walking every voxel of
the ROI's box with a flat index and recovering each voxel's position with integer divisions and
remainders at every step; those divisions were most of the radiomics stage's run time. The
kernels (numba, :mod:`lungsurv.radiomics.texture_kernels`) visit only the ROI's voxels, in the
same raster order, on a grid padded by the largest step so that neighbours are flat offsets with
no bounds checks; GLRLM counts each run from its first voxel instead of walking every line of the
box, and GLCM, NGTDM and GLDM come from one sweep over the neighbours. Counts are integers
either way, and the one floating-point sum (NGTDM's neighbourhood differences) is accumulated
voxel by voxel in the C code's order, so the matrices are equal bit for bit (the tests compare
them with ``np.array_equal`` on random and edge-case ROIs; the radiomics tests compare whole
feature sets with PyRadiomics on LUNG1-001).

:func:`fast_texture_matrices` swaps the kernels into PyRadiomics for the duration of a ``with``
block; the feature classes then run unchanged. The angle sets come from PyRadiomics' own
``generate_angles``. Voxel-based extraction (kernelRadius / voxel coordinates) is handed to the C
functions as before.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

from lungsurv.radiomics.texture_kernels import (
    BOX,
    ROI,
    glcm_matrix,
    gldm_matrix,
    glrlm_matrix,
    glszm_matrix,
    neighbour_matrices,
    ngtdm_matrix,
)

#: Names of the ``radiomics._cmatrices`` functions this module replaces.
KERNELS: tuple[str, ...] = (
    "calculate_glcm",
    "calculate_glrlm",
    "calculate_glszm",
    "calculate_ngtdm",
    "calculate_gldm",
)


def _c_matrices() -> Any:
    from radiomics import cMatrices

    return cMatrices


def _angles(
    shape: tuple[int, ...],
    distances: Any,
    *,
    bidirectional: bool,
    force2d: bool,
    force2d_dimension: int,
) -> np.ndarray:
    """PyRadiomics' own angle set for an image of ``shape`` (the order fixes the matrices' last
    axis)."""
    return _c_matrices().generate_angles(
        np.asarray(shape, dtype=np.int32),
        np.asarray(distances, dtype=np.int32),
        bidirectional,
        force2d,
        force2d_dimension,
    )


def _padded(image: np.ndarray, mask: np.ndarray, pad: int) -> tuple[np.ndarray, np.ndarray]:
    """Flat image and voxel codes with a border of ``pad`` voxels of ``OUTSIDE`` around the box
    (the largest distance the kernels step), so they step with flat offsets and need no bounds
    checks: a step from inside lands in the border, never in another row."""
    codes = np.zeros(tuple(s + 2 * pad for s in image.shape), dtype=np.uint8)
    inner = tuple(slice(pad, s + pad) for s in image.shape)
    codes[inner] = np.where(mask, ROI, BOX)
    padded = np.zeros(codes.shape, dtype=np.int32)
    padded[inner] = image
    return padded.ravel(), codes.ravel()


def _offsets(grid: _Grid, angles: np.ndarray) -> np.ndarray:
    """Flat offsets of ``angles`` on ``grid``'s padded layout."""
    _, ny, nx = (s + 2 * grid.pad for s in grid.shape)
    strides = np.array([ny * nx, nx, 1], dtype=np.int64)
    return angles.astype(np.int64) @ strides


@dataclass(frozen=True)
class _Grid:
    """An (image, mask) pair laid out for the kernels."""

    shape: tuple[int, int, int]
    image: np.ndarray
    codes: np.ndarray
    voxels: np.ndarray
    pad: int


#: The last (image, mask, grid): PyRadiomics' five texture classes ask for the same pair in turn.
_last_grid: list[tuple[np.ndarray, np.ndarray, _Grid]] = []


def _grid(image: Any, mask: Any, pad: int = 1) -> _Grid:
    image = np.asarray(image)
    mask = np.asarray(mask)
    if image.ndim != 3 or mask.shape != image.shape:
        raise ValueError(
            f"expected a 3D image and a mask of the same shape, got {image.shape} and {mask.shape}"
        )
    if _last_grid:
        last_image, last_mask, grid = _last_grid[0]
        # A read-only image (the binned image the classes share) is known by identity.
        same_image = (last_image is image and not image.flags.writeable) or np.array_equal(
            last_image, image
        )
        if grid.pad >= pad and same_image and np.array_equal(last_mask, mask):
            return grid
    flat_image, codes = _padded(
        image.astype(np.int32, copy=False), mask.astype(bool, copy=False), pad
    )
    shape = (int(image.shape[0]), int(image.shape[1]), int(image.shape[2]))
    # The padding is never ROI, so the flat order of the padded grid is the raster order.
    grid = _Grid(shape, flat_image, codes, np.flatnonzero(codes == ROI), pad)
    kept = image if not image.flags.writeable else image.copy()
    _last_grid[:] = [(kept, mask.copy(), grid)]
    return grid


def _prepared(
    image: Any, mask: Any, distances: Any, bidirectional: bool, force2d: bool, dimension: int
) -> tuple[_Grid, np.ndarray, np.ndarray]:
    """The kernels' grid, PyRadiomics' angles and their flat offsets for one call."""
    pad = max(1, int(np.max(np.abs(np.asarray(distances)), initial=1)))
    grid = _grid(image, mask, pad)
    angles = _angles(
        grid.shape,
        distances,
        bidirectional=bidirectional,
        force2d=force2d,
        force2d_dimension=dimension,
    )
    return grid, angles, _offsets(grid, angles)


#: The GLDM's alpha the one-sweep kernel assumes (PyRadiomics' default ``gldm_a``).
_SWEEP_ALPHA = 0
#: The last one-sweep result: (grid, its key, {"glcm": ..., "ngtdm": ..., "gldm": ...}).
_last_sweep: list[tuple[_Grid, tuple[Any, ...], dict[str, np.ndarray]]] = []


def _swept(
    grid: _Grid, kind: str, distances: Any, ng: int, force2d: bool, dimension: int
) -> np.ndarray | None:
    """``kind``'s matrix from :func:`neighbour_matrices`, which the first of the GLCM, NGTDM and
    GLDM classes of an (image, ROI) pair runs for all three; None where the sweep does not
    apply (GLCM's angles not the first half of the bidirectional set) or failed (the kernel of
    ``kind`` then raises its own error)."""
    key = (tuple(np.asarray(distances).ravel().tolist()), ng, force2d, dimension)
    if _last_sweep and _last_sweep[0][0] is grid and _last_sweep[0][1] == key:
        return _last_sweep[0][2][kind].copy()  # PyRadiomics adds to its matrices in place
    one_way = _angles(
        grid.shape, distances, bidirectional=False, force2d=force2d, force2d_dimension=dimension
    )
    both_ways = _angles(
        grid.shape, distances, bidirectional=True, force2d=force2d, force2d_dimension=dimension
    )
    if not np.array_equal(both_ways[: len(one_way)], one_way):
        return None
    offsets = _offsets(grid, both_ways)
    try:
        glcm, ngtdm, gldm = neighbour_matrices(
            grid.image, grid.codes, grid.voxels, offsets, len(one_way), ng, _SWEEP_ALPHA
        )
    except IndexError:
        return None
    _last_sweep[:] = [(grid, key, {"glcm": glcm, "ngtdm": ngtdm, "gldm": gldm})]
    return _last_sweep[0][2][kind].copy()


def calculate_glcm(
    image: Any,
    mask: Any,
    distances: Any,
    ng: int,
    force2d: bool,
    force2d_dimension: int,
    *extra: Any,
) -> tuple[np.ndarray, np.ndarray]:
    """``radiomics.cMatrices.calculate_glcm``: (matrix of shape (1, Ng, Ng, Na), angles)."""
    if extra:
        return _c_matrices().calculate_glcm(
            image, mask, distances, ng, force2d, force2d_dimension, *extra
        )
    grid, angles, offsets = _prepared(image, mask, distances, False, force2d, force2d_dimension)
    swept = _swept(grid, "glcm", distances, ng, force2d, force2d_dimension)
    if swept is not None:
        return swept[None], angles
    return glcm_matrix(grid.image, grid.codes, grid.voxels, offsets, ng)[None], angles


def calculate_glrlm(
    image: Any, mask: Any, ng: int, nr: int, force2d: bool, force2d_dimension: int, *extra: Any
) -> tuple[np.ndarray, np.ndarray]:
    """``radiomics.cMatrices.calculate_glrlm``: (matrix of shape (1, Ng, Nr, Na), angles)."""
    if extra:
        return _c_matrices().calculate_glrlm(
            image, mask, ng, nr, force2d, force2d_dimension, *extra
        )
    grid, angles, offsets = _prepared(image, mask, [1], False, force2d, force2d_dimension)
    matrix = glrlm_matrix(grid.image, grid.codes, grid.voxels, offsets, ng, nr)
    return matrix[None], angles


def calculate_glszm(
    image: Any, mask: Any, ng: int, ns: int, force2d: bool, force2d_dimension: int, *extra: Any
) -> np.ndarray:
    """``radiomics.cMatrices.calculate_glszm``: matrix of shape (1, Ng, largest zone)."""
    if extra:
        return _c_matrices().calculate_glszm(
            image, mask, ng, ns, force2d, force2d_dimension, *extra
        )
    grid, _, offsets = _prepared(image, mask, [1], True, force2d, force2d_dimension)
    return glszm_matrix(grid.image, grid.codes, grid.voxels, offsets, ng)[None]


def calculate_ngtdm(
    image: Any,
    mask: Any,
    distances: Any,
    ng: int,
    force2d: bool,
    force2d_dimension: int,
    *extra: Any,
) -> np.ndarray:
    """``radiomics.cMatrices.calculate_ngtdm``: matrix of shape (1, Ng, 3)."""
    if extra:
        return _c_matrices().calculate_ngtdm(
            image, mask, distances, ng, force2d, force2d_dimension, *extra
        )
    grid, _, offsets = _prepared(image, mask, distances, True, force2d, force2d_dimension)
    swept = _swept(grid, "ngtdm", distances, ng, force2d, force2d_dimension)
    if swept is not None:
        return swept[None]
    return ngtdm_matrix(grid.image, grid.codes, grid.voxels, offsets, ng)[None]


def calculate_gldm(
    image: Any,
    mask: Any,
    distances: Any,
    ng: int,
    alpha: int,
    force2d: bool,
    force2d_dimension: int,
    *extra: Any,
) -> np.ndarray:
    """``radiomics.cMatrices.calculate_gldm``: matrix of shape (1, Ng, 2 Na + 1)."""
    if extra:
        return _c_matrices().calculate_gldm(
            image, mask, distances, ng, alpha, force2d, force2d_dimension, *extra
        )
    grid, _, offsets = _prepared(image, mask, distances, True, force2d, force2d_dimension)
    if alpha == _SWEEP_ALPHA:
        swept = _swept(grid, "gldm", distances, ng, force2d, force2d_dimension)
        if swept is not None:
            return swept[None]
    return gldm_matrix(grid.image, grid.codes, grid.voxels, offsets, ng, alpha)[None]


_FAST = {
    "calculate_glcm": calculate_glcm,
    "calculate_glrlm": calculate_glrlm,
    "calculate_glszm": calculate_glszm,
    "calculate_ngtdm": calculate_ngtdm,
    "calculate_gldm": calculate_gldm,
}


@contextmanager
def fast_texture_matrices() -> Iterator[None]:
    """Inside this block PyRadiomics' feature classes build their matrices with these kernels.

    The C functions are put back on exit, so code outside the block (the naive reference path,
    for instance) runs PyRadiomics unchanged.
    """
    module = _c_matrices()
    originals = {name: getattr(module, name) for name in KERNELS}
    if any(original in _FAST.values() for original in originals.values()):
        yield  # already inside a block
        return
    for name in KERNELS:
        setattr(module, name, _FAST[name])
    try:
        yield
    finally:
        _last_grid.clear()
        _last_sweep.clear()
        for name, original in originals.items():
            setattr(module, name, original)


def warm_up() -> None:
    """Compile (or load from numba's cache) every kernel, so the first patient does not pay."""
    image = np.ones((3, 3, 3), dtype=np.int32)
    mask = np.ones((3, 3, 3), dtype=np.bool_)
    calculate_glcm(image, mask, [1], 1, False, 0)
    calculate_glrlm(image, mask, 1, 3, False, 0)
    calculate_glszm(image, mask, 1, 27, False, 0)
    calculate_ngtdm(image, mask, [1], 1, False, 0)
    calculate_gldm(image, mask, [1], 1, 0, False, 0)
