"""DICOM reading on the real LUNG1-001 patient and on polygons with known answers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from matplotlib.path import Path as MplPath
from skimage.morphology import convex_hull_image

from lungsurv.core.errors import DicomError
from lungsurv.imaging import dicom, rtstruct
from lungsurv.imaging.convert import ConvertSettings, convert_patient


def reference_volume_ml(rtstruct: Path, roi_name: str, slice_thickness_mm: float) -> float:
    """The ROI's volume from its contours alone: even-odd polygon areas times slice thickness.

    Independent of the package: pydicom for the file, the shoelace formula for areas, and
    matplotlib for which contours lie inside which (an inner contour is a hole).
    """
    ds = pydicom.dcmread(rtstruct)
    number = next(r.ROINumber for r in ds.StructureSetROISequence if r.ROIName == roi_name)
    item = next(i for i in ds.ROIContourSequence if i.ReferencedROINumber == number)
    by_z: dict[float, list[np.ndarray]] = {}
    for contour in item.ContourSequence:
        points = np.asarray(contour.ContourData, dtype=float).reshape(-1, 3)
        by_z.setdefault(round(points[0, 2], 2), []).append(points[:, :2])
    volume = 0.0
    for polygons in by_z.values():
        for i, polygon in enumerate(polygons):
            x, y = polygon[:, 0], polygon[:, 1]
            area = 0.5 * abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))
            depth = sum(
                MplPath(other).contains_point(polygon[0])
                for j, other in enumerate(polygons)
                if j != i
            )
            volume += area * (-1) ** depth
    return volume * slice_thickness_mm / 1000.0


@pytest.fixture(scope="module")
def lung1_series(lung1_dir: Path) -> dicom.CTSeries:
    return dicom.read_ct_series(lung1_dir / "CT")


@pytest.fixture(scope="module")
def lung1_structures(lung1_dir: Path) -> rtstruct.StructureSet:
    return rtstruct.read_rtstruct(lung1_dir / "RTSTRUCT" / "1-1.dcm")


def test_lung1_ct_geometry(lung1_series: dicom.CTSeries) -> None:
    image = lung1_series.image
    assert image.GetSize() == (512, 512, 134)
    assert image.GetSpacing() == pytest.approx((0.9765625, 0.9765625, 3.0))
    values = sitk.GetArrayViewFromImage(image)
    assert values.min() >= -1024 - 1e-3
    assert not lung1_series.resampled_slices and not lung1_series.warnings
    # Slices ordered by position: the origin is the most inferior slice.
    assert image.GetOrigin()[2] == pytest.approx(-282.5 - 133 * 3.0)


@pytest.mark.slow
def test_lung1_gtv_volume_matches_its_contours(lung1_dir: Path, lung1_row: dict) -> None:
    reference = reference_volume_ml(lung1_dir / "RTSTRUCT" / "1-1.dcm", "GTV-1", 3.0)
    converted = convert_patient(lung1_row, ConvertSettings(write_qa=False))
    for key in ("gtv_volume_ml_original", "gtv_volume_ml_resampled"):
        measured = converted.geometry[key]
        assert abs(measured - reference) / reference < 0.02, (key, measured, reference)
    print(
        f"LUNG1-001 GTV-1: contours {reference:.2f} ml, 1 mm mask "
        f"{converted.geometry['gtv_volume_ml_resampled']:.2f} ml"
    )


def test_lung1_orientation(lung1_series: dicom.CTSeries, lung1_structures) -> None:
    """Contours land on the anatomy their names say, in LPS patient coordinates."""
    image = lung1_series.image
    hu = sitk.GetArrayViewFromImage(image)
    gtv = sitk.GetArrayFromImage(rtstruct.roi_mask(lung1_structures, "GTV-1", image)[0]) > 0
    centroids = {}
    envelope = np.zeros_like(gtv)
    for name in ("Lung-Left", "Lung-Right"):
        lung = sitk.GetArrayFromImage(rtstruct.roi_mask(lung1_structures, name, image)[0]) > 0
        assert hu[lung].mean() < -650, f"{name} is not over air-filled lung"
        index = np.argwhere(lung).mean(axis=0)[::-1]
        centroids[name] = np.asarray(image.TransformContinuousIndexToPhysicalPoint(index.tolist()))
        for k in np.nonzero(lung.any(axis=(1, 2)))[0]:
            envelope[k] |= convex_hull_image(lung[k])
    # LPS: patient left is +x.
    assert centroids["Lung-Left"][0] > 0 > centroids["Lung-Right"][0]
    assert hu[gtv].mean() > -300, "the GTV is not over soft tissue"
    # The lung contours exclude the tumour (lung minus GTV), so the GTV is tested against the
    # lungs' per-slice convex envelope.
    inside = np.count_nonzero(gtv & envelope) / np.count_nonzero(gtv)
    assert inside > 0.95
    gtv_centre = np.asarray(
        image.TransformContinuousIndexToPhysicalPoint(np.argwhere(gtv).mean(axis=0)[::-1].tolist())
    )
    distances = {n: np.linalg.norm(c - gtv_centre) for n, c in centroids.items()}
    assert min(distances, key=distances.get) == "Lung-Left"


@pytest.mark.parametrize("seed", range(6))
# Inside the grid, and across each of its edges (the part outside is cut off).
@pytest.mark.parametrize("centre", [(20, 18), (-4, 18), (41, 30), (20, -6), (10, 37)])
def test_fill_polygon_matches_point_in_polygon(seed: int, centre: tuple[float, float]) -> None:
    rng = np.random.default_rng(seed)
    angles = np.sort(rng.uniform(0, 2 * np.pi, 40))
    radii = rng.uniform(5, 14, 40)
    x, y = centre[0] + radii * np.cos(angles), centre[1] + radii * np.sin(angles)
    filled = rtstruct.fill_polygon(x, y, (40, 44))
    rows, cols = np.mgrid[0:40, 0:44]
    centres = np.column_stack([cols.ravel(), rows.ravel()])
    expected = MplPath(np.column_stack([x, y])).contains_points(centres).reshape(40, 44)
    # Pixels whose centre lies on an edge may go either way; a random polygon has none.
    assert np.array_equal(filled, expected)


def test_rasterize_contours_makes_holes() -> None:
    reference = sitk.Image([40, 40, 3], sitk.sitkUInt8)
    square = lambda half, z: np.array(  # noqa: E731
        [
            [20 - half, 20 - half, z],
            [20 + half, 20 - half, z],
            [20 + half, 20 + half, z],
            [20 - half, 20 + half, z],
        ],
        dtype=float,
    )
    mask, warnings = rtstruct.rasterize_contours([square(10.5, 1), square(4.5, 1)], reference)
    layer = sitk.GetArrayViewFromImage(mask)[1]
    assert layer.sum() == 21 * 21 - 9 * 9
    assert layer[20, 20] == 0 and layer[12, 12] == 1
    assert not warnings


def test_find_roi_by_name_or_regex(lung1_structures: rtstruct.StructureSet) -> None:
    assert rtstruct.find_roi(lung1_structures, "gtv-1") == "GTV-1"
    assert rtstruct.find_roi(lung1_structures, r"re:GTV.*") == "GTV-1"
    with pytest.raises(DicomError, match="ambiguous"):
        rtstruct.find_roi(lung1_structures, r"re:Lung.*")
    with pytest.raises(DicomError, match="not found"):
        rtstruct.find_roi(lung1_structures, "CTV")


def test_irregular_spacing_is_resampled_or_refused(small_cohort_dir: Path, tmp_path: Path) -> None:
    import shutil

    import pandas as pd

    row = pd.read_csv(small_cohort_dir / "manifest.csv").iloc[0]
    folder = tmp_path / "ct"
    shutil.copytree(small_cohort_dir / row["image"], folder)
    files = sorted(folder.glob("*.dcm"))
    ds = pydicom.dcmread(files[5])
    x, y, z = (float(v) for v in ds.ImagePositionPatient)
    ds.ImagePositionPatient = [x, y, z + 0.4 * float(ds.SliceThickness)]
    ds.save_as(files[5])
    series = dicom.read_ct_series(folder)
    assert series.resampled_slices
    assert "irregular slice spacing" in series.warnings[0]
    with pytest.raises(DicomError, match="irregular slice spacing"):
        dicom.read_ct_series(folder, irregular_spacing="error")
    with pytest.raises(ValueError, match="'sometimes'"):
        dicom.read_ct_series(folder, irregular_spacing="sometimes")  # type: ignore[arg-type]


def test_contour_points_read_raw_equal_pydicoms_values(lung1_dir: Path) -> None:
    path = lung1_dir / "RTSTRUCT" / "1-1.dcm"
    raw = rtstruct.read_rtstruct(path)
    converted = pydicom.dcmread(path)
    for roi_contour, item in zip(
        raw.dataset.ROIContourSequence, converted.ROIContourSequence, strict=True
    ):
        for contour, reference in zip(
            roi_contour.ContourSequence, item.ContourSequence, strict=True
        ):
            expected = np.asarray([float(v) for v in reference.ContourData], dtype=float)
            assert np.array_equal(rtstruct.contour_points(contour), expected)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (b"1.0\\2.5\\abc", "unreadable ContourData"),
        (b"1.0\\2.0\\3.0\\4.0\\5.0\\6.0\\7.0\\8.0\\9.0\\10.0 ", "10 values, not x, y, z"),
    ],
)
def test_a_malformed_contour_is_refused_by_name(value: bytes, message: str) -> None:
    contour = pydicom.Dataset()
    contour.add(pydicom.dataelem.RawDataElement(
        pydicom.tag.Tag(rtstruct.CONTOUR_DATA), "DS", len(value), value, 0, True, True
    ))  # fmt: skip
    roi_contour = pydicom.Dataset()
    roi_contour.ReferencedROINumber = 1
    roi_contour.ContourSequence = [contour]
    dataset = pydicom.Dataset()
    dataset.ROIContourSequence = [roi_contour]
    structures = rtstruct.StructureSet(Path("unused"), dataset, {1: "GTV"}, (), "")
    with pytest.raises(DicomError, match=message):
        structures.contours("GTV")
