"""Cubic B-spline resampling onto a grid aligned with the image's axes, one axis at a time.

The converter resamples every CT onto a 1 mm grid that keeps the CT's direction, so each output
axis reads only the matching input axis: the interpolation is separable. ITK's
``BSplineInterpolateImageFunction`` does not use that; it weighs 4 x 4 x 4 coefficients for every
output voxel and costs about 1-2 s per patient on one core. Here the same interpolation is three
sparse products, one per axis (4 weights per output sample), over the same coefficients:

* the coefficients are the cubic B-spline prefilter with mirror boundaries
  (``scipy.ndimage.spline_filter``, the recursion of Unser et al. that ITK's
  ``BSplineDecompositionImageFilter`` also runs);
* the weights are the cubic B-spline's at each sample's continuous index, with ITK's mirror
  boundary for taps past the edge;
* a sample outside the input's extent (continuous index below -0.5 or from size - 0.5 on) takes
  the default value, as ``sitk.Resample`` gives it.

Both compute in double precision and store float32; the tests find them equal voxel for voxel on
a real CT and on synthetic volumes. A grid that is not aligned with the image falls back to ITK.
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk
from scipy import ndimage, sparse

from lungsurv.imaging.rtstruct import physical_to_index

#: What a resampled CT holds outside the scan (HU).
AIR_HU = -1024.0

#: How far two direction cosines may differ for the grid to count as aligned with the image.
ALIGNED_TOLERANCE = 1e-9


def is_axis_aligned(image: sitk.Image, grid: sitk.Image) -> bool:
    """Whether ``grid`` has ``image``'s direction, so that each axis maps onto its own."""
    return bool(
        np.allclose(image.GetDirection(), grid.GetDirection(), rtol=0, atol=ALIGNED_TOLERANCE)
    )


def bspline_weights(positions: np.ndarray, length: int) -> sparse.csr_matrix:
    """The ``(len(positions), length)`` matrix that interpolates one axis of B-spline coefficients
    at continuous ``positions`` (indices): 4 weights per row, mirrored at the edges."""
    if length < 1:
        raise ValueError(f"length must be >= 1, got {length}")
    base = np.floor(positions).astype(np.int64)
    t = positions - base
    weights = np.stack(
        [
            (1 - t) ** 3 / 6,
            (4 - 6 * t**2 + 3 * t**3) / 6,
            (1 + 3 * t + 3 * t**2 - 3 * t**3) / 6,
            t**3 / 6,
        ],
        axis=1,
    )
    taps = base[:, None] + np.arange(-1, 3)[None, :]
    if length == 1:
        taps = np.zeros_like(taps)
    else:  # ITK's mirror: -1 -> 1, length -> length - 2
        taps = np.abs(taps)
        taps = np.where(taps > length - 1, 2 * (length - 1) - taps, taps)
        # A tap mirrored more than once (positions far outside) stays in range all the same.
        taps = np.clip(taps, 0, length - 1)
    rows = np.repeat(np.arange(len(positions)), 4)
    # Two taps mirrored onto one coefficient add up, as ITK's sum does.
    return sparse.csr_matrix(
        (weights.ravel(), (rows, taps.ravel())), shape=(len(positions), length)
    )


def resample_bspline(image: sitk.Image, grid: sitk.Image, default: float) -> sitk.Image:
    """``sitk.Resample(image, grid, identity, sitkBSpline, default, sitkFloat32)`` for a grid
    aligned with ``image`` (see the module docstring); raises ``ValueError`` for another."""
    if not is_axis_aligned(image, grid):
        raise ValueError("the grid's direction differs from the image's: not separable")
    # As the converter gives it to ITK: float32 values, computed in double.
    as_float32 = sitk.Cast(image, sitk.sitkFloat32)  # held: the view below reads its buffer
    values = sitk.GetArrayViewFromImage(as_float32).astype(np.float64)
    coefficients = ndimage.spline_filter(values, order=3, mode="mirror", output=np.float64)
    direction = np.asarray(image.GetDirection(), dtype=float).reshape(3, 3)
    spacing = np.asarray(image.GetSpacing(), dtype=float)
    start = direction.T @ (np.asarray(grid.GetOrigin()) - np.asarray(image.GetOrigin())) / spacing
    step = np.asarray(grid.GetSpacing(), dtype=float) / spacing
    result = coefficients
    inside = []
    for axis_xyz in range(3):
        axis = 2 - axis_xyz  # numpy's axes are z, y, x
        length = image.GetSize()[axis_xyz]
        positions = start[axis_xyz] + step[axis_xyz] * np.arange(grid.GetSize()[axis_xyz])
        inside.append((positions >= -0.5) & (positions < length - 0.5))
        weights = bspline_weights(positions, length)
        moved = np.moveaxis(result, axis, 0)
        product = weights @ moved.reshape(length, -1)
        result = np.moveaxis(product.reshape((weights.shape[0], *moved.shape[1:])), 0, axis)
    within = inside[2][:, None, None] & inside[1][None, :, None] & inside[0][None, None, :]
    output = sitk.GetImageFromArray(np.where(within, result, default).astype(np.float32))
    output.CopyInformation(grid)
    return output


def source_region(image: sitk.Image, grid: sitk.Image, pad: int = 12) -> sitk.Image:
    """The part of ``image`` that resampling onto ``grid`` reads, plus ``pad`` voxels.

    Cropping first matters: SimpleITK's B-spline interpolator computes its coefficients over the
    whole input, which for a 512 x 512 CT costs far more than the few cm around a tumour. The cubic
    B-spline prefilter's influence decays by 0.268 per voxel, so with a 12-voxel pad the values
    inside the grid are those of the whole image to about 1e-4 HU (measured on LUNG1-001 in the
    tests).
    """
    size = np.asarray(grid.GetSize())
    corners = np.array(
        [[i, j, k] for i in (0, size[0] - 1) for j in (0, size[1] - 1) for k in (0, size[2] - 1)],
        dtype=float,
    )
    points = np.array([grid.TransformContinuousIndexToPhysicalPoint(c.tolist()) for c in corners])

    index = physical_to_index(image, points)
    lo = np.maximum(0, np.floor(index.min(axis=0)).astype(int) - pad)
    hi = np.minimum(np.asarray(image.GetSize()) - 1, np.ceil(index.max(axis=0)).astype(int) + pad)
    return sitk.RegionOfInterest(image, [int(v) for v in hi - lo + 1], [int(v) for v in lo])


def resample_image(image: sitk.Image, grid: sitk.Image, *, crop_source: bool = True) -> sitk.Image:
    """Cubic B-spline resampling of a CT onto ``grid`` (outside the data: air)."""
    source = source_region(image, grid) if crop_source else image
    if is_axis_aligned(source, grid):  # the converter's grids: separably, ITK's values
        return resample_bspline(source, grid, AIR_HU)
    # Float32 first, as the whole CT was before: casting only the region read is cheaper and
    # gives the same values (the cast is voxel-wise).
    source = sitk.Cast(source, sitk.sitkFloat32)
    return sitk.Resample(source, grid, sitk.Transform(), sitk.sitkBSpline, AIR_HU, sitk.sitkFloat32)
