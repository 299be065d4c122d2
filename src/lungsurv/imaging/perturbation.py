"""Perturbed versions of a converted patient: what a slightly different scan or contour gives.

A radiomics feature is only worth modelling if its value survives what changes between two
acquisitions and two observers. Following Zwanenburg et al. 2019 (Sci Rep 9:614, "Assessing
robustness of radiomic features by image perturbation"), each perturbation of a converted
patient combines:

- **noise**: Gaussian noise added to the CT at the image's own noise level
  (:func:`estimate_noise_hu`, the scanner's and therefore the center's), so the perturbed scan
  has about sqrt(2) times the noise of the original, as a repeat scan's difference would;
- **rotation** about the z axis through the GTV's centroid, uniform in +-``max_rotation_deg``;
- **translation** by a sub-voxel shift, uniform in +-``max_translation_mm`` per axis;
- **contour**: the GTV grown or shrunk by ``contour_mm`` (or left as drawn), as two observers'
  contours differ by about a voxel at the boundary.

The image is resampled with the convert stage's cubic B-spline (outside: air), the GTV mask with
linear interpolation of its indicator thresholded at one half, on the same 1 mm grid; the rings
are then made from the perturbed GTV by the rings stage's own code, so they move with it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from lungsurv.core.errors import InputError
from lungsurv.imaging.resample import AIR_HU
from lungsurv.imaging.rings import outside_distance_mm

#: Immerkaer's noise-estimation kernel (the difference of two Laplacians); its L2 norm is 6.
_NOISE_KERNEL = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], dtype=np.float32)[None]
#: HU window of the voxels the noise is estimated on: soft tissue, where a CT is flat but for
#: its noise (air outside the patient may be clipped; bone and lung edges are structure).
NOISE_WINDOW_HU = (-200.0, 300.0)


@dataclass(frozen=True)
class Perturbation:
    """One perturbation of a patient; a field of 0 leaves that aspect unchanged."""

    noise_hu: float = 0.0
    rotation_deg: float = 0.0
    translation_mm: tuple[float, float, float] = (0.0, 0.0, 0.0)
    #: > 0 grows the GTV by this many mm, < 0 shrinks it.
    contour_mm: float = 0.0


def estimate_noise_hu(image: sitk.Image) -> float:
    """The CT's noise standard deviation in HU: Immerkaer's high-pass on every axial slice, with
    a median absolute value (robust to the edges that remain) over the soft-tissue voxels."""
    array = sitk.GetArrayViewFromImage(image).astype(np.float32)
    response = ndimage.convolve(array, _NOISE_KERNEL, mode="nearest")
    low, high = NOISE_WINDOW_HU
    flat = (array >= low) & (array <= high)
    values = np.abs(response[flat] if flat.sum() >= 1000 else response.ravel())
    # For Gaussian noise, |response| has median 0.6745 * 6 * sigma.
    return float(np.median(values) / (0.6745 * 6.0))


def draw_perturbations(
    n: int,
    *,
    noise_hu: float,
    rng: np.random.Generator,
    max_rotation_deg: float = 10.0,
    max_translation_mm: float = 0.5,
    contour_mm: float = 1.0,
) -> list[Perturbation]:
    """``n`` random perturbations (each with noise, a rotation, a translation and a contour
    change drawn from -``contour_mm``, 0, +``contour_mm``)."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    for name, value in (
        ("noise_hu", noise_hu),
        ("max_rotation_deg", max_rotation_deg),
        ("max_translation_mm", max_translation_mm),
        ("contour_mm", contour_mm),
    ):
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"{name} must be a finite value >= 0, got {value}")
    return [
        Perturbation(
            noise_hu=noise_hu,
            rotation_deg=float(rng.uniform(-max_rotation_deg, max_rotation_deg)),
            translation_mm=tuple(  # type: ignore[arg-type]
                float(v) for v in rng.uniform(-max_translation_mm, max_translation_mm, 3)
            ),
            contour_mm=float(rng.choice([-contour_mm, 0.0, contour_mm])),
        )
        for _ in range(n)
    ]


def perturb(
    image: sitk.Image, gtv: sitk.Image, perturbation: Perturbation, rng: np.random.Generator
) -> tuple[sitk.Image, sitk.Image]:
    """The perturbed (image, GTV mask) on the original grid."""
    inside = sitk.Cast(gtv > 0, sitk.sitkUInt8)
    statistics = sitk.LabelShapeStatisticsImageFilter()
    statistics.Execute(inside)
    if not statistics.HasLabel(1):
        raise InputError("the GTV mask has zero voxels")
    transform = sitk.Euler3DTransform()
    transform.SetCenter(statistics.GetCentroid(1))
    transform.SetRotation(0.0, 0.0, math.radians(perturbation.rotation_deg))
    transform.SetTranslation(perturbation.translation_mm)
    moved = sitk.Resample(
        sitk.Cast(image, sitk.sitkFloat32),
        image,
        transform,
        sitk.sitkBSpline,
        AIR_HU,
        sitk.sitkFloat32,
    )
    fraction = sitk.Resample(
        sitk.Cast(inside, sitk.sitkFloat32), gtv, transform, sitk.sitkLinear, 0.0
    )
    mask = sitk.Cast(fraction >= 0.5, sitk.sitkUInt8)
    if perturbation.contour_mm:
        mask = _grow(mask, perturbation.contour_mm)
    if perturbation.noise_hu:
        noisy = sitk.GetArrayFromImage(moved)
        noisy += rng.normal(0.0, perturbation.noise_hu, noisy.shape).astype(np.float32)
        moved = _like(noisy, moved)
    return moved, mask


def _grow(mask: sitk.Image, distance_mm: float) -> sitk.Image:
    """The mask grown (> 0) or shrunk (< 0) by ``distance_mm`` in physical space: growing adds
    every voxel whose centre lies within the distance of a mask voxel's centre, shrinking removes
    every mask voxel within the distance of a voxel outside (the same operation on the
    complement). A shrink that would empty the mask leaves it as it is (a tumour a few mm across
    has no inner contour)."""
    grow = distance_mm > 0
    source = mask if grow else sitk.Cast(mask == 0, sitk.sitkUInt8)
    # Outside the source: the Euclidean distance (mm) to the nearest source voxel's centre.
    reached = sitk.GetArrayFromImage(outside_distance_mm(source)) <= abs(distance_mm)
    changed = reached if grow else ~reached
    if not changed.any():
        return mask
    return _like(changed.astype(np.uint8), mask)


def _like(array: np.ndarray, reference: sitk.Image) -> sitk.Image:
    image = sitk.GetImageFromArray(array)
    image.CopyInformation(reference)
    return image
