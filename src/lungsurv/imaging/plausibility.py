"""What cannot be a CT or a GTV: values outside the Hounsfield range, a GTV at the image's edge.

A CT in Hounsfield units lies within [-1024, 3071] HU (the 12-bit range of clinical scanners);
below it there is only padding outside the scanner's field of view (-2000, -3024 and the like),
which is air for every purpose here and is accepted. Above it there is metal, in a few voxels;
when more than a small fraction of the image is above it, the values are not HU (a PET, an MR, a
CT stored without its rescale, a dose grid) and the image is refused. A chest CT without any air
is flagged (a tight crop, or values that are not HU). A GTV that touches the image's border may
continue beyond it: its features and rings would be computed on a cut tumour; that is flagged.
When the RTSTRUCT outlines the lungs, a GTV that does not reach them (a lymph node, another
organ) or that is larger than a plausible tumour (a whole lung sent as the GTV) is flagged too
(:data:`PLACEMENT`): the model was trained on lung tumours.
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from lungsurv.core.errors import InputError
from lungsurv.core.labels import nonzero_box

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


#: The first words of every placement warning (serving makes such a prediction unreliable).
PLACEMENT = "GTV placement:"
#: A GTV farther than this from every lung voxel does not touch the lungs.
LUNG_CONTACT_MM = 5.0
#: A GTV larger than this share of the (other) lungs' volume is no plausible tumour.
MAX_LUNG_SHARE = 0.3


def placement_warnings(gtv: sitk.Image, lungs: sitk.Image | None) -> list[str]:
    """Warnings when ``gtv`` lies outside the ``lungs`` (both on one grid) or is too large."""
    if lungs is None:
        return []
    lung = sitk.GetArrayViewFromImage(lungs) > 0
    if not lung.any():
        return []
    tumour = sitk.GetArrayViewFromImage(gtv) > 0
    spacing = np.asarray(gtv.GetSpacing()[::-1], dtype=float)  # (z, y, x) as the arrays
    # Only the GTV's box plus the contact distance matters: measure there, in mm.
    box = nonzero_box(tumour, spacing, LUNG_CONTACT_MM)
    if box is None:
        return []
    found = []
    if not lung[box].any() or (
        ndimage.distance_transform_edt(~lung[box], sampling=spacing)[tumour[box]].min()
        > LUNG_CONTACT_MM
    ):
        found.append(
            f"{PLACEMENT} the GTV does not touch the lungs (no part within "
            f"{LUNG_CONTACT_MM:g} mm of them): a lymph node or another organ? The model was "
            "trained on lung tumours"
        )
    share = np.count_nonzero(tumour) / np.count_nonzero(lung)
    if share > MAX_LUNG_SHARE:
        found.append(
            f"{PLACEMENT} the GTV is {100 * share:.0f} % of the lungs' volume, larger than a "
            "plausible tumour: a whole lung or another structure sent as the GTV?"
        )
    return found


def gtv_warnings(gtv: sitk.Image, lungs: sitk.Image | None, *, name: str = "GTV") -> list[str]:
    """:func:`edge_warnings` and :func:`placement_warnings` of one GTV."""
    return edge_warnings(gtv, name=name) + placement_warnings(gtv, lungs)
