"""Negative-control inputs: shuffling keeps each ROI's values and nothing else of their order;
moving keeps the tumour's shape and puts it elsewhere, in the lungs when it can."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from lungsurv.core.errors import InputError
from lungsurv.imaging.controls import control_inputs, moved, shuffled


def _patient() -> tuple[sitk.Image, sitk.Image, sitk.Image, sitk.Image]:
    """A 1 mm volume with a graded tumour (values rise along x), a shell around it, lungs."""
    z, y, x = np.mgrid[:40, :60, :60]
    distance = np.sqrt((z - 20) ** 2 + (y - 20) ** 2 + (x - 20) ** 2)
    tumour = distance <= 6
    shell = (distance > 6) & (distance <= 9)
    lungs = (x >= 30) & (z >= 5) & (z < 35) & (y >= 5) & (y < 55)
    values = (x * 3.0 + y).astype(np.float32)
    images = [sitk.GetImageFromArray(a) for a in (values, tumour.astype(np.uint8))]
    images += [sitk.GetImageFromArray(a.astype(np.uint8)) for a in (shell, lungs)]
    return tuple(images)  # type: ignore[return-value]


def test_shuffling_permutes_within_each_roi_only() -> None:
    image, gtv, ring, _ = _patient()
    out = shuffled(image, {"gtv": gtv, "ring_3mm": ring}, np.random.default_rng(0))
    before, after = sitk.GetArrayFromImage(image), sitk.GetArrayFromImage(out)
    for mask in (gtv, ring):
        inside = sitk.GetArrayFromImage(mask) > 0
        assert sorted(before[inside]) == sorted(after[inside])  # the same values
        assert not np.array_equal(before[inside], after[inside])  # not in the same places
    outside = (sitk.GetArrayFromImage(gtv) + sitk.GetArrayFromImage(ring)) == 0
    assert np.array_equal(before[outside], after[outside])


def test_the_moved_roi_keeps_its_shape_and_leaves_the_tumour_for_the_lungs() -> None:
    image, gtv, _, lungs = _patient()
    out = moved(gtv, np.random.default_rng(0), lungs=lungs)
    tumour, control = sitk.GetArrayFromImage(gtv) > 0, sitk.GetArrayFromImage(out) > 0
    assert control.sum() == tumour.sum()
    # A translation: the same shape, by whole voxels.
    shift = np.argwhere(control).min(axis=0) - np.argwhere(tumour).min(axis=0)
    assert np.array_equal(np.roll(tumour, tuple(shift), axis=(0, 1, 2)), control)
    assert not (control & tumour).any()
    assert (control & (sitk.GetArrayFromImage(lungs) > 0)).sum() >= 0.5 * control.sum()
    _, rois = control_inputs("moved", image, {"gtv": gtv}, np.random.default_rng(0), lungs=lungs)
    assert np.array_equal(sitk.GetArrayFromImage(rois["gtv"]), control)


def test_controls_refuse_what_they_cannot_make() -> None:
    image, gtv, _, _ = _patient()
    with pytest.raises(ValueError, match="kind must be one of"):
        control_inputs("mirrored", image, {"gtv": gtv}, np.random.default_rng(0))
    with pytest.raises(InputError, match="zero voxels"):
        moved(gtv * 0, np.random.default_rng(0))
    full = sitk.GetImageFromArray(np.ones((5, 5, 5), np.uint8))
    with pytest.raises(InputError, match="no room to move it"):
        moved(full, np.random.default_rng(0))
