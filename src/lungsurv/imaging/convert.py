"""The convert stage: a patient's CT and GTV to 1 mm isotropic volumes around the tumour.

For each manifest row: read the CT (a DICOM series or a NIfTI/NRRD file) and the GTV (an RTSTRUCT
ROI or a label image) on the CT grid, crop the CT to the GTV's bounding box plus a margin, resample
the CT to 1 x 1 x 1 mm with cubic B-spline interpolation and the mask with a volume-keeping method,
and write NIfTI files, a geometry row and a QA picture.

Choices (each a :class:`ConvertSettings` field):

* ``mask_interpolation="volume"``: the binary mask is interpolated linearly as a partial-volume
  fraction and thresholded at the level that keeps the mask's original volume (to one voxel).
  The outline is smooth, unlike nearest neighbour's staircase, and the volume is kept for any
  tumour size: a fixed 0.5 threshold (``"linear"``) shrinks small convex tumours (measured:
  -4 to -12 % for 0.5-4 ml GTVs on 3-5 mm slices), nearest neighbour (``"nearest"``,
  PyRadiomics' own choice) is unbiased but scatters by +-3 %.
* ``crop_margin_mm=35``: the outermost ring (9 mm) plus the support of the widest radiomics filter
  (LoG with sigma 5 mm; the Gaussian falls below 1e-6 of its peak beyond 5.3 sigma, 26.5 mm), so
  that rings and filtered images near the tumour are the same as on the uncropped volume.
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import SimpleITK as sitk

from lungsurv.core import storage
from lungsurv.core.errors import DicomError, InputError, PatientError, problem_of
from lungsurv.core.labels import distinct_labels, nonzero_bounds
from lungsurv.core.layout import DEFAULT_ROI
from lungsurv.imaging import dicom, plausibility, rtstruct
from lungsurv.imaging.headers import (
    EXTERNAL_DATA_POLICIES,
    ExternalData,
    check_data_files,
    check_declared_geometry,
    check_declared_size,
)
from lungsurv.imaging.orientation import to_lps
from lungsurv.imaging.resample import resample_image, source_region

MaskInterpolation = Literal["volume", "linear", "nearest"]
IMAGE_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd")
#: Largest voxel data (bytes) an image file may declare: 4x a 512 x 512 x 1000 float32 CT.
MAX_IMAGE_BYTES = 4 * 2**30
#: Most distinct values a label mask may hold (a CT or a probability map given as the mask has
#: thousands, and "every non-zero voxel" of it would be a GTV of litres).
MAX_MASK_LABELS = 256
#: Relative geometry tolerance when comparing an image and its mask.
GEOMETRY_TOLERANCE = 1e-4


@dataclass(frozen=True)
class ConvertSettings:
    """Parameters of the convert stage (the defaults are the paper's)."""

    spacing_mm: float = 1.0
    mask_interpolation: MaskInterpolation = "volume"
    crop_margin_mm: float = 35.0
    irregular_spacing: dicom.IrregularSpacing = "resample"
    lung_roi: str = r"(?:lung|pulmo)[-_ ]?(?:left|right|l|r|lt|rt|links|rechts)?"
    write_qa: bool = True
    #: Data files a NRRD/MetaImage header may name: in its own folder (the pipeline), or none
    #: (serving: a request's voxels come in the request); see :mod:`lungsurv.imaging.headers`.
    external_data: ExternalData = "same-folder"
    #: Whether a ``re:`` ROI is taken as a regular expression (manifests: yes; serving: no).
    roi_regex: bool = True
    #: Largest voxel data an image file may declare in its header, checked before reading.
    max_image_bytes: int = MAX_IMAGE_BYTES
    #: A CT's Hounsfield range, and the share of voxels above it that is still refused as not
    #: HU (see :mod:`lungsurv.imaging.plausibility`).
    hu_range: tuple[float, float] = plausibility.CT_HU_RANGE
    max_above_hu_fraction: float = plausibility.MAX_ABOVE_RANGE_FRACTION

    def __post_init__(self) -> None:
        if self.spacing_mm <= 0:
            raise ValueError(f"spacing_mm must be > 0, got {self.spacing_mm}")
        if self.crop_margin_mm < 0:
            raise ValueError(f"crop_margin_mm must be >= 0, got {self.crop_margin_mm}")
        if not self.hu_range[0] < self.hu_range[1] or not 0 <= self.max_above_hu_fraction < 1:
            raise ValueError(
                f"hu_range must rise and max_above_hu_fraction lie in [0, 1), got "
                f"{self.hu_range}, {self.max_above_hu_fraction}"
            )
        if self.external_data not in EXTERNAL_DATA_POLICIES:
            raise ValueError(
                f"external_data must be one of {EXTERNAL_DATA_POLICIES}, got {self.external_data!r}"
            )
        if self.mask_interpolation not in ("volume", "linear", "nearest"):
            raise ValueError(
                "mask_interpolation must be 'volume', 'linear' or 'nearest', "
                f"got {self.mask_interpolation!r}"
            )


@dataclass
class LoadedPatient:
    """A patient's CT and masks on the CT's own grid."""

    #: The CT in its stored pixel type; resampling casts the region it reads to float32.
    image: sitk.Image
    gtv: sitk.Image
    lungs: sitk.Image | None
    source: str
    roi_name: str
    slice_thickness_mm: float | None = None
    resampled_slices: bool = False
    warnings: list[str] = field(default_factory=list)


@dataclass
class ConvertedPatient:
    """The 1 mm volumes of one patient and the facts about how they were made."""

    patient_id: str
    image: sitk.Image
    gtv: sitk.Image
    lungs: sitk.Image | None
    geometry: dict[str, Any]


def is_image_file(path: Path) -> bool:
    name = path.name.lower()
    return any(name.endswith(s) for s in IMAGE_SUFFIXES)


def voxel_volume_ml(image: sitk.Image) -> float:
    return float(np.prod(image.GetSpacing())) / 1000.0


def mask_volume_ml(mask: sitk.Image) -> float:
    return float(np.count_nonzero(sitk.GetArrayViewFromImage(mask))) * voxel_volume_ml(mask)


def _read_image_file(
    path: Path, what: str, external_data: ExternalData, max_bytes: int = MAX_IMAGE_BYTES
) -> sitk.Image:
    check_data_files(path, external_data, what)  # before ITK follows a header anywhere
    check_declared_size(path, max_bytes, what)  # before anything is decompressed
    check_declared_geometry(path, what)
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as error:
        first_line = str(error).strip().splitlines()[-1] if str(error).strip() else ""
        raise InputError(f"cannot read {what}: not a readable image ({first_line})") from error
    spacing = np.asarray(image.GetSpacing(), dtype=float)
    if not np.all(np.isfinite(spacing)) or np.any(spacing <= 0):
        raise InputError(f"{what}: voxel sizes {tuple(spacing.round(4))} mm cannot be a CT's")
    return image


def count_non_finite(path: Path, image: sitk.Image) -> int:
    """NaN or infinite voxels of an image file.

    ITK's NIfTI reader turns NaN into 0 as it reads, so for NIfTI the stored values are read
    again with nibabel: a NaN in a CT is a broken export, never air.
    """
    values = sitk.GetArrayViewFromImage(image)
    if path.name.lower().endswith((".nii", ".nii.gz")):
        import nibabel

        stored = nibabel.load(str(path))
        # Integers cannot hold NaN (unless scaled by a NaN slope): no second read needed.
        slope, intercept = stored.dataobj.slope, stored.dataobj.inter
        if (
            np.issubdtype(stored.get_data_dtype(), np.integer)
            and np.isfinite([slope, intercept]).all()
        ):
            return 0
        values = np.asanyarray(stored.dataobj)
    return int(values.size - np.count_nonzero(np.isfinite(values)))


def same_geometry(
    a: sitk.Image, b: sitk.Image, tolerance: float = GEOMETRY_TOLERANCE
) -> str | None:
    """``None`` when ``a`` and ``b`` share a grid, else what differs."""
    if a.GetSize() != b.GetSize():
        return f"size {b.GetSize()} vs image {a.GetSize()}"
    checks = {
        "spacing": (a.GetSpacing(), b.GetSpacing()),
        "origin": (a.GetOrigin(), b.GetOrigin()),
        "direction": (a.GetDirection(), b.GetDirection()),
    }
    for name, (left, right) in checks.items():
        scale = max(1.0, float(np.max(np.abs(left))))
        if not np.allclose(left, right, atol=tolerance * scale, rtol=0):
            theirs, ours = (tuple(round(v, 4) for v in x) for x in (right, left))
            return f"{name} {theirs} vs image {ours}"
    return None


def load_label_file(
    path: Path,
    reference: sitk.Image,
    roi: str | None,
    *,
    external_data: ExternalData = "same-folder",
    max_bytes: int = MAX_IMAGE_BYTES,
) -> sitk.Image:
    """A binary mask from a label image: label ``roi`` when it is a number, else all non-zero.
    A mask must be a label image: integer values (whatever its storage type), at most
    :data:`MAX_MASK_LABELS` of them; anything else (a CT, a probability map) is refused."""
    label = _read_image_file(path, "mask", external_data, max_bytes)
    if label.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(f"mask has {label.GetNumberOfComponentsPerPixel()} components")
    difference = same_geometry(reference, label)
    if difference:
        raise InputError(f"mask geometry differs from the image: {difference}")
    values = sitk.GetArrayViewFromImage(label)
    if not np.issubdtype(values.dtype, np.integer) and not np.all(np.isfinite(values)):
        raise InputError("mask holds NaN or infinite values")
    _check_label_image(values)
    selected = values == int(roi) if roi is not None and roi.strip().isdigit() else values != 0
    mask = sitk.GetImageFromArray(selected.astype(np.uint8))
    mask.CopyInformation(reference)
    return mask


def _check_label_image(values: np.ndarray) -> None:
    if not np.issubdtype(values.dtype, np.integer) and np.any(values != np.round(values)):
        raise InputError("mask holds fractional values (a probability map?): give a label image")
    labels = distinct_labels(values)
    if labels.size > MAX_MASK_LABELS:
        raise InputError(
            f"mask holds {labels.size} distinct values (an image, not a label mask?); "
            f"a label image has at most {MAX_MASK_LABELS}"
        )


def load_patient(
    row: pd.Series | dict[str, Any], settings: ConvertSettings, workdir: Path
) -> LoadedPatient:
    """Read one manifest row's CT and masks (downloading s3:// inputs below ``workdir``)."""
    row = dict(row)
    image_path = storage.localize(row["image"], workdir / "image")
    mask_path = storage.localize(row["mask"], workdir / "mask")
    roi = row.get("roi") or DEFAULT_ROI
    if image_path.is_dir():
        return _load_dicom(image_path, mask_path, roi, row.get("series_uid"), settings)
    if not is_image_file(image_path):
        raise InputError("image: expected a DICOM folder or a NIfTI/NRRD file")
    image = _read_image_file(image_path, "image", settings.external_data, settings.max_image_bytes)
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        raise InputError("image is not a 3D scalar volume")
    count = count_non_finite(image_path, image)
    if count:
        raise InputError(f"image holds {count} NaN or infinite voxel(s)")
    if mask_path.is_dir() or not is_image_file(mask_path):
        raise InputError("mask: a NIfTI/NRRD image needs a NIfTI/NRRD label mask")
    number = roi if str(roi).isdigit() else None
    gtv = load_label_file(
        mask_path,
        image,
        number,
        external_data=settings.external_data,
        max_bytes=settings.max_image_bytes,
    )
    source = "nrrd" if image_path.name.lower().endswith((".nrrd", ".nhdr")) else "nifti"
    return LoadedPatient(image=image, gtv=gtv, lungs=None, source=source, roi_name=str(roi))


def _load_dicom(
    folder: Path, mask_path: Path, roi: str, series_uid: str | None, settings: ConvertSettings
) -> LoadedPatient:
    if mask_path.is_dir() or is_image_file(mask_path):
        raise InputError("a DICOM CT series needs an RTSTRUCT file as its mask")
    structure_set = rtstruct.read_rtstruct(mask_path)
    index = dicom.index_folder(folder)
    if not series_uid:
        ct_series = index.series("CT")
        referenced = [uid for uid in structure_set.referenced_series_uids if uid in ct_series]
        if structure_set.referenced_series_uids and ct_series and not referenced:
            refs = structure_set.referenced_series_uids
            raise DicomError(
                f"the RTSTRUCT references series ({len(refs)}) that are not in the CT folder "
                f"(it holds {', '.join(dicom.series_labels(ct_series).values())})"
            )
        series_uid = referenced[0] if referenced else None
    series = dicom.read_ct_series(
        folder, series_uid=series_uid, irregular_spacing=settings.irregular_spacing, index=index
    )
    rtstruct.check_reference(structure_set, series)
    gtv, name, warnings = rtstruct.roi_mask(
        structure_set, roi, series.image, allow_regex=settings.roi_regex
    )
    lungs = None
    lung_names = [n for n in rtstruct.find_rois(structure_set, settings.lung_roi) if n != name]
    if lung_names:
        lung_arrays = []
        for lung_name in lung_names:
            contours = structure_set.contours(lung_name)
            if contours:
                mask, lung_warnings = rtstruct.rasterize_contours(
                    contours, series.image, roi_name=lung_name, outside="warn"
                )
                lung_arrays.append(sitk.GetArrayViewFromImage(mask) > 0)
                warnings.extend(lung_warnings)
        if lung_arrays:
            lungs = sitk.GetImageFromArray(np.logical_or.reduce(lung_arrays).astype(np.uint8))
            lungs.CopyInformation(series.image)
    if len(index.series("CT")) > 1:
        labels = dicom.series_labels(index.series("CT"))
        warnings.append(
            f"the folder holds {len(labels)} CT series; read {labels[series.series_uid]}"
        )
    return LoadedPatient(
        image=series.image,
        gtv=gtv,
        lungs=lungs,
        source="dicom",
        roi_name=name,
        slice_thickness_mm=series.slice_thickness_mm,
        resampled_slices=series.resampled_slices,
        warnings=series.warnings + warnings,
    )


def mask_bounds(mask: sitk.Image) -> tuple[np.ndarray, np.ndarray]:
    """The (x, y, z) indices of the first and last non-zero voxel along each axis (as floats).

    From per-axis projections, which on a 512 x 512 CT grid cost a fraction of listing every
    voxel's index."""
    bounds = nonzero_bounds(sitk.GetArrayViewFromImage(mask))
    if bounds is None:
        raise InputError("the mask has no voxels")
    first, last = bounds  # (z, y, x), the array's order
    return first[::-1].astype(float), last[::-1].astype(float)


#: Slices summed at a time by :func:`intensity_statistics` (bounds its float64 copy).
_STATISTICS_SLAB = 16


#: Voxel types whose sums :func:`intensity_statistics` makes exactly in 64-bit integers (the
#: squares of fewer than 2^31 such values sum to below 2^63).
_EXACT_SUM_TYPES = (np.int8, np.uint8, np.int16, np.uint16)


def intensity_statistics(image: sitk.Image) -> tuple[float, float]:
    """The whole scan's mean and sample standard deviation, as ITK's ``StatisticsImageFilter``
    (which PyRadiomics' normalisation uses) gives them: the same formula on the sum and the sum
    of squares. A CT's 8- or 16-bit integer voxels are summed exactly in 64-bit integers (numpy
    casts them chunk by chunk: no scan-sized copy); other voxels in float64 slab by slab, where
    for integer values every partial sum is an integer below 2^53, so both sums are exact, as
    ITK's compensated sums are, and the results equal ITK's; other values agree to about 1e-12
    (numpy's pairwise sums)."""
    values = sitk.GetArrayViewFromImage(image)
    if values.dtype.type in _EXACT_SUM_TYPES and values.size < 2**31:
        flat = values.ravel()
        total = float(flat.sum(dtype=np.int64))
        squares = float(np.einsum("i,i->", flat, flat, dtype=np.int64, casting="safe"))
    else:
        total, squares = 0.0, 0.0
        for start in range(0, values.shape[0], _STATISTICS_SLAB):
            slab = values[start : start + _STATISTICS_SLAB].astype(np.float64).ravel()
            total += float(slab.sum())
            squares += float(np.square(slab, out=slab).sum())
    count = float(values.size)
    mean = total / count
    variance = (squares - total * total / count) / (count - 1.0) if count > 1 else 0.0
    return mean, math.sqrt(max(variance, 0.0))


def crop_grid(
    mask: sitk.Image, margin_mm: float, spacing_mm: float
) -> tuple[sitk.Image, bool, tuple[int, ...]]:
    """An empty 1 mm reference grid covering the mask's bounding box plus ``margin_mm``.

    The grid keeps the input's direction and is clipped to the input's extent; returns the grid,
    whether clipping happened, and the bounding box (x0, y0, z0, x1, y1, z1) in input indices.
    """
    lo_idx, hi_idx = mask_bounds(mask)
    spacing = np.asarray(mask.GetSpacing(), dtype=float)
    size = np.asarray(mask.GetSize(), dtype=float)
    # Positions along the image axes (mm from the first voxel centre), voxel faces included.
    lo = (lo_idx - 0.5) * spacing - margin_mm
    hi = (hi_idx + 0.5) * spacing + margin_mm
    extent_lo = np.full(3, 0.0) - 0.5 * spacing
    extent_hi = (size - 0.5) * spacing
    clipped = bool(np.any(lo < extent_lo) or np.any(hi > extent_hi))
    lo, hi = np.maximum(lo, extent_lo), np.minimum(hi, extent_hi)
    n = np.maximum(1, np.floor((hi - lo) / spacing_mm).astype(int))
    start = lo + 0.5 * spacing_mm
    direction = np.asarray(mask.GetDirection(), dtype=float).reshape(3, 3)
    origin = np.asarray(mask.GetOrigin(), dtype=float) + direction @ start
    grid = sitk.Image([int(v) for v in n], sitk.sitkUInt8)
    grid.SetSpacing((spacing_mm,) * 3)
    grid.SetOrigin(tuple(float(v) for v in origin))
    grid.SetDirection(mask.GetDirection())
    bbox = tuple(int(v) for v in np.concatenate([lo_idx, hi_idx]))
    return grid, clipped, bbox


def resample_mask(mask: sitk.Image, grid: sitk.Image, method: MaskInterpolation) -> sitk.Image:
    """Resample a binary mask onto ``grid`` with ``method`` (see the module docstring)."""
    if method == "nearest":
        return sitk.Resample(
            mask, grid, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8
        )
    # Linear interpolation reads the 8 voxels around each point: the region the grid covers
    # (plus a pad) gives the same fractions as the whole CT-sized mask, at a fraction of the cost.
    region = source_region(mask, grid, pad=2)
    fraction = sitk.Resample(
        sitk.Cast(region > 0, sitk.sitkFloat32), grid, sitk.Transform(), sitk.sitkLinear, 0.0
    )
    threshold = 0.5
    if method == "volume":
        values = sitk.GetArrayViewFromImage(fraction).ravel()
        target = round(mask_volume_ml(mask) / voxel_volume_ml(grid))
        candidates = values[values > 0]
        if 0 < target <= candidates.size:
            # The target-th largest fraction: thresholding there keeps the original volume.
            threshold = float(np.partition(candidates, candidates.size - target)[-target])
    return sitk.Cast(fraction >= threshold, sitk.sitkUInt8)


def convert_patient(
    row: pd.Series | dict[str, Any], settings: ConvertSettings | None = None
) -> ConvertedPatient:
    """Convert one manifest row; raise :class:`PatientError` naming the patient on failure."""
    settings = settings or ConvertSettings()
    pid = str(dict(row)["patient_id"])
    try:
        with tempfile.TemporaryDirectory(prefix="lungsurv-") as tmp:
            loaded = load_patient(row, settings, Path(tmp))
        return _resample_patient(pid, loaded, settings)
    except PatientError:
        raise
    except Exception as error:  # the patient boundary: whatever this patient's files cause
        kind = type(error).__name__
        raise PatientError(pid, problem_of(error), stage="convert", kind=kind) from error


def _resample_patient(
    pid: str, loaded: LoadedPatient, settings: ConvertSettings
) -> ConvertedPatient:
    # The same anatomy in any voxel order gives the same 1 mm volumes (see imaging.orientation).
    loaded.image, loaded.gtv = to_lps(loaded.image), to_lps(loaded.gtv)
    loaded.lungs = to_lps(loaded.lungs) if loaded.lungs is not None else None
    original_ml = mask_volume_ml(loaded.gtv)
    if original_ml == 0:
        raise InputError(f"GTV mask {loaded.roi_name!r} has zero voxels on the CT grid")
    checks = plausibility.hounsfield_problems(
        loaded.image, hu_range=settings.hu_range, max_above_fraction=settings.max_above_hu_fraction
    )
    checks += plausibility.gtv_warnings(loaded.gtv, loaded.lungs, name=f"GTV {loaded.roi_name!r}")
    ct_mean, ct_std = intensity_statistics(loaded.image)  # what radiomics normalises with
    grid, clipped, bbox = crop_grid(loaded.gtv, settings.crop_margin_mm, settings.spacing_mm)
    image = resample_image(loaded.image, grid)
    gtv = resample_mask(loaded.gtv, grid, settings.mask_interpolation)
    lungs = (
        resample_mask(loaded.lungs, grid, settings.mask_interpolation)
        if loaded.lungs is not None
        else None
    )
    resampled_ml = mask_volume_ml(gtv)
    if resampled_ml == 0:
        raise InputError(
            "GTV has zero voxels after resampling to 1 mm (it is smaller than a voxel)"
        )
    warnings = loaded.warnings + checks
    if clipped:
        warnings.append(f"the {settings.crop_margin_mm:g} mm crop margin reaches past the CT")
    spacing = loaded.image.GetSpacing()
    size = loaded.image.GetSize()
    geometry: dict[str, Any] = {
        "patient_id": pid,
        "source": loaded.source,
        "roi_name": loaded.roi_name,
        **{f"orig_spacing_{axis}": value for axis, value in zip("xyz", spacing, strict=True)},
        **{f"orig_size_{axis}": value for axis, value in zip("xyz", size, strict=True)},
        "slice_thickness_mm": loaded.slice_thickness_mm
        if loaded.slice_thickness_mm is not None
        else spacing[2],
        "slices_resampled": loaded.resampled_slices,
        "gtv_volume_ml_original": original_ml,
        "gtv_volume_ml_resampled": resampled_ml,
        "gtv_volume_change_pct": 100.0 * (resampled_ml - original_ml) / original_ml,
        "gtv_bbox_index": list(bbox),
        "crop_size": list(grid.GetSize()),
        "crop_origin_mm": [float(v) for v in grid.GetOrigin()],
        "crop_margin_mm": settings.crop_margin_mm,
        "crop_clipped": clipped,
        "spacing_mm": settings.spacing_mm,
        "mask_interpolation": settings.mask_interpolation,
        "lungs_available": lungs is not None,
        "ct_mean_hu": ct_mean,
        "ct_std_hu": ct_std,
        "warnings": "; ".join(warnings),
    }
    return ConvertedPatient(patient_id=pid, image=image, gtv=gtv, lungs=lungs, geometry=geometry)
