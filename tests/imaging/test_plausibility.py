"""What cannot be a CT or a GTV is refused or flagged by name."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from lungsurv.core.errors import DicomError, InputError
from lungsurv.imaging import rtstruct
from lungsurv.imaging.convert import ConvertSettings
from lungsurv.imaging.plausibility import edge_warnings, hounsfield_problems


def _ct(change=None) -> sitk.Image:
    """A 20^3 'chest': air outside, soft tissue inside, padding in one corner."""
    array = np.full((20, 20, 20), -1000.0, dtype=np.float32)
    array[4:16, 4:16, 4:16] = 40.0
    if change is not None:
        change(array)
    return sitk.GetImageFromArray(array)


@pytest.mark.parametrize(
    "change",
    [
        None,
        lambda a: a.__setitem__((0, 0, slice(0, 5)), -3024.0),  # padding outside the FOV
        lambda a: a.__setitem__((10, 10, 10), 8000.0),  # metal in one voxel
    ],
    ids=["chest", "padding", "metal"],
)
def test_a_ct_in_hounsfield_units_passes(change) -> None:
    assert hounsfield_problems(_ct(change)) == []


@pytest.mark.parametrize(
    ("change", "fraction"),
    [(lambda a: a.__iadd__(4000.0), "21.6"), (lambda a: a.__setitem__(slice(0, 2), 5000.0), "10")],
    ids=["offset", "slab"],
)
def test_values_that_are_not_hounsfield_units_are_refused(change, fraction: str) -> None:
    with pytest.raises(InputError, match=rf"^{fraction} % of the image's voxels are above 3071 HU"):
        hounsfield_problems(_ct(change))


def test_a_ct_without_air_is_flagged_and_the_limits_are_parameters() -> None:
    tissue = _ct(lambda a: a.__setitem__(slice(None), 30.0))
    assert "no voxel of air" in hounsfield_problems(tissue)[0]
    hot = _ct(lambda a: a.__setitem__(slice(0, 2), 5000.0))
    assert hounsfield_problems(hot, hu_range=(-1024, 8000)) == []
    assert hounsfield_problems(hot, max_above_fraction=0.2) == []
    with pytest.raises(ValueError, match="hu_range must rise"):
        ConvertSettings(hu_range=(100.0, -100.0))
    with pytest.raises(ValueError, match=r"got \(-1024.0, 3071.0\), 1.5"):
        ConvertSettings(max_above_hu_fraction=1.5)


@pytest.mark.parametrize(
    ("region", "where"),
    [
        ((slice(5, 9), slice(5, 9), slice(5, 9)), None),
        ((slice(0, 3), slice(5, 9), slice(5, 9)), "first slice"),
        ((slice(5, 9), slice(5, 9), slice(17, 20)), "first or last column"),
        ((slice(5, 9), slice(0, 4), slice(5, 9)), "first or last row"),
    ],
)
def test_a_gtv_at_the_image_edge_is_flagged(region: tuple, where: str | None) -> None:
    array = np.zeros((20, 20, 20), dtype=np.uint8)
    array[region] = 1
    warnings = edge_warnings(sitk.GetImageFromArray(array), name="GTV 'GTV-1'")
    if where is None:
        assert warnings == []
    else:
        assert warnings == [
            f"the GTV 'GTV-1' touches the image's {where}: it may continue beyond the image"
        ]


def _square(x: float, z: float) -> np.ndarray:
    return np.array([[x, 5, z], [x + 8, 5, z], [x + 8, 13, z], [x, 13, z]], dtype=float)


@pytest.mark.parametrize(
    ("contours", "beyond"),
    [
        ([_square(5, 1), _square(30, 1)], "0 lie beyond the first or last slice and 1 reach"),
        ([_square(5, 1), _square(5, 7)], "1 lie beyond the first or last slice and 0 reach"),
    ],
    ids=["in-plane", "beyond-last-slice"],
)
def test_contours_outside_the_ct_are_refused_or_reported(contours: list, beyond: str) -> None:
    reference = sitk.Image([20, 20, 3], sitk.sitkUInt8)
    with pytest.raises(DicomError, match="GTV lies partly outside the CT: of its 2 contour"):
        rtstruct.rasterize_contours(contours, reference, roi_name="GTV")
    mask, warnings = rtstruct.rasterize_contours(
        contours, reference, roi_name="Lung", outside="warn"
    )
    assert beyond in warnings[0]
    assert sitk.GetArrayViewFromImage(mask)[1, 5:13, 5:13].all()


def _placed(offset_mm: float, radius_mm: float = 4.0) -> tuple[sitk.Image, sitk.Image]:
    """Lungs: a 20 mm thick slab (x < 20) on a 1 x 1 x 2 mm grid; a sphere of ``radius_mm``
    whose surface lies ``offset_mm`` beyond the slab (negative: inside it)."""
    z, y, x = np.mgrid[:20, :60, :80]
    lungs = (x < 20).astype(np.uint8)
    centre = 20 + offset_mm + radius_mm
    sphere = ((x - centre) ** 2 + (y - 30) ** 2 + ((z - 10) * 2.0) ** 2) <= radius_mm**2
    images = []
    for array in (sphere.astype(np.uint8), lungs):
        image = sitk.GetImageFromArray(array)
        image.SetSpacing((1.0, 1.0, 2.0))
        images.append(image)
    return images[0], images[1]


@pytest.mark.parametrize(
    ("offset_mm", "radius_mm", "expected"),
    [
        (-8.0, 4.0, []),  # inside the lung
        (3.0, 4.0, []),  # 3-4 mm from the lung: touching
        (12.0, 4.0, ["does not touch the lungs"]),
        (-8.0, 30.0, ["of the lungs' volume"]),  # larger than a third of the lungs
    ],
)
def test_a_gtv_away_from_the_lungs_or_too_large_is_flagged(
    offset_mm: float, radius_mm: float, expected: list[str]
) -> None:
    from lungsurv.imaging.plausibility import PLACEMENT, placement_warnings

    gtv, lungs = _placed(offset_mm, radius_mm)
    found = placement_warnings(gtv, lungs)
    assert len(found) == len(expected), found
    for sentence, words in zip(found, expected, strict=True):
        assert sentence.startswith(PLACEMENT) and words in sentence
    assert placement_warnings(gtv, None) == []  # no lungs outlined: nothing to check
