"""Bad input: each broken patient is reported by id with its problem; the others go on."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest
import SimpleITK as sitk

from lungsurv.cohort.manifest import validate_manifest
from lungsurv.core.tables import concat_tables, write_parquet
from lungsurv.imaging.convert import ConvertSettings, load_patient
from lungsurv.stages.convert import convert_cohort
from tests.identifiers import dicom_identifiers, leaks

Breaker = Callable[[Path, pd.DataFrame], pd.DataFrame]
VICTIM = 2  # the row of the manifest that each case breaks


def _ct_files(root: Path, row: pd.Series) -> list[Path]:
    return sorted((root / row["image"]).glob("*.dcm"))


def _edit_rtstruct(root: Path, row: pd.Series, edit: Callable[[pydicom.Dataset], None]) -> None:
    path = root / row["mask"]
    ds = pydicom.dcmread(path)
    edit(ds)
    ds.save_as(path)


def _to_nifti(root: Path, frame: pd.DataFrame, index: int) -> tuple[Path, Path]:
    """Rewrite one patient as a NIfTI image + NIfTI mask on the CT's grid."""
    row = frame.iloc[index].to_dict()
    row = row | {"image": str(root / row["image"]), "mask": str(root / row["mask"])}
    loaded = load_patient(row, ConvertSettings(), root / "tmp")
    folder = root / "nifti" / row["patient_id"]
    folder.mkdir(parents=True)
    image, mask = folder / "ct.nii.gz", folder / "gtv.nii.gz"
    sitk.WriteImage(loaded.image, str(image))
    sitk.WriteImage(loaded.gtv, str(mask))
    frame.loc[index, ["image", "mask"]] = [
        str(image.relative_to(root)),
        str(mask.relative_to(root)),
    ]
    return image, mask


def corrupt_dicom(root: Path, frame: pd.DataFrame) -> pd.DataFrame:
    files = _ct_files(root, frame.iloc[VICTIM])
    victim = files[len(files) // 2]
    victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 2])
    return frame


def missing_slice(root: Path, frame: pd.DataFrame) -> pd.DataFrame:
    files = _ct_files(root, frame.iloc[VICTIM])
    files[len(files) // 2].unlink()
    return frame


def mixed_series(root: Path, frame: pd.DataFrame) -> pd.DataFrame:
    target = root / frame.iloc[VICTIM]["image"]
    for path in _ct_files(root, frame.iloc[0]):
        shutil.copy(path, target / f"other-{path.name}")

    def drop_references(ds: pydicom.Dataset) -> None:
        for frame_ref in ds.ReferencedFrameOfReferenceSequence:
            del frame_ref.RTReferencedStudySequence

    _edit_rtstruct(root, frame.iloc[VICTIM], drop_references)
    return frame


def rtstruct_of_another_series(root: Path, frame: pd.DataFrame) -> pd.DataFrame:
    frame.loc[VICTIM, "mask"] = frame.iloc[0]["mask"]
    return frame


def roi_not_found(root: Path, frame: pd.DataFrame) -> pd.DataFrame:
    frame.loc[VICTIM, "roi"] = "GTV-7"
    return frame


def empty_contour(root: Path, frame: pd.DataFrame) -> pd.DataFrame:
    def empty_gtv(ds: pydicom.Dataset) -> None:
        number = next(r.ROINumber for r in ds.StructureSetROISequence if r.ROIName == "GTV-1")
        for item in ds.ROIContourSequence:
            if item.ReferencedROINumber == number:
                del item.ContourSequence

    _edit_rtstruct(root, frame.iloc[VICTIM], empty_gtv)
    return frame


def mask_with_zero_voxels(root: Path, frame: pd.DataFrame) -> pd.DataFrame:
    _, mask = _to_nifti(root, frame, VICTIM)
    image = sitk.ReadImage(str(mask))
    sitk.WriteImage(image * 0, str(mask))
    return frame


def non_ct_modality(root: Path, frame: pd.DataFrame) -> pd.DataFrame:
    for path in _ct_files(root, frame.iloc[VICTIM]):
        ds = pydicom.dcmread(path)
        ds.Modality = "MR"
        ds.save_as(path)
    return frame


def nifti_mask_geometry_differs(root: Path, frame: pd.DataFrame) -> pd.DataFrame:
    _, mask = _to_nifti(root, frame, VICTIM)
    image = sitk.ReadImage(str(mask))
    image.SetSpacing(tuple(s * 1.1 for s in image.GetSpacing()))
    sitk.WriteImage(image, str(mask))
    return frame


def nan_in_nifti_image(root: Path, frame: pd.DataFrame) -> pd.DataFrame:
    ct, _ = _to_nifti(root, frame, VICTIM)
    image = sitk.ReadImage(str(ct))
    array = sitk.GetArrayFromImage(image)
    array[array.shape[0] // 2, 10, 10] = np.nan
    nan_image = sitk.GetImageFromArray(array)
    nan_image.CopyInformation(image)
    sitk.WriteImage(nan_image, str(ct))
    return frame


def duplicate_patient_id(root: Path, frame: pd.DataFrame) -> pd.DataFrame:
    frame.loc[VICTIM, "patient_id"] = frame.iloc[VICTIM + 1]["patient_id"]
    return frame


def negative_survival_time(root: Path, frame: pd.DataFrame) -> pd.DataFrame:
    frame.loc[VICTIM, "time_days"] = "-12"
    return frame


def event_not_binary(root: Path, frame: pd.DataFrame) -> pd.DataFrame:
    frame.loc[VICTIM, "event"] = "2"
    return frame


def missing_image_file(root: Path, frame: pd.DataFrame) -> pd.DataFrame:
    shutil.rmtree(root / frame.iloc[VICTIM]["image"])
    return frame


def gantry_tilt(root: Path, frame: pd.DataFrame) -> pd.DataFrame:
    for _k, path in enumerate(_ct_files(root, frame.iloc[VICTIM])):
        ds = pydicom.dcmread(path)
        x, y, z = (float(v) for v in ds.ImagePositionPatient)
        # Slice k shifted along y in proportion to its height: a 15 degree tilt.
        ds.ImagePositionPatient = [x, y + np.tan(np.radians(15)) * (z - 0.0), z]
        ds.GantryDetectorTilt = 15
        ds.save_as(path)
    return frame


def rtstruct_not_a_structure_set(root: Path, frame: pd.DataFrame) -> pd.DataFrame:
    frame.loc[VICTIM, "mask"] = str((_ct_files(root, frame.iloc[VICTIM])[0]).relative_to(root))
    return frame


def image_is_not_an_image(root: Path, frame: pd.DataFrame) -> pd.DataFrame:
    _to_nifti(root, frame, VICTIM)
    ct = root / frame.iloc[VICTIM]["image"]
    ct.write_bytes(b"this is a text file, not a NIfTI volume\n" * 10)
    return frame


def roi_number_missing(root: Path, frame: pd.DataFrame) -> pd.DataFrame:
    _edit_rtstruct(
        root, frame.iloc[VICTIM], lambda ds: delattr(ds.StructureSetROISequence[0], "ROINumber")
    )
    return frame


def referenced_roi_number_empty(root: Path, frame: pd.DataFrame) -> pd.DataFrame:
    def blank(ds: pydicom.Dataset) -> None:
        for contour in ds.ROIContourSequence:
            contour.ReferencedROINumber = ""

    _edit_rtstruct(root, frame.iloc[VICTIM], blank)
    return frame


def rescale_slope_empty(root: Path, frame: pd.DataFrame) -> pd.DataFrame:
    path = _ct_files(root, frame.iloc[VICTIM])[3]
    ds = pydicom.dcmread(path)
    ds.RescaleSlope = ""
    ds.save_as(path)
    return frame


def rescale_slope_zero(root: Path, frame: pd.DataFrame) -> pd.DataFrame:
    path = _ct_files(root, frame.iloc[VICTIM])[3]
    ds = pydicom.dcmread(path)
    ds.RescaleSlope = 0
    ds.save_as(path)
    return frame


def dropped_edge_slice_without_suffix(root: Path, frame: pd.DataFrame) -> pd.DataFrame:
    """Files named without ``.dcm`` (as many PACS export them), the lowest slice gone: no gap
    shows it, the RTSTRUCT's list of the series' slices does."""
    files = _ct_files(root, frame.iloc[VICTIM])
    lowest = min(files, key=lambda f: float(pydicom.dcmread(f).ImagePositionPatient[2]))
    lowest.unlink()
    for path in files:
        if path.exists():
            path.rename(path.with_suffix(""))
    return frame


def two_slices_left(root: Path, frame: pd.DataFrame) -> pd.DataFrame:
    for path in _ct_files(root, frame.iloc[VICTIM])[2:]:
        path.unlink()
    return frame


def gtv_partly_outside_the_ct(root: Path, frame: pd.DataFrame) -> pd.DataFrame:
    def shift_one_contour(ds: pydicom.Dataset) -> None:
        number = next(r.ROINumber for r in ds.StructureSetROISequence if r.ROIName == "GTV-1")
        item = next(i for i in ds.ROIContourSequence if i.ReferencedROINumber == number)
        contour = item.ContourSequence[0]
        points = [float(v) for v in contour.ContourData]
        contour.ContourData = [v + 400.0 if k % 3 == 0 else v for k, v in enumerate(points)]

    _edit_rtstruct(root, frame.iloc[VICTIM], shift_one_contour)
    return frame


def values_not_hounsfield(root: Path, frame: pd.DataFrame) -> pd.DataFrame:
    """Stored values read without their rescale (intercept 0 instead of -1024) and offset."""
    for path in _ct_files(root, frame.iloc[VICTIM]):
        ds = pydicom.dcmread(path)
        ds.RescaleIntercept = 4000
        ds.save_as(path)
    return frame


def _unsafe_id(value: str) -> Breaker:
    def breaker(root: Path, frame: pd.DataFrame) -> pd.DataFrame:
        frame.loc[VICTIM, "patient_id"] = value
        return frame

    breaker.__name__ = f"unsafe_id_{value}"
    return breaker


CASES: list[tuple[Breaker, str]] = [
    (corrupt_dicom, "corrupt DICOM file"),
    (missing_slice, "missing slice"),
    (mixed_series, "mixed series"),
    (rtstruct_of_another_series, "references series"),
    (roi_not_found, "ROI 'GTV-7' not found"),
    (empty_contour, "empty contour"),
    (mask_with_zero_voxels, "zero voxels"),
    (non_ct_modality, "found modality MR"),
    (nifti_mask_geometry_differs, "mask geometry differs from the image: spacing"),
    (nan_in_nifti_image, "NaN"),
    (duplicate_patient_id, "duplicate patient id"),
    (negative_survival_time, "survival time must be > 0 days, got -12"),
    (event_not_binary, "event must be 0 or 1"),
    (missing_image_file, "file not found"),
    (gantry_tilt, "gantry tilt of 15.0 degrees"),
    (rtstruct_not_a_structure_set, "is not an RTSTRUCT"),
    (image_is_not_an_image, "not a readable image"),
    (roi_number_missing, "structure set ROI 1 of 3 has no usable ROINumber"),
    (referenced_roi_number_empty, "ROI contour set 1 of 3 has no usable ReferencedROINumber"),
    (rescale_slope_empty, "RescaleSlope is empty or not a number"),
    (rescale_slope_zero, "RescaleSlope is 0"),
    (dropped_edge_slice_without_suffix, "missing slice: the RTSTRUCT lists 1 slice(s)"),
    (two_slices_left, "missing slice: the RTSTRUCT lists"),
    (gtv_partly_outside_the_ct, "GTV-1 lies partly outside the CT"),
    (values_not_hounsfield, "the values are not Hounsfield units"),
    *[
        (_unsafe_id(value), "a patient id must be 1-64 letters")
        for value in ("/abs/path", "../../x", "..", ".", "a/b", "x" * 65, ".hidden")
    ],
    (_unsafe_id("geometry.parquet"), "may not be one of the stages' file names"),
]


def run_imaging(root: Path, frame: pd.DataFrame, out: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Validation then convert, as the pipeline runs them; returns (geometry, all failures)."""
    report = validate_manifest(frame, base=root)
    geometry, failures = convert_cohort(report.valid, out, ConvertSettings(write_qa=False))
    write_parquet(report.failures(), out / "rejected.parquet")
    write_parquet(failures, out / "failed.parquet")
    return geometry, concat_tables([out / "rejected.parquet", out / "failed.parquet"])


@pytest.mark.slow
@pytest.mark.parametrize(("breaker", "expected"), CASES, ids=[c[0].__name__ for c in CASES])
def test_broken_patient_is_named_and_others_go_on(
    breaker: Breaker, expected: str, cohort_copy: Path, manifest_of, tmp_path: Path
) -> None:
    frame = manifest_of()
    broken = breaker(cohort_copy, frame.copy())
    # Every row of the victim's id fails: two rows when the break is a duplicated id.
    victims = {broken.iloc[VICTIM]["patient_id"]}

    geometry, failures = run_imaging(cohort_copy, broken, tmp_path / "out")

    assert set(failures["patient_id"]) == victims, failures.to_string()
    messages = " | ".join(failures["message"])
    assert expected in messages
    for pid in victims:
        assert pid in messages or pid in set(failures["patient_id"])
    survivors = broken[~broken["patient_id"].isin(victims)]
    assert sorted(geometry["patient_id"]) == sorted(survivors["patient_id"])
    # No DICOM identifier (UID, name, file name) of any input in a message or a warning.
    said = messages + " | " + " | ".join(geometry.get("warnings", pd.Series(dtype=str)).astype(str))
    leaked = leaks([("messages", said)], dicom_identifiers(cohort_copy))
    assert not leaked, leaked
    assert len(survivors) == len(frame) - (2 if breaker is duplicate_patient_id else 1)
