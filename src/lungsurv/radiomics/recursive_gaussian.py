"""ITK's Laplacian of recursive Gaussians (PyRadiomics' LoG filter), same arithmetic, faster.

PyRadiomics' LoG image is SimpleITK's ``LaplacianRecursiveGaussianImageFilter`` with
``NormalizeAcrossScale``: Deriche's fourth-order recursive (IIR) approximation of the Gaussian,
applied line by line along each axis, nine passes in all (for each axis, its second derivative
and then smoothing along the two others), the passes summed. Because the filter is recursive, a
crop changes its values everywhere (the edge effect decays only exponentially), so the radiomics
stage filters the whole converted volume, and ITK's line-by-line iterators took most of the
radiomics stage's LoG time.

:func:`laplacian_of_gaussian` does the same computation with numba kernels that filter many
lines at once (lines side by side in memory, so the recursion vectorises across them). Every
operation is ITK 5.4's, in ITK's order: the coefficients (``RecursiveGaussianImageFilter::SetUp``,
same libm calls), each line's causal and anti-causal recursions with ITK's edge initialisation
(``RecursiveSeparableImageFilter::FilterDataArray``) in double precision, each pass rounded to
float32 as ITK's internal images are, and the float32 sum with ITK's ``a + b * (1 / spacing^2)``.
The result equals SimpleITK's bit for bit (tests compare with ``np.array_equal``), so features
computed on it equal PyRadiomics' exactly.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import SimpleITK as sitk

from lungsurv.core.jit import cached_njit

logger = logging.getLogger(__name__)

#: ITK's Deriche constants: (A1, B1, A2, B2) for orders 0, 1 and 2, and W1, L1, W2, L2.
_A1 = (1.3530, -0.6724, -1.3563)
_B1 = (1.8151, -3.4327, 5.2318)
_A2 = (-0.3531, 0.6724, 0.3446)
_B2 = (0.0902, 0.6100, -2.2355)
_W1, _L1, _W2, _L2 = 0.6681, -1.3932, 2.0787, -1.3732


def _d_coefficients(sigmad: float) -> tuple[float, float, float, float, float, float, float]:
    """ITK's ``ComputeDCoefficients``: D1-D4 and SD, DD, ED."""
    cos1 = math.cos(_W1 / sigmad)
    cos2 = math.cos(_W2 / sigmad)
    exp1 = math.exp(_L1 / sigmad)
    exp2 = math.exp(_L2 / sigmad)
    d4 = exp1 * exp1 * exp2 * exp2
    d3 = -2 * cos1 * exp1 * exp2 * exp2
    d3 += -2 * cos2 * exp2 * exp1 * exp1
    d2 = 4 * cos2 * cos1 * exp1 * exp2
    d2 += exp1 * exp1 + exp2 * exp2
    d1 = -2 * (exp2 * cos2 + exp1 * cos1)
    sd = 1.0 + d1 + d2 + d3 + d4
    dd = d1 + 2 * d2 + 3 * d3 + 4 * d4
    ed = d1 + 4 * d2 + 9 * d3 + 16 * d4
    return d1, d2, d3, d4, sd, dd, ed


def _n_coefficients(sigmad: float, order: int) -> tuple[float, ...]:
    """ITK's ``ComputeNCoefficients`` for one order's constants: N0-N3 and SN, DN, EN."""
    a1, b1, a2, b2 = _A1[order], _B1[order], _A2[order], _B2[order]
    sin1 = math.sin(_W1 / sigmad)
    sin2 = math.sin(_W2 / sigmad)
    cos1 = math.cos(_W1 / sigmad)
    cos2 = math.cos(_W2 / sigmad)
    exp1 = math.exp(_L1 / sigmad)
    exp2 = math.exp(_L2 / sigmad)
    n0 = a1 + a2
    n1 = exp2 * (b2 * sin2 - (a2 + 2 * a1) * cos2)
    n1 += exp1 * (b1 * sin1 - (a1 + 2 * a2) * cos1)
    n2 = (a1 + a2) * cos2 * cos1
    n2 -= b1 * cos2 * sin1 + b2 * cos1 * sin2
    n2 *= 2 * exp1 * exp2
    n2 += a2 * exp1 * exp1 + a1 * exp2 * exp2
    n3 = exp2 * exp1 * exp1 * (b2 * sin2 - a2 * cos2)
    n3 += exp1 * exp2 * exp2 * (b1 * sin1 - a1 * cos1)
    sn = n0 + n1 + n2 + n3
    dn = n1 + 2 * n2 + 3 * n3
    en = n1 + 4 * n2 + 9 * n3
    return n0, n1, n2, n3, sn, dn, en


def recursive_gaussian_coefficients(
    sigma: float, spacing: float, *, second_order: bool, normalize_across_scale: bool = True
) -> np.ndarray:
    """ITK's ``RecursiveGaussianImageFilter::SetUp`` for a zero-order (smoothing) or
    second-order filter: N0-N3, D1-D4, M1-M4, BN1-BN4, BM1-BM4 (symmetric kernels), as one
    array in that order."""
    if not spacing > 0:
        raise ValueError(f"spacing must be > 0, got {spacing}")
    if not sigma > 0:
        raise ValueError(f"sigma must be > 0, got {sigma}")
    sigmad = sigma / spacing
    d1, d2, d3, d4, sd, dd, ed = _d_coefficients(sigmad)
    if not second_order:
        n0, n1, n2, n3, sn, _, _ = _n_coefficients(sigmad, 0)
        alpha0 = 2 * sn / sd - n0
        # ITK applies no scale normalisation to the zero order.
        n0 *= 1.0 / alpha0
        n1 *= 1.0 / alpha0
        n2 *= 1.0 / alpha0
        n3 *= 1.0 / alpha0
    else:
        normalization = sigma * sigma if normalize_across_scale else 1.0
        n0_0, n1_0, n2_0, n3_0, sn0, dn0, en0 = _n_coefficients(sigmad, 0)
        n0_2, n1_2, n2_2, n3_2, sn2, dn2, en2 = _n_coefficients(sigmad, 2)
        beta = -(2 * sn2 - sd * n0_2) / (2 * sn0 - sd * n0_0)
        n0 = n0_2 + beta * n0_0
        n1 = n1_2 + beta * n1_0
        n2 = n2_2 + beta * n2_0
        n3 = n3_2 + beta * n3_0
        sn = sn2 + beta * sn0
        dn = dn2 + beta * dn0
        en = en2 + beta * en0
        alpha2 = en * sd * sd - ed * sn * sd - 2 * dn * dd * sd + 2 * dd * dd * sn
        alpha2 /= sd * sd * sd
        n0 *= normalization / alpha2
        n1 *= normalization / alpha2
        n2 *= normalization / alpha2
        n3 *= normalization / alpha2
    # ComputeRemainingCoefficients(symmetric=True)
    m1 = n1 - d1 * n0
    m2 = n2 - d2 * n0
    m3 = n3 - d3 * n0
    m4 = -d4 * n0
    sn = n0 + n1 + n2 + n3
    sm = m1 + m2 + m3 + m4
    sd = 1.0 + d1 + d2 + d3 + d4
    bn = (d1 * sn / sd, d2 * sn / sd, d3 * sn / sd, d4 * sn / sd)
    bm = (d1 * sm / sd, d2 * sm / sd, d3 * sm / sd, d4 * sm / sd)
    return np.array([n0, n1, n2, n3, d1, d2, d3, d4, m1, m2, m3, m4, *bn, *bm], dtype=np.float64)


#: Lines filtered together: their float64 causal values stay in cache (128 rows x 512 x 8 B).
_BLOCK = 512


@cached_njit
def _causal(data: np.ndarray, c: np.ndarray, start: int, stop: int, causal: np.ndarray) -> None:
    """The causal half of ITK's ``FilterDataArray`` for columns ``start:stop`` of ``data`` (each
    column one line, along axis 0), into the float64 scratch ``causal``."""
    n0, n1, n2, n3 = c[0], c[1], c[2], c[3]
    d1, d2, d3, d4 = c[4], c[5], c[6], c[7]
    bn1, bn2, bn3, bn4 = c[12], c[13], c[14], c[15]
    for j in range(start, stop):
        k = j - start
        v = np.float64(data[0, j])
        x1 = np.float64(data[1, j])
        x2 = np.float64(data[2, j])
        x3 = np.float64(data[3, j])
        o0 = v * n0 + v * n1 + v * n2 + v * n3
        o1 = x1 * n0 + v * n1 + v * n2 + v * n3
        o2 = x2 * n0 + x1 * n1 + v * n2 + v * n3
        o3 = x3 * n0 + x2 * n1 + x1 * n2 + v * n3
        o0 -= v * bn1 + v * bn2 + v * bn3 + v * bn4
        o1 -= o0 * d1 + v * bn2 + v * bn3 + v * bn4
        o2 -= o1 * d1 + o0 * d2 + v * bn3 + v * bn4
        o3 -= o2 * d1 + o1 * d2 + o0 * d3 + v * bn4
        causal[0, k] = o0
        causal[1, k] = o1
        causal[2, k] = o2
        causal[3, k] = o3
    for i in range(4, data.shape[0]):
        for j in range(start, stop):
            k = j - start
            o = (
                np.float64(data[i, j]) * n0
                + np.float64(data[i - 1, j]) * n1
                + np.float64(data[i - 2, j]) * n2
                + np.float64(data[i - 3, j]) * n3
            )
            o -= (
                causal[i - 1, k] * d1
                + causal[i - 2, k] * d2
                + causal[i - 3, k] * d3
                + causal[i - 4, k] * d4
            )
            causal[i, k] = o


@cached_njit
def _anti_causal(
    data: np.ndarray, out: np.ndarray, c: np.ndarray, start: int, stop: int, causal: np.ndarray
) -> None:
    """The anti-causal half, from the last sample back: ITK's scratch2, of which only the four
    values the recursion reads are kept (s0..s3, s0 the one furthest back along the line), each
    added to the causal value and rounded to float32 (ITK's output cast) as soon as known."""
    d1, d2, d3, d4 = c[4], c[5], c[6], c[7]
    m1, m2, m3, m4 = c[8], c[9], c[10], c[11]
    bm1, bm2, bm3, bm4 = c[16], c[17], c[18], c[19]
    width = stop - start
    s0 = np.empty(width, dtype=np.float64)
    s1 = np.empty(width, dtype=np.float64)
    s2 = np.empty(width, dtype=np.float64)
    s3 = np.empty(width, dtype=np.float64)
    last = data.shape[0] - 1
    for j in range(start, stop):
        k = j - start
        v = np.float64(data[last, j])
        x1 = np.float64(data[last - 1, j])
        x2 = np.float64(data[last - 2, j])
        # scratch2[ln - 1] and [ln - 2] (whose first term, data[ln - 1], is outV2 itself).
        e0 = v * m1 + v * m2 + v * m3 + v * m4
        e1 = v * m1 + v * m2 + v * m3 + v * m4
        e2 = x1 * m1 + v * m2 + v * m3 + v * m4
        e3 = x2 * m1 + x1 * m2 + v * m3 + v * m4
        e0 -= v * bm1 + v * bm2 + v * bm3 + v * bm4
        e1 -= e0 * d1 + v * bm2 + v * bm3 + v * bm4
        e2 -= e1 * d1 + e0 * d2 + v * bm3 + v * bm4
        e3 -= e2 * d1 + e1 * d2 + e0 * d3 + v * bm4
        out[last, j] = np.float32(causal[last, k] + e0)
        out[last - 1, j] = np.float32(causal[last - 1, k] + e1)
        out[last - 2, j] = np.float32(causal[last - 2, k] + e2)
        out[last - 3, j] = np.float32(causal[last - 3, k] + e3)
        s0[k], s1[k], s2[k], s3[k] = e3, e2, e1, e0  # scratch2[i .. i + 3], i = ln - 4
    for i in range(last - 3, 0, -1):
        for j in range(start, stop):
            k = j - start
            e = (
                np.float64(data[i, j]) * m1
                + np.float64(data[i + 1, j]) * m2
                + np.float64(data[i + 2, j]) * m3
                + np.float64(data[i + 3, j]) * m4
            )
            e -= s0[k] * d1 + s1[k] * d2 + s2[k] * d3 + s3[k] * d4
            out[i - 1, j] = np.float32(causal[i - 1, k] + e)
            s3[k] = s2[k]
            s2[k] = s1[k]
            s1[k] = s0[k]
            s0[k] = e


@cached_njit
def _filter_block(
    data: np.ndarray, out: np.ndarray, c: np.ndarray, start: int, stop: int, causal: np.ndarray
) -> None:
    """ITK's ``FilterDataArray`` on columns ``start:stop`` of ``data`` (each column one line,
    along axis 0), into ``out`` (float32). ``causal``: float64 scratch with ``data``'s rows and
    at least ``stop - start`` columns."""
    _causal(data, c, start, stop, causal)
    _anti_causal(data, out, c, start, stop, causal)


@cached_njit
def _filter_lines(data: np.ndarray, out: np.ndarray, c: np.ndarray) -> None:
    """:func:`_filter_block` over every column of a C-contiguous 2-D ``data``, by blocks."""
    causal = np.empty((data.shape[0], min(_BLOCK, data.shape[1])), dtype=np.float64)
    for start in range(0, data.shape[1], _BLOCK):
        _filter_block(data, out, c, start, min(start + _BLOCK, data.shape[1]), causal)


@cached_njit
def _filter_axis(volume: np.ndarray, out: np.ndarray, axis: int, c: np.ndarray) -> None:
    """One recursive pass along numpy ``axis`` of a C-contiguous (z, y, x) volume (float32, or
    float64 for the first pass over a float64 image) into float32 ``out``."""
    nz, ny, nx = volume.shape
    if axis == 0:
        _filter_lines(volume.reshape(nz, ny * nx), out.reshape(nz, ny * nx), c)
    elif axis == 1:
        for z in range(nz):
            _filter_lines(volume[z], out[z], c)
    else:
        line_in = np.empty((nx, ny), dtype=volume.dtype)
        line_out = np.empty((nx, ny), dtype=np.float32)
        for z in range(nz):
            line_in[:, :] = volume[z].T
            _filter_lines(line_in, line_out, c)
            out[z] = line_out.T


@cached_njit
def _accumulate(total: np.ndarray, term: np.ndarray, factor: float) -> None:
    """ITK's ``static_cast<float>(a + b * (1.0 / spacing2))``, in place."""
    flat_total = total.reshape(-1)
    flat_term = term.reshape(-1)
    for i in range(flat_total.size):
        flat_total[i] = np.float32(np.float64(flat_total[i]) + np.float64(flat_term[i]) * factor)


#: Pixel types whose values ITK's filter reads exactly as doubles, as the kernels do.
SUPPORTED_PIXEL_TYPES = frozenset(
    {
        sitk.sitkFloat32,
        sitk.sitkFloat64,
        sitk.sitkInt8,
        sitk.sitkUInt8,
        sitk.sitkInt16,
        sitk.sitkUInt16,
        sitk.sitkInt32,
        sitk.sitkUInt32,
    }
)


def laplacian_of_gaussian(image: sitk.Image, sigma: float) -> sitk.Image:
    """SimpleITK's ``LaplacianRecursiveGaussianImageFilter`` with ``NormalizeAcrossScale`` on,
    as PyRadiomics' ``getLoGImage`` runs it, for a 3-D scalar image (float or up to 32-bit
    integer): the same float32 values bit for bit and the same geometry. Every axis needs at
    least four voxels (ITK's own limit)."""
    if image.GetDimension() != 3 or image.GetPixelID() not in SUPPORTED_PIXEL_TYPES:
        raise ValueError(
            f"a 3-D scalar image of float or up to 32-bit integer voxels is needed, got "
            f"{image.GetDimension()}-D {image.GetPixelIDTypeAsString()}"
        )
    if min(image.GetSize()) < 4:
        raise ValueError(f"every axis needs at least 4 voxels, got a size of {image.GetSize()}")
    values = sitk.GetArrayViewFromImage(image)
    # ITK reads each line into doubles; float32 and float64 go to the kernels as they are.
    dtype = values.dtype if values.dtype in (np.float32, np.float64) else np.float64
    volume = np.ascontiguousarray(values, dtype=dtype)
    spacing = image.GetSpacing()  # x, y, z: ITK's dimension d is numpy's axis 2 - d
    total = np.zeros(volume.shape, dtype=np.float32)
    first = np.empty(volume.shape, dtype=np.float32)
    second = np.empty(volume.shape, dtype=np.float32)
    for dim in range(3):
        others = [d for d in range(3) if d != dim]
        derivative = recursive_gaussian_coefficients(sigma, spacing[dim], second_order=True)
        _filter_axis(volume, first, 2 - dim, derivative)
        for smooth_dim, source, target in ((others[0], first, second), (others[1], second, first)):
            smoothing = recursive_gaussian_coefficients(
                sigma, spacing[smooth_dim], second_order=False
            )
            _filter_axis(source, target, 2 - smooth_dim, smoothing)
        _accumulate(total, first, 1.0 / (spacing[dim] * spacing[dim]))
    result = sitk.GetImageFromArray(total)
    result.CopyInformation(image)
    return result


def log_images(
    image: sitk.Image, mask: sitk.Image, **settings: Any
) -> Iterator[tuple[sitk.Image, str, dict[str, Any]]]:
    """PyRadiomics' ``getLoGImage`` (same checks, warnings, names and settings) with
    :func:`laplacian_of_gaussian` where it applies; other images go to PyRadiomics."""
    from radiomics import imageoperations

    if image.GetPixelID() not in SUPPORTED_PIXEL_TYPES or image.GetDimension() != 3:
        yield from imageoperations.getLoGImage(image, mask, **settings)
        return
    size = np.array(image.GetSize())
    spacing = np.array(image.GetSpacing())
    if np.min(size) < 4:
        logger.warning("Image too small to apply LoG filter, size: %s", size)
        return
    for sigma in settings.get("sigma", []):
        if not sigma > 0.0:
            logger.warning("applyLoG: sigma must be greater than 0.0: %g", sigma)
        elif not np.all(size >= np.ceil(sigma / spacing) + 1):
            logger.warning(
                "applyLoG: sigma(%g)/spacing(%s) + 1 must be greater than the size(%s) of the "
                "inputImage",
                sigma,
                spacing,
                size,
            )
        else:
            name = f"log-sigma-{str(sigma).replace('.', '-')}-mm-3D"
            yield laplacian_of_gaussian(image, float(sigma)), name, settings


def warm_up() -> None:
    """Compile (or load from numba's cache) the kernels, for float32 images (the pipeline's
    normalisation) and float64 ones (PyRadiomics' own)."""
    for pixel_type in (sitk.sitkFloat32, sitk.sitkFloat64):
        laplacian_of_gaussian(sitk.Image(4, 4, 4, pixel_type), 1.0)
