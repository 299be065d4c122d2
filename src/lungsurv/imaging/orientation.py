"""One voxel order for every input: the same anatomy stored in another order gives the same volume.

A NIfTI written by nibabel or dcm2niix often stores the rows of a DICOM series in the opposite
order (RAS instead of LPS) and says so in its affine; the anatomy is the same, but a 1 mm grid
that kept the file's direction would hold the mirror image, and every direction-dependent feature
(wavelet, texture) would differ. Each loaded CT and mask is therefore put in DICOM's LPS order
(rows, columns and slices permuted and flipped to the axis-aligned direction closest to
identity) before it is resampled; a series already in LPS order, as axial DICOM is, is left as
it is.
"""

from __future__ import annotations

import SimpleITK as sitk

#: The voxel order every converted volume has (DICOM's patient axes: left, posterior, superior).
ORIENTATION = "LPS"


def orientation_of(image: sitk.Image) -> str:
    """The three-letter orientation code of ``image``'s direction (e.g. ``"LPS"``, ``"RAS"``)."""
    return sitk.DICOMOrientImageFilter_GetOrientationFromDirectionCosines(image.GetDirection())


def to_lps(image: sitk.Image) -> sitk.Image:
    """``image`` with its voxels reordered to LPS (the same physical image), or itself."""
    if orientation_of(image) == ORIENTATION:
        return image
    return sitk.DICOMOrient(image, ORIENTATION)
