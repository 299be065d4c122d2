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
