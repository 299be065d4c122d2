"""Inputs of the deep-learning stage: the GTV crop, and the paper's seven augmentations (Table 1).

Every step is a MONAI transform on channel-first arrays ``(1, z, y, x)``:

* :func:`gtv_input`: the GTV's bounding box cut from the 1 mm CT (plus ``margin_mm``), resized to
  64 x 64 x 64 with trilinear interpolation (MONAI ``Resize``), z-scored over the crop (MONAI
  ``NormalizeIntensity``). Voxels of the box outside the GTV are **kept** by default: the paper
  crops the GTV region and its own results say the tissue around the tumour is prognostic (the
  peritumoral rings), so masking it would throw away what the rings show matters;
  ``mask_outside=True`` sets them to the crop's minimum before normalising, for the ablation.
* :func:`paper_augmentations`: Table 1's ranges and probabilities.

=====================  ======================================================  ===========
Table 1                MONAI transform                                         probability
=====================  ======================================================  ===========
contrast 1.0-1.75      ``RandScaleIntensityFixedMean(factors=(0, 0.75))``:      0.15
                       (v - mean) * f + mean, f in [1, 1.75]
brightness 0.7-1.5     ``RandScaleIntensity(factors=(-0.3, 0.5))``: v * f       0.15
gamma 0.5-2.0          ``RandAdjustContrast(gamma=(0.5, 2.0), retain_stats)``   0.15
noise variance 0-0.05  ``RandGaussianNoise(std=sqrt(0.05))``: std drawn from    0.15
                       [0, sqrt(0.05)], so the variance lies in [0, 0.05]
blur sigma 0.5-1.5     ``RandGaussianSmooth`` with sigma in [0.5, 1.5] per axis  0.15
flip x / y / z         one ``RandFlip`` per spatial axis                       0.3 each
rotation 0-360 about z ``RandRotate(range_x=(0, 2 pi))``: in the (y, x) plane    0.3
=====================  ======================================================  ===========

Gamma keeps the mean and standard deviation (``retain_stats``) so a z-scored input stays
z-scored; MONAI applies gamma on the intensity range rescaled to [0, 1], as nnU-Net does.
"""

from __future__ import annotations

import math

import numpy as np
import SimpleITK as sitk
from monai.transforms import (
    Compose,
    NormalizeIntensity,
    RandAdjustContrast,
    RandFlip,
    RandGaussianNoise,
    RandGaussianSmooth,
    RandRotate,
    RandScaleIntensity,
    RandScaleIntensityFixedMean,
    Resize,
)

from lungsurv.core.errors import InputError
from lungsurv.deep.config import CROPS, INTENSITIES, TrainConfig

INPUT_SIZE = 64
#: (name, probability) of each augmentation, in the order :func:`paper_augmentations` applies them.
AUGMENTATION_PROBABILITIES: tuple[tuple[str, float], ...] = (
    ("contrast", 0.15),
    ("brightness", 0.15),
    ("gamma", 0.15),
    ("noise", 0.15),
    ("blur", 0.15),
    ("flip_z", 0.3),
    ("flip_y", 0.3),
    ("flip_x", 0.3),
    ("rotate_z", 0.3),
)


#: ``intensity="window"``: Hounsfield units clipped to this window and scaled to [-1, 1].
HU_WINDOW: tuple[float, float] = (-1000.0, 400.0)


def gtv_input(
    image: sitk.Image,
    gtv: sitk.Image,
    *,
    size: int = INPUT_SIZE,
    margin_mm: float = 0.0,
    mask_outside: bool = False,
    crop: str = "bbox",
    field_of_view_mm: float = 80.0,
    intensity: str = "zscore",
) -> np.ndarray:
    """The network input of one patient: float32 array ``(1, size, size, size)``.

    ``crop="bbox"`` (the paper) stretches every tumour to the same size, so the input no longer
    shows how large the tumour is, and resampling changes the scale of its texture with its
    size; ``crop="fixed"`` keeps the physical scale: a ``field_of_view_mm`` cube centred on the
    GTV's centre of mass, sampled (trilinear) on ``size`` points per axis, air (-1000 HU) beyond
    the CT. ``intensity="window"`` keeps Hounsfield units comparable between patients, where a
    z-score over the crop would divide each patient's texture by its own spread.
    """
    if size < 8:
        raise ValueError(f"size must be >= 8, got {size}")
    if margin_mm < 0:
        raise ValueError(f"margin_mm must be >= 0, got {margin_mm}")
    if crop not in CROPS:
        raise ValueError(f"crop must be one of {CROPS}, got {crop!r}")
    if intensity not in INTENSITIES:
        raise ValueError(f"intensity must be one of {INTENSITIES}, got {intensity!r}")
    if field_of_view_mm <= 0:
        raise ValueError(f"field_of_view_mm must be > 0, got {field_of_view_mm}")
    ct = sitk.GetArrayFromImage(image).astype(np.float32)
    mask = sitk.GetArrayFromImage(gtv) > 0
    if ct.shape != mask.shape:
        raise InputError(f"CT {ct.shape} and GTV {mask.shape} differ in size")
    if not mask.any():
        raise InputError("the GTV mask is empty")
    if crop == "fixed":
        sampled = _fixed_field_of_view(image, mask, size, field_of_view_mm)[None]
    else:
        sampled = _bounding_box(ct, mask, image, size, margin_mm, mask_outside)
    if intensity == "window":
        low, high = HU_WINDOW
        scaled = (np.clip(sampled, low, high) - (low + high) / 2) / ((high - low) / 2)
        return np.asarray(scaled, dtype=np.float32)
    return np.asarray(NormalizeIntensity()(sampled), dtype=np.float32)


def config_input(image: sitk.Image, gtv: sitk.Image, config: TrainConfig) -> np.ndarray:
    """:func:`gtv_input` as ``config`` frames it: training and serving call this one."""
    return gtv_input(
        image,
        gtv,
        size=config.input_size,
        crop=config.crop,
        field_of_view_mm=config.field_of_view_mm,
        intensity=config.intensity,
    )


def _bounding_box(
    ct: np.ndarray,
    mask: np.ndarray,
    image: sitk.Image,
    size: int,
    margin_mm: float,
    mask_outside: bool,
) -> np.ndarray:
    spacing = np.asarray(image.GetSpacing()[::-1], dtype=float)
    pad = np.ceil(margin_mm / spacing).astype(int)
    where = np.argwhere(mask)
    lower = np.maximum(where.min(axis=0) - pad, 0)
    upper = np.minimum(where.max(axis=0) + pad + 1, ct.shape)
    box = tuple(slice(int(a), int(b)) for a, b in zip(lower, upper, strict=True))
    crop = ct[box]
    if mask_outside:
        crop = np.where(mask[box], crop, crop[mask[box]].min())
    return np.asarray(Resize(spatial_size=(size,) * 3, mode="trilinear")(crop[None]))


def _fixed_field_of_view(
    image: sitk.Image, mask: np.ndarray, size: int, field_of_view_mm: float
) -> np.ndarray:
    centre_index = np.argwhere(mask).mean(axis=0)[::-1]  # (x, y, z)
    centre = np.asarray(image.TransformContinuousIndexToPhysicalPoint(centre_index.tolist()))
    step = field_of_view_mm / size
    direction = np.asarray(image.GetDirection(), dtype=float).reshape(3, 3)
    origin = centre - direction @ np.full(3, step * (size - 1) / 2)
    reference = sitk.Image([size] * 3, sitk.sitkFloat32)
    reference.SetSpacing([step] * 3)
    reference.SetDirection(image.GetDirection())
    reference.SetOrigin(origin.tolist())
    resampled = sitk.Resample(
        sitk.Cast(image, sitk.sitkFloat32), reference, sitk.Transform(), sitk.sitkLinear, -1000.0
    )
    return sitk.GetArrayFromImage(resampled).astype(np.float32)


def paper_augmentations(*, seed: int | None = None) -> Compose:
    """Table 1's seven augmentations as one MONAI ``Compose`` on ``(1, z, y, x)`` tensors."""
    transforms = Compose(
        [
            RandScaleIntensityFixedMean(prob=0.15, factors=(0.0, 0.75)),
            RandScaleIntensity(factors=(-0.3, 0.5), prob=0.15),
            RandAdjustContrast(prob=0.15, gamma=(0.5, 2.0), retain_stats=True),
            RandGaussianNoise(prob=0.15, mean=0.0, std=math.sqrt(0.05)),
            RandGaussianSmooth(
                sigma_x=(0.5, 1.5), sigma_y=(0.5, 1.5), sigma_z=(0.5, 1.5), prob=0.15
            ),
            RandFlip(prob=0.3, spatial_axis=0),
            RandFlip(prob=0.3, spatial_axis=1),
            RandFlip(prob=0.3, spatial_axis=2),
            # Spatial axis 0 is z: MONAI's range_x rotates about it, in the (y, x) plane.
            RandRotate(range_x=(0.0, 2 * math.pi), prob=0.3, padding_mode="border"),
        ]
    )
    if seed is not None:
        transforms.set_random_state(seed=seed)
    return transforms
