"""What cannot be a CT or a GTV: values outside the Hounsfield range, a GTV at the image's edge.

A CT in Hounsfield units lies within [-1024, 3071] HU (the 12-bit range of clinical scanners);
below it there is only padding outside the scanner's field of view (-2000, -3024 and the like),
which is air for every purpose here and is accepted. Above it there is metal, in a few voxels;
when more than a small fraction of the image is above it, the values are not HU (a PET, an MR, a
CT stored without its rescale, a dose grid) and the image is refused. A chest CT without any air
is flagged (a tight crop, or values that are not HU). A GTV that touches the image's border may
continue beyond it: its features and rings would be computed on a cut tumour; that is flagged.
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from lungsurv.core.errors import InputError

#: The Hounsfield range of a clinical CT (12-bit: -1024 to 3071 HU).
CT_HU_RANGE = (-1024.0, 3071.0)
#: The share of voxels above the range that is still a CT (metal in a few voxels).
MAX_ABOVE_RANGE_FRACTION = 1e-3
#: Voxels at or below this are air (lung parenchyma is about -850 HU, air -1000 HU).
AIR_THRESHOLD_HU = -500.0


def hounsfield_problems(
    image: sitk.Image,
    *,
    hu_range: tuple[float, float] = CT_HU_RANGE,
    max_above_fraction: float = MAX_ABOVE_RANGE_FRACTION,
) -> list[str]:
    """Warnings about ``image``'s values; raise :class:`InputError` when they cannot be HU."""
    values = sitk.GetArrayViewFromImage(image)
    above = int(np.count_nonzero(values > hu_range[1]))
    if above > max_above_fraction * values.size:
        raise InputError(
            f"{100 * above / values.size:.3g} % of the image's voxels are above "
            f"{hu_range[1]:g} HU (at most {100 * max_above_fraction:g} % in a CT): the values "
            "are not Hounsfield units (a CT stored without its rescale, or not a CT)"
        )
    if not np.any(values <= AIR_THRESHOLD_HU):
        return [
            f"no voxel of air (none at or below {AIR_THRESHOLD_HU:g} HU): a tight crop, or "
            "values that are not Hounsfield units"
        ]
    return []


def touched_faces(array: np.ndarray) -> list[str]:
    """The faces of a (z, y, x) volume that a mask array touches, by name."""
    faces = {
        "first slice": array[0],
        "last slice": array[-1],
        "first or last row": np.concatenate([array[:, 0], array[:, -1]]),
        "first or last column": np.concatenate([array[:, :, 0], array[:, :, -1]]),
    }
    return [where for where, face in faces.items() if np.any(face)]


def edge_warnings(mask: sitk.Image, *, name: str = "GTV") -> list[str]:
    """A warning when ``mask`` touches a face of its volume: it may continue beyond it."""
    touched = touched_faces(sitk.GetArrayViewFromImage(mask))
    if not touched:
        return []
    return [
        f"the {name} touches the image's {', '.join(touched)}: it may continue beyond the image"
    ]
