"""The deep-learning input (GTV crop, 64^3, z-score) and Table 1's augmentations."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from lungsurv.core.errors import InputError
from lungsurv.deep.transforms import AUGMENTATION_PROBABILITIES, gtv_input, paper_augmentations


def _patient(radius: float = 6.0) -> tuple[sitk.Image, sitk.Image]:
    rng = np.random.default_rng(0)
    z, y, x = np.mgrid[:40, :48, :48]
    inside = (z - 20) ** 2 + (y - 24) ** 2 + (x - 20) ** 2 <= radius**2
    ct = np.where(inside, 40.0, -800.0) + rng.normal(0, 20, inside.shape)
    image = sitk.GetImageFromArray(ct.astype(np.float32))
    mask = sitk.GetImageFromArray(inside.astype(np.uint8))
    mask.CopyInformation(image)
    return image, mask


def test_gtv_input_is_a_zscored_cube() -> None:
    image, mask = _patient()
    volume = gtv_input(image, mask, size=32)
    assert volume.shape == (1, 32, 32, 32) and volume.dtype == np.float32
    assert abs(volume.mean()) < 1e-4 and abs(volume.std() - 1) < 1e-3
    with_margin = gtv_input(image, mask, size=32, margin_mm=5)
    assert not np.allclose(with_margin, volume)
    masked = gtv_input(image, mask, size=32, mask_outside=True)
    assert masked.shape == volume.shape and not np.allclose(masked, volume)


@pytest.mark.parametrize("radius", [4.0, 8.0])
def test_a_fixed_field_of_view_keeps_the_tumours_physical_size_and_its_hounsfield_units(
    radius: float,
) -> None:
    image, mask = _patient(radius)
    volume = gtv_input(
        image, mask, size=16, crop="fixed", field_of_view_mm=32.0, intensity="window"
    )
    assert volume.shape == (1, 16, 16, 16) and volume.dtype == np.float32
    # 2 mm samples: the sphere covers (4/3 pi r^3) / 8 of them, whatever its size.
    tumour = volume[0] > (-380.0 + 300.0) / 700.0  # above -380 HU, between tumour and lung
    expected = 4 / 3 * np.pi * radius**3 / 8
    assert abs(tumour.sum() - expected) / expected < 0.35
    # Centred on the GTV, not on the volume (the sphere is off-centre in x).
    assert tumour[8, 8, 8] and volume[0, 8, 8, 8] == pytest.approx((40 + 300) / 700, abs=0.1)
    # The bounding box crop stretches both radii to fill the cube: the size is lost.
    bbox = gtv_input(image, mask, size=16)
    assert (bbox[0] > 0).mean() > 0.3  # a sphere fills about half of its bounding cube


def test_a_fixed_field_of_view_past_the_ct_sees_air() -> None:
    image, mask = _patient()
    volume = gtv_input(image, mask, size=16, crop="fixed", field_of_view_mm=96, intensity="window")
    assert volume.min() == -1.0  # -1000 HU beyond the 40 x 48 x 48 mm CT, scaled


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("empty", "GTV mask is empty"),
        ("size", "differ in size"),
        ("tiny", "size must be >= 8"),
        ("crop", "crop must be one of"),
        ("intensity", "intensity must be one of"),
        ("fov", "field_of_view_mm must be > 0"),
    ],
)
def test_gtv_input_refuses_bad_input(change: str, message: str) -> None:
    image, mask = _patient()
    size, options = 32, {}
    if change == "empty":
        mask = mask * 0
    elif change == "size":
        mask = sitk.Crop(mask, [0, 0, 1], [0, 0, 0])
    elif change == "tiny":
        size = 4
    else:
        options = {"crop": {"crop": "sphere"}, "intensity": {"intensity": "minmax"}}.get(
            change, {"field_of_view_mm": 0.0}
        )
    with pytest.raises((InputError, ValueError), match=message):
        gtv_input(image, mask, size=size, **options)


def _fire_rate(index: int, trials: int, seed: int) -> tuple[float, list[torch.Tensor]]:
    """How often transform ``index`` of the Compose changes its input, alone."""
    transform = paper_augmentations(seed=seed).transforms[index]
    rng = np.random.default_rng(seed)
    fired, outputs = 0, []
    for _ in range(trials):
        x = torch.from_numpy(rng.standard_normal((1, 12, 12, 12)).astype(np.float32))
        out = torch.as_tensor(transform(x.clone())).as_subclass(torch.Tensor)
        assert out.shape == x.shape and out.dtype == x.dtype
        changed = not torch.equal(out, x)
        fired += changed
        if changed:
            outputs.append((x, out))
    return fired / trials, outputs


@pytest.mark.parametrize("index", range(len(AUGMENTATION_PROBABILITIES)))
def test_each_augmentation_keeps_shape_and_fires_with_its_probability(index: int) -> None:
    name, probability = AUGMENTATION_PROBABILITIES[index]
    trials = 800
    rate, outputs = _fire_rate(index, trials, seed=100 + index)
    # Binomial: 4.5 standard errors is a false alarm once in ~150,000 runs; the seed is fixed.
    standard_error = np.sqrt(probability * (1 - probability) / trials)
    assert abs(rate - probability) < 4.5 * standard_error, (name, rate)
    for x, out in outputs[:50]:
        if name == "brightness":
            factor = (out / x).mean()
            assert 0.7 - 1e-4 <= factor <= 1.5 + 1e-4
            assert torch.allclose(out, x * factor, atol=1e-4)
        elif name == "contrast":
            factor = ((out - out.mean()) / (x - x.mean())).median()
            assert 1.0 - 1e-4 <= factor <= 1.75 + 1e-4
        elif name == "noise":
            assert float((out - x).var()) <= 0.05 * 1.3  # sampling error on 1728 voxels
        elif name == "gamma":
            assert torch.allclose(out.mean(), x.mean(), atol=1e-4)
        elif name.startswith("flip"):
            axis = {"flip_z": 1, "flip_y": 2, "flip_x": 3}[name]
            assert torch.equal(out, torch.flip(x, (axis,)))


def test_rotation_is_about_z() -> None:
    """A volume that varies along z only is unchanged by every rotation about z."""
    transform = paper_augmentations(seed=1).transforms[-1]
    profile = torch.arange(12.0).reshape(1, 12, 1, 1).expand(1, 12, 12, 12).clone()
    for _ in range(20):
        out = torch.as_tensor(transform(profile.clone())).as_subclass(torch.Tensor)
        assert torch.allclose(out, profile, atol=1e-4)


def test_the_composition_is_seeded() -> None:
    x = torch.randn(1, 12, 12, 12)
    first = [paper_augmentations(seed=5)(x.clone()) for _ in range(1)]
    again = [paper_augmentations(seed=5)(x.clone()) for _ in range(1)]
    assert torch.equal(torch.as_tensor(first[0]), torch.as_tensor(again[0]))
