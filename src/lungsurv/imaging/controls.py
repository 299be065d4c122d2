"""Negative-control inputs: a patient's scan and ROIs changed so that they cannot hold the
tumour's signal, for the same recipe to be run on (after READII, Kim et al. 2024).

- ``"shuffled"``: the CT's voxel values permuted at random within each ROI (the GTV, and the
  ring around it, each on its own). Every filter and texture matrix then sees noise with the
  ROI's own histogram. Permuting leaves the ROI's histogram, and so the original image's
  first-order features, exactly as they were, and the mask's shape too: those are no control.
- ``"moved"``: the GTV's mask translated, whole, to another place in the converted volume (in the
  lungs where the patient has a lung mask), as far from the tumour as the volume allows, and
  its ring made around it; the image unchanged. The moved mask has the tumour's shape, so its
  shape features are the tumour's: no control either.

:data:`UNCHANGED_FEATURES` names, per control, the feature prefixes that it leaves equal to the
real ones by construction; the control's recipe is run without them.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import SimpleITK as sitk

from lungsurv.core.errors import InputError

#: The negative controls :func:`control_inputs` makes.
CONTROLS: tuple[str, ...] = ("shuffled", "moved")
#: Feature-name prefixes each control leaves as they were (so they are left out of it).
UNCHANGED_FEATURES: dict[str, tuple[str, ...]] = {
    "shuffled": ("original_shape_", "original_firstorder_"),
    "moved": ("original_shape_",),
}
#: Candidate translations tried for the moved ROI.
MOVE_TRIES = 200


def control_inputs(
    kind: str,
    image: sitk.Image,
    rois: Mapping[str, sitk.Image],
    rng: np.random.Generator,
    *,
    lungs: sitk.Image | None = None,
) -> tuple[sitk.Image, dict[str, sitk.Image]]:
    """The control's (image, ROIs). ``rois``: the GTV first, then rings (disjoint from it);
    for ``"moved"`` only the GTV is moved and the caller makes the rings around it again."""
    if kind not in CONTROLS:
        raise ValueError(f"kind must be one of {CONTROLS}, got {kind!r}")
    if kind == "shuffled":
        return shuffled(image, rois, rng), dict(rois)
    name, gtv = next(iter(rois.items()))
    return image, {name: moved(gtv, rng, lungs=lungs)}


def shuffled(image: sitk.Image, rois: Mapping[str, sitk.Image], rng: np.random.Generator):
    """``image`` with its values permuted within each ROI (a voxel in two ROIs is permuted
    with the first)."""
    values = sitk.GetArrayFromImage(image)
    taken = np.zeros(values.shape, bool)
    for mask in rois.values():
        where = (sitk.GetArrayViewFromImage(mask) > 0) & ~taken
        values[where] = rng.permutation(values[where])
        taken |= where
    out = sitk.GetImageFromArray(values)
    out.CopyInformation(image)
    return out


def moved(
    gtv: sitk.Image, rng: np.random.Generator, *, lungs: sitk.Image | None = None
) -> sitk.Image:
    """The GTV translated by whole voxels to the candidate (of :data:`MOVE_TRIES` drawn) that
    overlaps the tumour least, staying inside the volume and, with ``lungs``, with at least
    half of it in the lungs (any place in the volume when no candidate is)."""
    inside = sitk.GetArrayViewFromImage(gtv) > 0
    where = np.argwhere(inside)
    if not where.size:
        raise InputError("the GTV mask has zero voxels")
    low, high = where.min(axis=0), where.max(axis=0)
    shape = np.asarray(inside.shape)
    # Translations that keep the whole mask inside the volume, one voxel from its faces.
    lower, upper = 1 - low, shape - 2 - high
    if (upper < lower).any():
        raise InputError("the GTV fills the converted volume: no room to move it")
    lung = sitk.GetArrayViewFromImage(lungs) > 0 if lungs is not None else None
    best: tuple[float, np.ndarray] | None = None
    for _ in range(MOVE_TRIES):
        shift = np.array([rng.integers(a, b + 1) for a, b in zip(lower, upper, strict=True)])
        target = where + shift
        overlap = float(inside[tuple(target.T)].mean())
        if lung is not None and lung[tuple(target.T)].mean() < 0.5:
            overlap += 1.0  # outside the lungs: only if nothing else is found
        if best is None or overlap < best[0]:
            best = (overlap, target)
    assert best is not None
    array = np.zeros(inside.shape, np.uint8)
    array[tuple(best[1].T)] = 1
    out = sitk.GetImageFromArray(array)
    out.CopyInformation(gtv)
    return out
