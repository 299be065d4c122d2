"""The convert stage: resampling, cropping, file formats and what never leaves the hospital."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from lungsurv.core.errors import InputError
from lungsurv.core.layout import GTV_FILE, IMAGE_FILE, LUNGS_FILE, QA_FILE
from lungsurv.imaging.convert import (
    ConvertSettings,
    convert_patient,
    crop_grid,
    intensity_statistics,
    load_patient,
    mask_bounds,
    resample_image,
    resample_mask,
)
from lungsurv.stages.convert import convert_cohort
from lungsurv.synthetic.export import read_dicom_identity


@pytest.fixture(scope="module")
def small_manifest(small_cohort_dir: Path) -> pd.DataFrame:
    frame = pd.read_csv(small_cohort_dir / "manifest.csv")
    for column in ("image", "mask"):
        frame[column] = [str(small_cohort_dir / v) for v in frame[column]]
    return frame


@pytest.mark.slow
def test_cropped_bspline_equals_whole_image_bspline(lung1_row: dict) -> None:
    loaded = load_patient(lung1_row, ConvertSettings(), Path("unused"))
    grid, _, _ = crop_grid(loaded.gtv, 35.0, 1.0)
    cropped = sitk.GetArrayFromImage(resample_image(loaded.image, grid))
    whole = sitk.GetArrayFromImage(resample_image(loaded.image, grid, crop_source=False))
    assert np.abs(cropped - whole).max() < 1e-3


@pytest.mark.parametrize(("method", "tolerance_pct"), [("volume", 1.0), ("nearest", 5.0)])
def test_mask_resampling_keeps_the_volume(
    small_manifest: pd.DataFrame, method: str, tolerance_pct: float
) -> None:
    changes = [
        convert_patient(row, ConvertSettings(mask_interpolation=method, write_qa=False)).geometry[
            "gtv_volume_change_pct"
        ]
        for _, row in small_manifest.iterrows()
    ]
    assert max(abs(c) for c in changes) < tolerance_pct, changes


def test_fixed_half_threshold_shrinks_small_tumours(small_manifest: pd.DataFrame) -> None:
    """Why "volume" is the default: linear + 0.5 loses volume on small convex GTVs."""
    changes = [
        convert_patient(row, ConvertSettings(mask_interpolation="linear")).geometry[
            "gtv_volume_change_pct"
        ]
        for _, row in small_manifest.iterrows()
    ]
    assert np.median(changes) < -2.0


def test_output_grid_is_1mm_and_covers_the_margin(small_manifest: pd.DataFrame) -> None:
    converted = convert_patient(small_manifest.iloc[0], ConvertSettings(crop_margin_mm=10.0))
    assert converted.image.GetSpacing() == pytest.approx((1.0, 1.0, 1.0))
    gtv = sitk.GetArrayViewFromImage(converted.gtv) > 0
    _z, y, x = np.nonzero(gtv)
    for low, high, size in ((x.min(), x.max(), gtv.shape[2]), (y.min(), y.max(), gtv.shape[1])):
        assert low >= 9 and size - 1 - high >= 9
    assert converted.image.GetPixelID() == sitk.sitkFloat32


def test_nifti_and_nrrd_inputs_match_dicom(small_manifest: pd.DataFrame, tmp_path: Path) -> None:
    row = small_manifest.iloc[1]
    loaded = load_patient(row, ConvertSettings(), tmp_path)
    from_dicom = convert_patient(row)
    for suffix in (".nii.gz", ".nrrd"):
        image, mask = tmp_path / f"ct{suffix}", tmp_path / f"gtv{suffix}"
        sitk.WriteImage(loaded.image, str(image))
        sitk.WriteImage(loaded.gtv, str(mask))
        other = convert_patient(row.to_dict() | {"image": str(image), "mask": str(mask)})
        assert other.geometry["source"] == ("nifti" if suffix == ".nii.gz" else "nrrd")
        assert other.geometry["gtv_volume_ml_resampled"] == pytest.approx(
            from_dicom.geometry["gtv_volume_ml_resampled"]
        )
        assert np.allclose(
            sitk.GetArrayViewFromImage(other.image),
            sitk.GetArrayViewFromImage(from_dicom.image),
            atol=1e-2,
        )


def test_label_image_roi_selects_one_label(small_manifest: pd.DataFrame, tmp_path: Path) -> None:
    row = small_manifest.iloc[1]
    loaded = load_patient(row, ConvertSettings(), tmp_path)
    labels = sitk.Cast(loaded.gtv, sitk.sitkUInt8) * 2
    labels = sitk.Maximum(labels, sitk.Cast(loaded.lungs > 0, sitk.sitkUInt8) * (labels == 0) * 5)
    image, mask = tmp_path / "ct.nii.gz", tmp_path / "labels.nii.gz"
    sitk.WriteImage(loaded.image, str(image))
    sitk.WriteImage(labels, str(mask))
    gtv_only = convert_patient(row.to_dict() | {"image": str(image), "mask": str(mask), "roi": "2"})
    everything = convert_patient(
        row.to_dict() | {"image": str(image), "mask": str(mask), "roi": ""}
    )
    assert gtv_only.geometry["gtv_volume_ml_original"] == pytest.approx(
        convert_patient(row).geometry["gtv_volume_ml_original"]
    )
    assert (
        everything.geometry["gtv_volume_ml_original"] > gtv_only.geometry["gtv_volume_ml_original"]
    )


@pytest.mark.slow
def test_no_dicom_identity_reaches_any_output(
    small_cohort_dir: Path, small_manifest: pd.DataFrame, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    geometry, failures = convert_cohort(small_manifest.head(3), out)
    assert failures.empty
    secrets: set[str] = set()
    for _, row in small_manifest.head(3).iterrows():
        slice_file = sorted(Path(row["image"]).glob("*.dcm"))[0]
        secrets |= set(read_dicom_identity(slice_file).values())
        secrets |= set(read_dicom_identity(Path(row["mask"])).values())
    assert len(secrets) > 10
    geometry.to_parquet(out / "geometry.parquet")
    blobs = []
    for path in out.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            blobs.append(gzip.decompress(data) if path.suffix == ".gz" else data)
    everything = b"\n".join(blobs)
    leaked = [s for s in secrets if s.encode() in everything]
    assert not leaked
    for _, row in small_manifest.head(3).iterrows():
        folder = out / row["patient_id"]
        assert {IMAGE_FILE, GTV_FILE, LUNGS_FILE, QA_FILE} <= {p.name for p in folder.iterdir()}


@pytest.mark.slow
def test_parallel_workers_give_the_same_tables(
    small_manifest: pd.DataFrame, tmp_path: Path
) -> None:
    from lungsurv.stages.rings import segment_cohort

    settings = ConvertSettings(write_qa=False)
    rows = small_manifest.head(3).copy()
    rows.loc[1, "roi"] = "GTV-404"
    serial, serial_failures = convert_cohort(rows, tmp_path / "a", settings)
    parallel, parallel_failures = convert_cohort(rows, tmp_path / "b", settings, workers=2)
    pd.testing.assert_frame_equal(serial, parallel)
    pd.testing.assert_frame_equal(serial_failures, parallel_failures)
    assert list(parallel_failures["patient_id"]) == [rows.loc[1, "patient_id"]]
    rings_serial = segment_cohort(tmp_path / "a", tmp_path / "ra", write_qa=False)[0]
    rings_parallel = segment_cohort(tmp_path / "b", tmp_path / "rb", write_qa=False, workers=2)[0]
    pd.testing.assert_frame_equal(rings_serial, rings_parallel)


@pytest.mark.parametrize(
    ("field", "value"),
    [("spacing_mm", 0.0), ("crop_margin_mm", -1.0), ("mask_interpolation", "cubic")],
)
def test_invalid_settings_name_the_value(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=str(value)):
        ConvertSettings(**{field: value})


def _blob_mask(seed: int) -> sitk.Image:
    rng = np.random.default_rng(seed)
    values = np.zeros((30, 40, 50), dtype=np.uint8)
    low = rng.integers(0, 15, 3)
    high = low + rng.integers(1, 15, 3)
    values[low[0] : high[0], low[1] : high[1], low[2] : high[2]] = (
        rng.random(tuple(high - low)) < 0.7
    )
    values[tuple(low)] = 1  # the box's corners hold a voxel each way
    values[tuple(high - 1)] = 1
    mask = sitk.GetImageFromArray(values)
    mask.SetSpacing((0.8, 0.9, 2.5))
    mask.SetOrigin((-12.0, 30.0, 4.0))
    return mask


@pytest.mark.parametrize("seed", range(5))
def test_mask_bounds_are_the_extreme_voxel_indices(seed: int) -> None:
    mask = _blob_mask(seed)
    where = np.argwhere(sitk.GetArrayViewFromImage(mask))[:, ::-1]  # x, y, z
    low, high = mask_bounds(mask)
    assert low.tolist() == where.min(axis=0).tolist()
    assert high.tolist() == where.max(axis=0).tolist()


def test_mask_bounds_of_an_empty_mask_is_an_input_error() -> None:
    with pytest.raises(InputError, match="no voxels"):
        mask_bounds(sitk.Image(4, 4, 4, sitk.sitkUInt8))


@pytest.mark.parametrize("method", ["volume", "linear", "nearest"])
@pytest.mark.parametrize("seed", range(3))
def test_mask_resampling_from_the_grid_region_equals_the_whole_mask(seed: int, method: str) -> None:
    mask = _blob_mask(seed)
    grid, _, _ = crop_grid(mask, margin_mm=5.0, spacing_mm=1.0)
    ours = sitk.GetArrayFromImage(resample_mask(mask, grid, method)).astype(bool)
    # The reference reads the whole mask, as resampling did before it read the grid's region.
    if method == "nearest":
        whole = sitk.Resample(mask, grid, sitk.Transform(), sitk.sitkNearestNeighbor, 0)
        assert np.array_equal(ours, sitk.GetArrayViewFromImage(whole).astype(bool))
        return
    fraction = sitk.GetArrayFromImage(
        sitk.Resample(
            sitk.Cast(mask > 0, sitk.sitkFloat32), grid, sitk.Transform(), sitk.sitkLinear, 0.0
        )
    )
    threshold = 0.5
    if method == "volume":
        target = round(
            np.count_nonzero(sitk.GetArrayViewFromImage(mask)) * np.prod(mask.GetSpacing())
        )
        threshold = np.sort(fraction[fraction > 0])[-target]
    assert np.array_equal(ours, fraction >= threshold)


# The same anatomy in every encoding: the converted volumes and the GTV's 1316 features agree.


def _nibabel_scaled(image: sitk.Image, path: Path, slope: float, inter: float) -> Path:
    """A .nii as nibabel writes one (RAS affine, x-y-z array order), storing int16 values with
    ``scl_slope``/``scl_inter`` (nibabel's own writer would choose its own scaling)."""
    import nibabel as nib

    affine = np.eye(4)
    affine[:3, :3] = np.asarray(image.GetDirection()).reshape(3, 3) * image.GetSpacing()
    affine[:3, 3] = image.GetOrigin()
    affine = np.diag([-1.0, -1.0, 1.0, 1.0]) @ affine  # LPS (ITK) -> RAS (NIfTI)
    stored = np.round((sitk.GetArrayFromImage(image) - inter) / slope).astype(np.int16)
    header = nib.Nifti1Header()
    header.set_data_shape(image.GetSize())
    header.set_data_dtype(np.int16)
    header.set_qform(affine, code=1)
    header.set_sform(affine, code=1)
    header.set_slope_inter(slope, inter)
    with path.open("wb") as file:
        header.write_to(file)
        file.seek(int(header.get_data_offset()))
        file.write(stored.tobytes())  # numpy's z-y-x C order is NIfTI's x-y-z Fortran order
    return path


def _flipped(image: sitk.Image, axes: tuple[bool, bool, bool]) -> sitk.Image:
    """The same anatomy stored in another voxel order (the direction matrix says so)."""
    array = sitk.GetArrayFromImage(image)
    size = np.asarray(image.GetSize())
    corner = [int(n - 1) if flip else 0 for n, flip in zip(size, axes, strict=True)]
    for axis, flip in enumerate(axes):
        if flip:
            array = np.flip(array, axis=2 - axis)  # numpy's axes are z, y, x
    flipped = sitk.GetImageFromArray(np.ascontiguousarray(array))
    flipped.SetSpacing(image.GetSpacing())
    flipped.SetOrigin(image.TransformIndexToPhysicalPoint(corner))
    direction = np.asarray(image.GetDirection()).reshape(3, 3) * np.where(axes, -1.0, 1.0)
    flipped.SetDirection(tuple(direction.ravel()))
    return flipped


def _write(image: sitk.Image, path: Path, *, compress: bool = False) -> Path:
    sitk.WriteImage(image, str(path), useCompression=compress)
    return path


ENCODINGS = {
    "nifti-gz-float32": lambda ct, gtv, d: (
        _write(sitk.Cast(ct, sitk.sitkFloat32), d / "ct.nii.gz"),
        _write(gtv, d / "gtv.nii.gz"),
        None,
    ),
    "nifti-int16": lambda ct, gtv, d: (
        _write(sitk.Cast(ct, sitk.sitkInt16), d / "ct.nii"),
        _write(sitk.Cast(gtv, sitk.sitkInt16), d / "gtv.nii"),
        None,
    ),
    "nifti-scaled-int16-nibabel": lambda ct, gtv, d: (
        _nibabel_scaled(ct, d / "ct.nii", 0.5, -1024.0),
        _write(gtv, d / "gtv.nii.gz"),
        None,
    ),
    "nrrd-raw": lambda ct, gtv, d: (_write(ct, d / "ct.nrrd"), _write(gtv, d / "gtv.nrrd"), None),
    "nrrd-gzip": lambda ct, gtv, d: (
        _write(ct, d / "ct.nrrd", compress=True),
        _write(gtv, d / "gtv.nrrd", compress=True),
        None,
    ),
    "metaimage-float-mask": lambda ct, gtv, d: (
        _write(ct, d / "ct.mha"),
        _write(sitk.Cast(gtv, sitk.sitkFloat32), d / "gtv.mha"),
        None,
    ),
    "label-2-of-a-label-map": lambda ct, gtv, d: (
        _write(ct, d / "ct.nii.gz"),
        _write(
            sitk.Cast(gtv, sitk.sitkUInt8) * 2 + sitk.Cast(gtv == 0, sitk.sitkUInt8), d / "l.nii.gz"
        ),
        "2",
    ),
    "nifti-stored-flipped-in-x-and-y": lambda ct, gtv, d: (
        _write(_flipped(ct, (True, True, False)), d / "ct.nii.gz"),
        _write(_flipped(gtv, (True, True, False)), d / "gtv.nii.gz"),
        None,
    ),
}


@pytest.fixture(scope="module")
def dicom_reference(small_manifest: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory):
    """One synthetic patient read from its DICOM series + RTSTRUCT: the loaded CT and GTV on
    the CT's grid, the converted 1 mm volumes and the GTV's features."""
    row = small_manifest.iloc[0].to_dict()
    loaded = load_patient(row, ConvertSettings(), tmp_path_factory.mktemp("unused"))
    converted = convert_patient(row, ConvertSettings(write_qa=False))
    return row, loaded, converted, _gtv_features(converted)


def _gtv_features(converted) -> dict[str, float]:
    from lungsurv.radiomics.extract import extract_patient
    from lungsurv.radiomics.params import load_params

    features, failures = extract_patient(converted.image, {"gtv": converted.gtv}, load_params())
    assert not failures
    return features["gtv"]


@pytest.mark.slow
@pytest.mark.parametrize("encoding", sorted(ENCODINGS))
def test_the_same_anatomy_in_any_encoding_gives_the_same_features(
    encoding: str, dicom_reference, tmp_path: Path
) -> None:
    row, loaded, reference, reference_features = dicom_reference
    image, mask, roi = ENCODINGS[encoding](loaded.image, loaded.gtv, tmp_path)
    converted = convert_patient(
        {**row, "image": str(image), "mask": str(mask), "roi": roi}, ConvertSettings(write_qa=False)
    )
    for name in ("image", "gtv"):
        expected = getattr(reference, name)
        got = getattr(converted, name)
        assert got.GetSize() == expected.GetSize()
        assert np.allclose(got.GetOrigin(), expected.GetOrigin(), atol=1e-4)
        assert np.allclose(got.GetDirection(), expected.GetDirection(), atol=1e-6)
        assert np.allclose(
            sitk.GetArrayViewFromImage(got), sitk.GetArrayViewFromImage(expected), atol=1e-3
        ), name
    features = _gtv_features(converted)
    assert features.keys() == reference_features.keys() and len(features) == 1316
    differ = {
        k: (v, reference_features[k])
        for k, v in features.items()
        if not np.isclose(v, reference_features[k], rtol=1e-6, atol=1e-9)
    }
    assert not differ, f"{len(differ)} features differ, e.g. {list(differ.items())[:3]}"


def test_the_whole_scans_intensity_statistics_travel_with_the_volumes(
    small_manifest: pd.DataFrame, tmp_path: Path
) -> None:
    """Radiomics normalises the crop with the whole scan's statistics (as PyRadiomics would
    normalise the whole CT): convert records them, and writes them beside the volumes."""
    import json

    from lungsurv.core.layout import CT_STATISTICS_FILE
    from lungsurv.stages.convert import write_patient
    from lungsurv.stages.radiomics import ct_statistics

    row = small_manifest.iloc[0].to_dict()
    loaded = load_patient(row, ConvertSettings(), tmp_path / "unused")
    converted = convert_patient(row, ConvertSettings(write_qa=False))
    scan = sitk.GetArrayFromImage(loaded.image).astype(float)
    assert converted.geometry["ct_mean_hu"] == pytest.approx(scan.mean(), rel=1e-9)
    assert converted.geometry["ct_std_hu"] == pytest.approx(scan.std(ddof=1), rel=1e-9)
    folder = write_patient(converted, tmp_path / "volumes", write_qa=False)
    written = json.loads((folder / CT_STATISTICS_FILE).read_text())
    assert written == {k: converted.geometry[k] for k in ("ct_mean_hu", "ct_std_hu")}
    assert ct_statistics(folder) == (written["ct_mean_hu"], written["ct_std_hu"])
    assert ct_statistics(tmp_path) is None  # a folder convert did not write


@pytest.mark.parametrize(
    ("pixel_type", "scale", "shift", "exact"),
    [
        (sitk.sitkInt16, 1.0, 0.0, True),  # a CT as stored: summed in 64-bit integers
        (sitk.sitkUInt16, 1.0, 1024.0, True),  # stored unsigned, before its DICOM rescale
        (sitk.sitkUInt8, 0.05, 60.0, True),  # 8-bit
        (sitk.sitkInt32, 1.0, 0.0, True),  # wider integers: float64 slabs
        (sitk.sitkFloat32, 1.0, -1024.0, True),  # HU from a DICOM rescale, integer-valued
        (sitk.sitkFloat32, 0.37, 0.1, False),  # fractional values
    ],
)
def test_intensity_statistics_equal_itks(
    pixel_type: int, scale: float, shift: float, exact: bool
) -> None:
    rng = np.random.default_rng(7)
    # 37 slices: several slabs and a partial one; air, soft tissue and bone.
    hu = rng.choice([-1000, -850, 40, 60, 700, 1800], size=(37, 64, 48)) + rng.integers(
        -30, 30, (37, 64, 48)
    )
    image = sitk.Cast(sitk.GetImageFromArray(hu.astype(np.int16)), pixel_type)
    if scale != 1.0 or shift != 0.0:
        image = sitk.Cast(image * scale + shift, pixel_type)
    reference = sitk.StatisticsImageFilter()
    reference.Execute(image)
    mean, std = intensity_statistics(image)
    if exact:
        assert (mean, std) == (reference.GetMean(), reference.GetSigma())
    else:
        assert mean == pytest.approx(reference.GetMean(), rel=1e-12)
        assert std == pytest.approx(reference.GetSigma(), rel=1e-12)
