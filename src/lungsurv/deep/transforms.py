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


def gtv_input(
    image: sitk.Image,
    gtv: sitk.Image,
    *,
    size: int = INPUT_SIZE,
    margin_mm: float = 0.0,
    mask_outside: bool = False,
) -> np.ndarray:
    """The network input of one patient: float32 array ``(1, size, size, size)``."""
    if size < 8:
        raise ValueError(f"size must be >= 8, got {size}")
    if margin_mm < 0:
        raise ValueError(f"margin_mm must be >= 0, got {margin_mm}")
    ct = sitk.GetArrayFromImage(image).astype(np.float32)
    mask = sitk.GetArrayFromImage(gtv) > 0
    if ct.shape != mask.shape:
        raise InputError(f"CT {ct.shape} and GTV {mask.shape} differ in size")
    if not mask.any():
        raise InputError("the GTV mask is empty")
    spacing = np.asarray(image.GetSpacing()[::-1], dtype=float)
    pad = np.ceil(margin_mm / spacing).astype(int)
    where = np.argwhere(mask)
    lower = np.maximum(where.min(axis=0) - pad, 0)
    upper = np.minimum(where.max(axis=0) + pad + 1, ct.shape)
    box = tuple(slice(int(a), int(b)) for a, b in zip(lower, upper, strict=True))
    crop = ct[box]
    if mask_outside:
        crop = np.where(mask[box], crop, crop[mask[box]].min())
    resized = Resize(spatial_size=(size,) * 3, mode="trilinear")(crop[None])
    normalised = NormalizeIntensity()(resized)
    return np.asarray(normalised, dtype=np.float32)


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
