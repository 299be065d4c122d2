"""Perturbed scans and contours: the identity is the identity, the noise estimate finds the
noise, the contour moves by the asked distance, rotation and shift keep the tumour's size."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from lungsurv.imaging.perturbation import (
    Perturbation,
    draw_perturbations,
    estimate_noise_hu,
    perturb,
)


def _phantom(noise_hu: float = 0.0, seed: int = 0) -> tuple[sitk.Image, sitk.Image]:
    """A 1 mm CT: soft tissue (40 HU) with a brighter sphere (radius 8 mm) as the GTV."""
    z, y, x = np.mgrid[:40, :48, :48]
    inside = (z - 20) ** 2 + (y - 24) ** 2 + (x - 24) ** 2 <= 8**2
    array = np.where(inside, 80.0, 40.0).astype(np.float32)
    array += np.random.default_rng(seed).normal(0, noise_hu, array.shape).astype(np.float32)
    image = sitk.GetImageFromArray(array)
    mask = sitk.GetImageFromArray(inside.astype(np.uint8))
    for item in (image, mask):
        item.SetOrigin((-24.0, -24.0, -20.0))
    return image, mask


def _voxels(mask: sitk.Image) -> int:
    return int(sitk.GetArrayFromImage(mask).sum())


def test_the_identity_perturbation_changes_nothing() -> None:
    image, mask = _phantom(noise_hu=20.0)
    moved, moved_mask = perturb(image, mask, Perturbation(), np.random.default_rng(0))
    assert np.abs(sitk.GetArrayFromImage(moved) - sitk.GetArrayFromImage(image)).max() < 1e-4
    assert (sitk.GetArrayFromImage(moved_mask) == sitk.GetArrayFromImage(mask)).all()


@pytest.mark.parametrize("noise_hu", [5.0, 15.0, 40.0])
def test_the_noise_estimate_finds_the_noise(noise_hu: float) -> None:
    image, _ = _phantom(noise_hu=noise_hu)
    assert estimate_noise_hu(image) == pytest.approx(noise_hu, rel=0.1)


def test_added_noise_is_the_asked_level() -> None:
    image, mask = _phantom(noise_hu=10.0)
    moved, _ = perturb(image, mask, Perturbation(noise_hu=10.0), np.random.default_rng(1))
    # Independent noise of equal level: sqrt(2) times the original's.
    assert estimate_noise_hu(moved) == pytest.approx(10.0 * np.sqrt(2), rel=0.1)


@pytest.mark.parametrize("contour_mm", [1.0, -1.0, 2.0, -2.5])
def test_the_contour_grows_or_shrinks_by_the_asked_distance(contour_mm: float) -> None:
    image, mask = _phantom()
    _, changed = perturb(image, mask, Perturbation(contour_mm=contour_mm), np.random.default_rng(0))
    inside = sitk.GetArrayFromImage(mask) > 0
    # scipy's exact Euclidean distance transform: to the nearest voxel outside (of the mask
    # for a shrink, of its complement for a growth).
    if contour_mm > 0:
        expected = ndimage.distance_transform_edt(~inside) <= contour_mm
    else:
        expected = ndimage.distance_transform_edt(inside) > -contour_mm
    assert (sitk.GetArrayFromImage(changed).astype(bool) == expected).all()
    assert np.sign(_voxels(changed) - _voxels(mask)) == np.sign(contour_mm)


def test_a_shrink_that_would_empty_the_contour_leaves_it() -> None:
    image, mask = _phantom()
    _, changed = perturb(image, mask, Perturbation(contour_mm=-20.0), np.random.default_rng(0))
    assert _voxels(changed) == _voxels(mask)


def test_rotation_and_shift_keep_the_tumour_and_move_it_with_the_image() -> None:
    image, mask = _phantom()
    moved, moved_mask = perturb(
        image,
        mask,
        Perturbation(rotation_deg=10.0, translation_mm=(0.4, -0.3, 0.2)),
        np.random.default_rng(0),
    )
    assert _voxels(moved_mask) == pytest.approx(_voxels(mask), rel=0.03)
    # The image moved with the mask: the perturbed GTV still holds the bright sphere.
    inside = sitk.GetArrayFromImage(moved)[sitk.GetArrayFromImage(moved_mask) > 0]
    assert inside.mean() == pytest.approx(80.0, abs=3.0)


def test_drawn_perturbations_are_seeded_and_in_range() -> None:
    first = draw_perturbations(5, noise_hu=12.0, rng=np.random.default_rng(3))
    again = draw_perturbations(5, noise_hu=12.0, rng=np.random.default_rng(3))
    assert first == again
    for p in first:
        assert p.noise_hu == 12.0 and abs(p.rotation_deg) <= 10.0
        assert all(abs(t) <= 0.5 for t in p.translation_mm)
        assert p.contour_mm in (-1.0, 0.0, 1.0)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [({"n": 0}, "n must be >= 1, got 0"), ({"noise_hu": -1.0}, "noise_hu must be"),
     ({"contour_mm": float("nan")}, "contour_mm must be")],
)  # fmt: skip
def test_invalid_perturbation_settings_are_named(arguments: dict, message: str) -> None:
    settings = {"n": 2, "noise_hu": 5.0} | arguments
    n = settings.pop("n")
    with pytest.raises(ValueError, match=message):
        draw_perturbations(n, rng=np.random.default_rng(0), **settings)
