"""DICOM CT series into SimpleITK volumes (RTSTRUCTs: :mod:`lungsurv.imaging.rtstruct`).

The reader is strict where silent guesses would corrupt geometry, and says what it did otherwise:

* the CT series is chosen by SeriesInstanceUID (given, or referenced by the RTSTRUCT); a folder
  holding several CT series with nothing to choose between them is refused;
* slices are ordered by their position along the slice normal (not by file name or
  InstanceNumber) and the stored values are rescaled to HU;
* a gap of 1.5 slice spacings or more is a missing slice and is refused; smaller irregularities
  are resampled linearly onto a regular grid (or refused, by setting ``irregular_spacing``);
* a gantry-tilted series (slice positions not along the slice normal) is refused.

No header value is copied into the volumes: the manifest's ``patient_id`` is the only identity.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pydicom
import SimpleITK as sitk
from pydicom.errors import InvalidDicomError

from lungsurv.core.errors import DicomError, problem_of

#: A slice gap of at least this many median spacings is a missing slice.
MISSING_SLICE_FACTOR = 1.5
#: The largest angle (degrees) between the slice stacking direction and the slice normal.
MAX_TILT_DEGREES = 0.5
IrregularSpacing = Literal["resample", "error"]
_HEADER_TAGS = [
    "Modality",
    "SOPInstanceUID",
    "SOPClassUID",
    "SeriesInstanceUID",
    "FrameOfReferenceUID",
    "PatientID",
    "StudyInstanceUID",
    "ReferencedFrameOfReferenceSequence",
]


@dataclass(frozen=True)
class DicomFile:
    """The headers of one DICOM file that decide where it belongs."""

    path: Path
    modality: str
    sop_instance_uid: str
    series_uid: str
    frame_of_reference_uid: str
    patient_id: str
    referenced_series_uids: tuple[str, ...] = ()


@dataclass
class FolderIndex:
    """The DICOM files found below a folder, and the files that could not be read."""

    files: list[DicomFile] = field(default_factory=list)
    unreadable: list[tuple[Path, str]] = field(default_factory=list)

    def series(self, modality: str = "CT") -> dict[str, list[DicomFile]]:
        grouped: dict[str, list[DicomFile]] = defaultdict(list)
        for f in self.files:
            if f.modality == modality:
                grouped[f.series_uid].append(f)
        return dict(grouped)

    def modalities(self) -> set[str]:
        return {f.modality for f in self.files}


def _has_dicom_magic(path: Path) -> bool:
    try:
        with path.open("rb") as handle:
            handle.seek(128)
            return handle.read(4) == b"DICM"
    except OSError:
        return False


def referenced_series(dataset: pydicom.Dataset) -> tuple[str, ...]:
    """The SeriesInstanceUIDs an RTSTRUCT's contours are drawn on."""
    uids: list[str] = []
    for frame in dataset.get("ReferencedFrameOfReferenceSequence", []):
        for study in frame.get("RTReferencedStudySequence", []):
            for series in study.get("RTReferencedSeriesSequence", []):
                uid = str(series.get("SeriesInstanceUID", ""))
                if uid and uid not in uids:
                    uids.append(uid)
    return tuple(uids)


def read_header(path: Path, label: str = "a file") -> DicomFile:
    """Read the headers of one file; raise :class:`DicomError` naming it by ``label`` (its
    position, never its name: DICOM file names are often UIDs) if it is corrupt."""
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=_HEADER_TAGS)
    except (InvalidDicomError, OSError, ValueError, EOFError, KeyError) as error:
        raise DicomError(f"corrupt DICOM file ({label}): {problem_of(error)}") from error
    modality = str(ds.get("Modality", "")).upper()
    if not modality:
        raise DicomError(f"corrupt DICOM file ({label}): no Modality (0008,0060)")
    refs = referenced_series(ds) if modality == "RTSTRUCT" else ()
    return DicomFile(
        path=path,
        modality=modality,
        sop_instance_uid=str(ds.get("SOPInstanceUID", "")),
        series_uid=str(ds.get("SeriesInstanceUID", "")),
        frame_of_reference_uid=str(ds.get("FrameOfReferenceUID", "")),
        patient_id=str(ds.get("PatientID", "")),
        referenced_series_uids=refs,
    )


def index_folder(folder: Path, *, recursive: bool = True) -> FolderIndex:
    """Index every DICOM file below ``folder`` by its headers.

    Files without the DICOM preamble (``DICM`` at byte 128) that also fail to parse are not DICOM
    (a README, a checksum list) and are left out; a file that claims to be DICOM but cannot be
    parsed is listed in ``unreadable``.
    """
    if not folder.is_dir():
        raise DicomError(f"not a folder: {folder}")
    index = FolderIndex()
    paths: Iterable[Path] = _walk(folder) if recursive else folder.iterdir()
    found = sorted(p for p in paths if p.is_file() and p.name.upper() != "DICOMDIR")
    for k, path in enumerate(found):
        try:
            index.files.append(read_header(path, f"file {k + 1} of {len(found)}"))
        except DicomError as error:
            if _has_dicom_magic(path) or path.suffix.lower() == ".dcm":
                index.unreadable.append((path, str(error)))
    return index


def series_labels(series: dict[str, list[DicomFile]]) -> dict[str, str]:
    """Each series by its position and size (``series 2 of 3 (51 slices)``), never its UID."""
    uids = sorted(series)
    return {
        uid: f"series {k + 1} of {len(uids)} ({len(series[uid])} slices)"
        for k, uid in enumerate(uids)
    }


def _walk(folder: Path) -> Iterable[Path]:
    """Every file below ``folder``, following links to folders (TCIA downloads are often
    linked in), each real folder once, so a link loop ends."""
    seen: set[Path] = set()
    for root, dirs, files in os.walk(folder, followlinks=True):
        real = Path(root).resolve()
        if real in seen:
            dirs[:] = []
            continue
        seen.add(real)
        yield from (Path(root) / name for name in files)


@dataclass
class CTSeries:
    """A CT series as one volume in HU, with what the reader had to do to build it."""

    image: sitk.Image
    series_uid: str
    frame_of_reference_uid: str
    sop_instance_uids: tuple[str, ...]
    slice_thickness_mm: float | None
    original_slice_spacing_mm: float
    resampled_slices: bool
    warnings: list[str] = field(default_factory=list)


def choose_series(index: FolderIndex, series_uid: str | None = None) -> str:
    """The SeriesInstanceUID of the CT series to read from an indexed folder."""
    series = index.series("CT")
    if not series:
        others = sorted(index.modalities() - {"RTSTRUCT"})
        if others:
            raise DicomError(f"no CT series in the folder; found modality {', '.join(others)}")
        raise DicomError("no CT series in the folder (no readable DICOM image found)")
    if series_uid:
        if series_uid not in series:
            raise DicomError(
                f"the folder holds no CT series with the manifest's series_uid; it holds "
                f"{len(series)} other(s)"
            )
        return series_uid
    if len(series) > 1:
        listing = ", ".join(series_labels(series).values())
        raise DicomError(
            f"mixed series: the folder holds {len(series)} CT series ({listing}); name one with "
            "series_uid, or give an RTSTRUCT that references one"
        )
    return next(iter(series))


def _float_list(value: object, n: int, name: str, label: str) -> np.ndarray:
    try:
        array = np.asarray([float(v) for v in value], dtype=float)  # type: ignore[attr-defined]
    except (TypeError, ValueError) as error:
        raise DicomError(f"{label}: {name} is missing or malformed") from error
    if array.shape != (n,):
        raise DicomError(f"{label}: {name} must have {n} values, got {array.size}")
    return array


def _number(ds: pydicom.Dataset, keyword: str, default: float, label: str) -> float:
    """A numeric attribute: ``default`` when absent, refused when empty, malformed or infinite."""
    if keyword not in ds:
        return default
    value = ds.get(keyword)
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError) as error:
        raise DicomError(f"{label}: {keyword} is empty or not a number") from error
    if not np.isfinite(number):
        raise DicomError(f"{label}: {keyword} is not finite")
    return number


@dataclass
class _Slice:
    label: str
    position: np.ndarray
    orientation: np.ndarray
    spacing: np.ndarray
    shape: tuple[int, int]
    pixels: np.ndarray
    sop_instance_uid: str
    thickness: float | None


def _read_slice(path: Path, label: str) -> _Slice:
    try:
        ds = pydicom.dcmread(path)
    except (InvalidDicomError, OSError, ValueError, EOFError) as error:
        raise DicomError(f"corrupt DICOM file ({label}): {problem_of(error)}") from error
    if str(ds.get("Modality", "")).upper() != "CT":
        raise DicomError(f"{label}: non-CT modality {ds.get('Modality')!r}")
    try:
        stored = ds.pixel_array
    except Exception as error:  # pydicom raises many types for truncated or unsupported data
        raise DicomError(
            f"corrupt DICOM file ({label}): pixel data unreadable ({error})"
        ) from error
    rows, columns = int(ds.get("Rows", 0)), int(ds.get("Columns", 0))
    if stored.shape != (rows, columns):
        raise DicomError(
            f"corrupt DICOM file ({label}): pixel data is {stored.shape}, header says "
            f"{(rows, columns)}"
        )
    slope = _number(ds, "RescaleSlope", 1.0, label)
    intercept = _number(ds, "RescaleIntercept", 0.0, label)
    if slope == 0:
        raise DicomError(f"{label}: RescaleSlope is 0 (every voxel would be the intercept)")
    thickness = ds.get("SliceThickness")
    return _Slice(
        label=label,
        position=_float_list(ds.get("ImagePositionPatient"), 3, "ImagePositionPatient", label),
        orientation=_float_list(
            ds.get("ImageOrientationPatient"), 6, "ImageOrientationPatient", label
        ),
        spacing=_float_list(ds.get("PixelSpacing"), 2, "PixelSpacing", label),
        shape=(rows, columns),
        pixels=stored.astype(np.float32) * np.float32(slope) + np.float32(intercept),
        sop_instance_uid=str(ds.get("SOPInstanceUID", "")),
        thickness=float(thickness) if thickness not in (None, "") else None,
    )


def read_ct_series(
    folder: Path,
    *,
    series_uid: str | None = None,
    irregular_spacing: IrregularSpacing = "resample",
    spacing_tolerance: float = 0.05,
    index: FolderIndex | None = None,
) -> CTSeries:
    """Read one CT series from ``folder`` into a float32 HU volume.

    Parameters
    ----------
    series_uid:
        The series to read when the folder holds several.
    irregular_spacing:
        What to do when slice gaps differ by more than ``spacing_tolerance`` (relative) but none is
        a missing slice: ``"resample"`` interpolates linearly onto the median spacing (and says so
        in ``warnings``), ``"error"`` refuses.
    """
    if irregular_spacing not in ("resample", "error"):
        raise ValueError(
            f"irregular_spacing must be 'resample' or 'error', got {irregular_spacing!r}"
        )
    index = index if index is not None else index_folder(folder)
    uid = choose_series(index, series_uid)
    files = index.series("CT")[uid]
    unreadable_here = [(p, e) for p, e in index.unreadable]
    if unreadable_here:
        _path, message = unreadable_here[0]
        raise DicomError(f"{message} ({len(unreadable_here)} unreadable file(s) in the folder)")
    slices = [
        _read_slice(f.path, f"slice file {k + 1} of {len(files)}") for k, f in enumerate(files)
    ]
    return _assemble(
        slices, uid, files[0].frame_of_reference_uid, irregular_spacing, spacing_tolerance
    )


def _assemble(
    slices: list[_Slice],
    series_uid: str,
    frame_uid: str,
    irregular_spacing: IrregularSpacing,
    spacing_tolerance: float,
) -> CTSeries:
    _check_same_grid(slices)
    slices, along, positions, normal = _stack_along_normal(slices)
    gaps = np.diff(along)
    spacing_z = float(np.median(gaps))
    warnings: list[str] = []
    resampled = False
    volume = np.stack([s.pixels for s in slices])
    missing = np.nonzero(gaps >= MISSING_SLICE_FACTOR * spacing_z)[0]
    if missing.size:
        k = int(missing[0])
        raise DicomError(
            f"missing slice: a gap of {gaps[k]:.2f} mm between slice positions {along[k]:.2f} and "
            f"{along[k + 1]:.2f} mm (spacing {spacing_z:.2f} mm); {missing.size} gap(s) in all"
        )
    if np.max(np.abs(gaps - spacing_z)) > spacing_tolerance * spacing_z:
        message = (
            f"irregular slice spacing: gaps from {gaps.min():.2f} to {gaps.max():.2f} mm "
            f"(median {spacing_z:.2f} mm)"
        )
        if irregular_spacing == "error":
            raise DicomError(message)
        n = round((along[-1] - along[0]) / spacing_z) + 1
        grid = along[0] + spacing_z * np.arange(n)
        volume = _interpolate_slices(volume, along, grid)
        resampled = True
        warnings.append(message + f"; resampled linearly to {n} slices at {spacing_z:.2f} mm")
    first = slices[0]
    image = sitk.GetImageFromArray(volume.astype(np.float32))
    image.SetSpacing((float(first.spacing[1]), float(first.spacing[0]), spacing_z))
    image.SetOrigin(tuple(float(v) for v in positions[0]))
    direction = np.column_stack([first.orientation[:3], first.orientation[3:], normal])
    image.SetDirection(tuple(float(v) for v in direction.ravel()))
    return CTSeries(
        image=image,
        series_uid=series_uid,
        frame_of_reference_uid=frame_uid,
        sop_instance_uids=tuple(s.sop_instance_uid for s in slices),
        slice_thickness_mm=first.thickness,
        original_slice_spacing_mm=spacing_z,
        resampled_slices=resampled,
        warnings=warnings,
    )


def _check_same_grid(slices: list[_Slice]) -> None:
    """Every slice has the first one's matrix, pixel spacing and orientation; at least two."""
    first = slices[0]
    for s in slices[1:]:
        if s.shape != first.shape or not np.allclose(s.spacing, first.spacing, atol=1e-4):
            raise DicomError(
                f"mixed series: {s.label} is {s.shape} at {s.spacing.tolist()} mm, "
                f"{first.label} is {first.shape} at {first.spacing.tolist()} mm"
            )
        if not np.allclose(s.orientation, first.orientation, atol=1e-4):
            raise DicomError(f"mixed series: {s.label} has another ImageOrientationPatient")
    if len(slices) < 2:
        raise DicomError(f"the series has {len(slices)} slice; a volume needs at least 2")


def _stack_along_normal(
    slices: list[_Slice],
) -> tuple[list[_Slice], np.ndarray, np.ndarray, np.ndarray]:
    """The slices ordered along their normal: (slices, positions along the normal, patient
    positions, the normal). Refuses duplicate positions and a tilted stack."""
    first = slices[0]
    normal = np.cross(first.orientation[:3], first.orientation[3:])
    positions = np.array([s.position for s in slices])
    along = positions @ normal
    order = np.argsort(along)
    slices = [slices[i] for i in order]
    along, positions = along[order], positions[order]
    gaps = np.diff(along)
    if np.any(gaps < 1e-3):
        k = int(np.argmin(gaps))
        raise DicomError(
            f"duplicate slice position {along[k]:.2f} mm ({slices[k].label}, {slices[k + 1].label})"
        )
    stack_dir = positions[-1] - positions[0]
    cos_angle = abs(float(stack_dir @ normal)) / float(np.linalg.norm(stack_dir))
    tilt = float(np.degrees(np.arccos(min(1.0, cos_angle))))
    if tilt > MAX_TILT_DEGREES:
        raise DicomError(
            f"gantry tilt of {tilt:.1f} degrees (slices are not stacked along their normal); "
            "tilted series are not supported: reconstruct the CT without tilt"
        )
    return slices, along, positions, normal


def _interpolate_slices(volume: np.ndarray, along: np.ndarray, grid: np.ndarray) -> np.ndarray:
    upper = np.clip(np.searchsorted(along, grid, side="right"), 1, len(along) - 1)
    lower = upper - 1
    weight = ((grid - along[lower]) / (along[upper] - along[lower])).astype(np.float32)
    weight = np.clip(weight, 0.0, 1.0)[:, None, None]
    return volume[lower] * (1 - weight) + volume[upper] * weight
