"""Peritumoral rings: sphere phantoms against the analytic shell volume, and the ring facts."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from lungsurv.core.errors import InputError
from lungsurv.core.layout import ring_name
from lungsurv.imaging.rings import distance_within_mm, make_rings, outside_distance_mm


def sphere(radius_mm: float, spacing_mm: float, pad_mm: float = 12.0) -> sitk.Image:
    """A voxelised sphere (voxel centres within ``radius_mm``) on an isotropic grid."""
    n = round(2 * (radius_mm + pad_mm) / spacing_mm)
    centre = (n - 1) / 2
    index = np.indices((n, n, n), dtype=float)
    distance = np.sqrt(sum(((index[i] - centre) * spacing_mm) ** 2 for i in range(3)))
    image = sitk.GetImageFromArray((distance <= radius_mm).astype(np.uint8))
    image.SetSpacing((spacing_mm,) * 3)
    return image


def shell_ml(radius_mm: float, distance_mm: float) -> float:
    return 4 / 3 * np.pi * ((radius_mm + distance_mm) ** 3 - radius_mm**3) / 1000


def relative_errors(radius_mm: float, spacing_mm: float) -> dict[float, float]:
    rings = make_rings(sphere(radius_mm, spacing_mm), (3.0, 6.0, 9.0))
    return {r.distance_mm: r.volume_ml / shell_ml(radius_mm, r.distance_mm) - 1 for r in rings}


@pytest.mark.parametrize("radius_mm", [10.0, 20.0])
@pytest.mark.parametrize("spacing_mm", [1.0, 0.5])
def test_sphere_ring_volume_matches_the_analytic_shell(radius_mm: float, spacing_mm: float) -> None:
    """Tolerance: a ring is measured from the GTV's outermost voxel centres, which lie below the
    smooth surface by a fraction of a voxel (at most h/2 along an axis; about 0.2 h on average
    over a sphere), so the ring is thinner by that much: a relative error of at most h / (2 d),
    plus 1 % for the lattice's count noise. The error is first order in h (checked below)."""
    errors = relative_errors(radius_mm, spacing_mm)
    for distance, error in errors.items():
        tolerance = spacing_mm / (2 * distance) + 0.01
        assert abs(error) <= tolerance, (distance, error, tolerance)
    print(
        f"r={radius_mm} h={spacing_mm}: "
        + ", ".join(f"{d:g} mm {100 * e:+.2f} %" for d, e in errors.items())
    )


@pytest.mark.parametrize("radius_mm", [10.0, 20.0])
def test_sphere_ring_error_shrinks_with_the_voxel(radius_mm: float) -> None:
    coarse, fine = relative_errors(radius_mm, 1.0), relative_errors(radius_mm, 0.5)
    for distance in coarse:
        assert abs(fine[distance]) < abs(coarse[distance])


def test_rings_are_nested_shells_outside_the_gtv() -> None:
    gtv = sphere(8.0, 1.0)
    rings = make_rings(gtv, (9.0, 3.0, 6.0))
    assert [r.distance_mm for r in rings] == [3.0, 6.0, 9.0]
    inside = sitk.GetArrayViewFromImage(gtv) > 0
    previous = np.zeros_like(inside)
    for ring in rings:
        mask = sitk.GetArrayViewFromImage(ring.mask) > 0
        assert not (mask & inside).any()
        assert (previous <= mask).all()
        assert not ring.clipped_by_volume
        previous = mask


def test_ring_reaching_the_volume_edge_is_flagged() -> None:
    gtv = sphere(8.0, 1.0, pad_mm=5.0)
    rings = {r.distance_mm: r for r in make_rings(gtv, (3.0, 9.0))}
    assert not rings[3.0].clipped_by_volume
    assert rings[9.0].clipped_by_volume


def test_clip_to_lungs() -> None:
    gtv = sphere(8.0, 1.0)
    lungs = sitk.GetArrayFromImage(gtv) * 0 + 1
    lungs[:, :, : lungs.shape[2] // 2] = 0
    lung_image = sitk.GetImageFromArray(lungs.astype(np.uint8))
    lung_image.CopyInformation(gtv)
    plain = make_rings(gtv, (6.0,))[0]
    clipped = make_rings(gtv, (6.0,), lungs=lung_image, clip_to_lungs=True)[0]
    assert clipped.volume_ml == pytest.approx(plain.volume_ml / 2, rel=0.05)
    assert clipped.removed_by_lung_clip_ml == pytest.approx(plain.volume_ml - clipped.volume_ml)
    with pytest.raises(InputError, match="needs a lung mask"):
        make_rings(gtv, (6.0,), clip_to_lungs=True)


@pytest.mark.parametrize("distances", [(), (0.0,), (-3.0,), (float("nan"),)])
def test_invalid_distances_are_refused(distances: tuple[float, ...]) -> None:
    with pytest.raises(ValueError):
        make_rings(sphere(5.0, 1.0), distances)


def test_empty_gtv_is_refused() -> None:
    with pytest.raises(InputError, match="zero voxels"):
        make_rings(sphere(5.0, 1.0) * 0, (3.0,))


@pytest.mark.parametrize(("distance", "name"), [(3.0, "ring_3mm"), (2.5, "ring_2.5mm")])
def test_ring_name(distance: float, name: str) -> None:
    assert ring_name(distance) == name


@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (0.7, 0.977, 2.5)])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_distances_near_the_gtv_equal_the_whole_grids_map(
    spacing: tuple[float, float, float], seed: int
) -> None:
    rng = np.random.default_rng(seed)
    shape = (40, 50, 45)
    # An irregular GTV: a few overlapping blobs, one of them near the grid's edge.
    centres = rng.uniform(4, np.array(shape) - 4, (4, 3))
    grid = np.indices(shape).transpose(1, 2, 3, 0)
    values = np.zeros(shape, dtype=np.uint8)
    for centre in centres:
        values |= (((grid - centre) ** 2).sum(axis=-1) < rng.uniform(4, 40)).astype(np.uint8)
    gtv = sitk.GetImageFromArray(values)
    gtv.SetSpacing(spacing)
    whole = sitk.GetArrayFromImage(outside_distance_mm(gtv))
    near = distance_within_mm(gtv, 9.0)
    within = whole <= 9.0
    assert np.array_equal(near[within], whole[within])
    assert np.all(near[~within] > 9.0)
