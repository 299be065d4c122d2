"""RTSTRUCT structure sets: ROIs found by name, contours filled on the CT grid.

Contours (patient mm) are filled on the CT grid with the even-odd rule, so inner contours are
holes and several contours per slice are allowed; a structure set must reference the CT series
(or its frame of reference) it is applied to. No header value is copied into a mask.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pydicom
import SimpleITK as sitk
from pydicom.errors import InvalidDicomError

from lungsurv.core.errors import DicomError, problem_of
from lungsurv.imaging.dicom import CTSeries, referenced_series


@dataclass
class StructureSet:
    """An RTSTRUCT's ROIs and the series its contours were drawn on."""

    path: Path
    dataset: pydicom.Dataset
    roi_names: dict[int, str]
    referenced_series_uids: tuple[str, ...]
    frame_of_reference_uid: str

    def contours(self, roi_name: str) -> list[np.ndarray]:
        """The closed planar contours of ``roi_name`` as (N, 3) arrays in patient mm."""
        number = next(n for n, name in self.roi_names.items() if name == roi_name)
        result: list[np.ndarray] = []
        sets = list(self.dataset.get("ROIContourSequence", []))
        for k, roi_contour in enumerate(sets):
            where = f"ROI contour set {k + 1} of {len(sets)}"
            if _roi_number(roi_contour, "ReferencedROINumber", where) != number:
                continue
            for contour in roi_contour.get("ContourSequence", []):
                kind = str(contour.get("ContourGeometricType", "CLOSED_PLANAR")).upper()
                points = contour_points(contour, where)
                if kind != "CLOSED_PLANAR" or points.size < 9:
                    continue
                if points.size % 3:
                    raise DicomError(
                        f"{where} has a contour of {points.size} values, not x, y, z triples"
                    )
                result.append(points.reshape(-1, 3))
        return result


#: ContourData's tag: read raw, not through pydicom's decimal-string conversion.
CONTOUR_DATA = 0x30060050


def contour_points(contour: pydicom.Dataset, where: str = "a contour") -> np.ndarray:
    """A contour's ContourData as a flat float array. Read from the element's raw bytes when it
    has not been converted yet: pydicom makes a validated ``DSfloat`` of every coordinate, about
    20 us each, and a GTV and two lungs hold a few hundred thousand of them."""
    element = contour.get_item(CONTOUR_DATA)
    if element is None or element.value is None:
        return np.empty(0)
    value = element.value
    try:
        if isinstance(value, bytes | bytearray):
            text = bytes(value).decode("ascii").strip(" \x00")
            return np.array(text.split("\\"), dtype=float) if text else np.empty(0)
        return np.asarray([float(v) for v in value], dtype=float)
    except (UnicodeDecodeError, ValueError) as error:
        raise DicomError(f"{where} has unreadable ContourData: {problem_of(error)}") from error


def _roi_number(item: pydicom.Dataset, keyword: str, where: str) -> int:
    """An ROI number (``ROINumber``, ``ReferencedROINumber``), refused by name when unusable."""
    try:
        return int(item.get(keyword))  # type: ignore[arg-type]
    except (TypeError, ValueError) as error:
        raise DicomError(f"{where} has no usable {keyword}") from error


def read_rtstruct(path: Path) -> StructureSet:
    """Read an RTSTRUCT file; raise :class:`DicomError` if it is not one."""
    try:
        ds = pydicom.dcmread(path)
    except (InvalidDicomError, OSError, ValueError, EOFError) as error:
        raise DicomError(f"corrupt RTSTRUCT file: {problem_of(error)}") from error
    modality = str(ds.get("Modality", "")).upper()
    if modality != "RTSTRUCT":
        raise DicomError(f"the mask file is not an RTSTRUCT (Modality {modality or 'missing'})")
    items = list(ds.get("StructureSetROISequence", []))
    names = {
        _roi_number(item, "ROINumber", f"structure set ROI {k + 1} of {len(items)}"): str(
            item.get("ROIName", "")
        )
        for k, item in enumerate(items)
    }
    frames = ds.get("ReferencedFrameOfReferenceSequence", [])
    frame_uid = str(frames[0].get("FrameOfReferenceUID", "")) if frames else ""
    if not frame_uid and names:
        first = ds.StructureSetROISequence[0]
        frame_uid = str(first.get("ReferencedFrameOfReferenceUID", ""))
    return StructureSet(
        path=path,
        dataset=ds,
        roi_names=names,
        referenced_series_uids=referenced_series(ds),
        frame_of_reference_uid=frame_uid,
    )


#: An ROI written ``re:<pattern>`` is a regular expression (a manifest's choice; serving refuses
#: it: a crafted pattern can take exponential time); any other ROI is a name, matched exactly
#: but for case.
REGEX_PREFIX = "re:"
#: The longest ROI name or pattern accepted (DICOM's ROIName is at most 64 characters).
MAX_ROI_LENGTH = 64


def find_roi(structure_set: StructureSet, roi: str, *, allow_regex: bool = True) -> str:
    """The one ROI that ``roi`` names: a name (case-insensitive), or with ``re:`` a regex."""
    if len(roi) > MAX_ROI_LENGTH + len(REGEX_PREFIX):
        raise DicomError(f"the ROI name is longer than {MAX_ROI_LENGTH} characters")
    names = list(structure_set.roi_names.values())
    if roi.startswith(REGEX_PREFIX):
        if not allow_regex:
            raise DicomError(f"a regular expression ROI ({REGEX_PREFIX}...) is not accepted here")
        try:
            regex = re.compile(roi.removeprefix(REGEX_PREFIX), re.IGNORECASE)
        except re.error as error:
            raise DicomError(f"ROI {roi!r} is not a valid regular expression: {error}") from error
        matches = [n for n in names if regex.fullmatch(n)]
    else:
        matches = [n for n in names if n.casefold() == roi.casefold()]
    pattern = roi
    if not matches:
        raise DicomError(f"ROI {pattern!r} not found; the RTSTRUCT has {sorted(names)}")
    if len(matches) > 1:
        raise DicomError(f"ROI {pattern!r} is ambiguous: it matches {sorted(matches)}")
    return matches[0]


def find_rois(structure_set: StructureSet, pattern: str) -> list[str]:
    """Every ROI name that ``pattern`` (a regex) matches in full, case-insensitive."""
    regex = re.compile(pattern, re.IGNORECASE)
    return sorted(n for n in structure_set.roi_names.values() if regex.fullmatch(n))


def referenced_images(dataset: pydicom.Dataset, series_uid: str) -> set[str]:
    """The SOPInstanceUIDs of the CT slices the RTSTRUCT lists for the series ``series_uid``
    (``ContourImageSequence`` of its referenced series; often every slice of the series)."""
    uids: set[str] = set()
    for frame in dataset.get("ReferencedFrameOfReferenceSequence", []):
        for study in frame.get("RTReferencedStudySequence", []):
            for series in study.get("RTReferencedSeriesSequence", []):
                if str(series.get("SeriesInstanceUID", "")) != series_uid:
                    continue
                for image in series.get("ContourImageSequence", []):
                    uid = str(image.get("ReferencedSOPInstanceUID", "") or "")
                    uids.update([uid] if uid else [])
    return uids


def check_reference(structure_set: StructureSet, series: CTSeries) -> None:
    """Refuse an RTSTRUCT drawn on another series (or frame of reference) than ``series``, and
    one that lists slices of the series that were not read (a slice missing from the folder,
    at the edge too, where no gap shows it)."""
    listed = referenced_images(structure_set.dataset, series.series_uid)
    absent = listed - set(series.sop_instance_uids)
    if absent:
        raise DicomError(
            f"missing slice: the RTSTRUCT lists {len(absent)} slice(s) of the CT series that "
            f"are not in the folder ({len(series.sop_instance_uids)} read, {len(listed)} listed)"
        )
    refs = structure_set.referenced_series_uids
    if refs and series.series_uid not in refs:
        raise DicomError(
            f"the RTSTRUCT references series other than the CT series read ({len(refs)} "
            "referenced, none of them this one)"
        )
    if (
        not refs
        and structure_set.frame_of_reference_uid
        and series.frame_of_reference_uid
        and structure_set.frame_of_reference_uid != series.frame_of_reference_uid
    ):
        raise DicomError(
            "the RTSTRUCT is in another frame of reference than the CT (FrameOfReferenceUID "
            "differs)"
        )


def physical_to_index(image: sitk.Image, points: np.ndarray) -> np.ndarray:
    """Continuous (x, y, z) indices of physical points (N, 3) on ``image``'s grid."""
    direction = np.asarray(image.GetDirection(), dtype=float).reshape(3, 3)
    spacing = np.asarray(image.GetSpacing(), dtype=float)
    origin = np.asarray(image.GetOrigin(), dtype=float)
    return ((points - origin) @ direction) / spacing


def fill_polygon(x: np.ndarray, y: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Pixels (rows, columns) whose centres lie inside the polygon ``(x, y)`` (even-odd rule).

    A scanline fill: for each pixel row, the crossings of the row's centre line with the edges
    (half-open in y, so a vertex on the line is counted once) bound the inside spans.
    """
    layer = np.zeros(shape, dtype=bool)
    x0, y0 = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    x1, y1 = np.roll(x0, -1), np.roll(y0, -1)
    first = max(0, int(np.ceil(y0.min())))
    last = min(shape[0] - 1, int(np.floor(y0.max())))
    if last < first:
        return layer
    rows = np.arange(first, last + 1, dtype=float)[:, None]
    crosses = ((y0 <= rows) & (rows < y1)) | ((y1 <= rows) & (rows < y0))
    with np.errstate(divide="ignore", invalid="ignore"):
        at = x0 + (rows - y0) * (x1 - x0) / (y1 - y0)
    at = np.where(crosses, at, np.inf)
    at.sort(axis=1)
    pairs = crosses.sum(axis=1) // 2
    if not pairs.any():
        return layer
    # Each row's sorted crossings pair up into disjoint spans [ceil(start), ceil(stop)): mark
    # +1 at every span's start and -1 past its end, and a running sum fills them all at once.
    width = int(pairs.max())
    starts = np.clip(np.ceil(at[:, 0 : 2 * width : 2]), 0, shape[1])
    stops = np.clip(np.ceil(at[:, 1 : 2 * width : 2]), 0, shape[1])
    keep = (np.arange(width) < pairs[:, None]) & (stops > starts)
    row_of = np.broadcast_to(np.arange(len(rows))[:, None], keep.shape)[keep]
    marks = np.zeros((len(rows), shape[1] + 1), dtype=np.int32)
    np.add.at(marks, (row_of, starts[keep].astype(np.intp)), 1)
    np.add.at(marks, (row_of, stops[keep].astype(np.intp)), -1)
    layer[first : last + 1] = np.cumsum(marks[:, : shape[1]], axis=1) > 0
    return layer


def rasterize_contours(
    contours: Sequence[np.ndarray],
    reference: sitk.Image,
    *,
    roi_name: str = "ROI",
    outside: Literal["error", "warn"] = "error",
) -> tuple[sitk.Image, list[str]]:
    """Fill closed planar contours on ``reference``'s grid (even-odd rule); return mask, warnings.

    A voxel is inside when its centre is inside the polygon of its slice. Contours lying between
    slices (more than a third of a slice from any slice centre) are put on the nearest slice and
    reported. A contour reaching beyond the CT (in-plane by more than half a voxel, or beyond
    the first or last slice: a dropped edge slice, a CT cut short) would give a cut ROI:
    ``outside="error"`` refuses it, ``"warn"`` fills what lies inside and reports the rest.
    """
    size = reference.GetSize()
    mask = np.zeros((size[2], size[1], size[0]), dtype=bool)
    warnings: list[str] = []
    off_plane = beyond_slices = beyond_plane = 0
    for points in contours:
        index = physical_to_index(reference, points)
        z = float(np.median(index[:, 2]))
        k = round(z)
        if abs(z - k) > 1 / 3:
            off_plane += 1
        in_plane = index[:, :2]
        if np.any(in_plane < -0.51) or np.any(in_plane > np.asarray(size[:2]) - 0.49):
            beyond_plane += 1
        if not 0 <= k < size[2]:
            beyond_slices += 1
            continue
        mask[k] ^= fill_polygon(index[:, 0], index[:, 1], (size[1], size[0]))
    if off_plane:
        warnings.append(f"{roi_name}: {off_plane} contour(s) lie between CT slices")
    if beyond_slices or beyond_plane:
        message = (
            f"{roi_name} lies partly outside the CT: of its {len(contours)} contour(s), "
            f"{beyond_slices} lie beyond the first or last slice and {beyond_plane} reach past "
            "the image's edge in-plane"
        )
        if outside == "error":
            raise DicomError(message + " (a missing edge slice, or a CT cut short?)")
        warnings.append(message)
    image = sitk.GetImageFromArray(mask.astype(np.uint8))
    image.CopyInformation(reference)
    return image, warnings


def roi_mask(
    structure_set: StructureSet, roi: str, reference: sitk.Image, *, allow_regex: bool = True
) -> tuple[sitk.Image, str, list[str]]:
    """The label volume of the ROI ``roi`` names (see :func:`find_roi`) on ``reference``;
    (mask, name, warnings)."""
    name = find_roi(structure_set, roi, allow_regex=allow_regex)
    contours = structure_set.contours(name)
    if not contours:
        raise DicomError(f"ROI {name!r} has no closed planar contour (empty contour)")
    mask, warnings = rasterize_contours(contours, reference, roi_name=name)
    return mask, name, warnings
