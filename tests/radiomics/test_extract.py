"""The radiomics stage: the paper's 1316 features, exact against PyRadiomics, fast, Parquet."""

from __future__ import annotations

import ast
import re
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
import yaml

from lungsurv.core.errors import InputError
from lungsurv.core.layout import GTV_ROI, NON_FEATURE_COLUMNS, PROVENANCE_COLUMNS
from lungsurv.core.provenance import image_digest
from lungsurv.imaging.convert import ConvertSettings, convert_patient
from lungsurv.radiomics.extract import extract_naive, extract_patient
from lungsurv.radiomics.params import (
    cached_extractor,
    engine_version,
    feature_names,
    load_params,
    paper_params_path,
    params_digest,
)
from lungsurv.stages.convert import convert_cohort, write_patient
from lungsurv.stages.radiomics import extract_cohort, patient_rois
from lungsurv.stages.rings import segment_cohort, segment_patient
from tests.conftest import SHARED

PYRADIOMICS = SHARED / "data" / "pyradiomics"
#: The largest relative difference accepted between the fast path and PyRadiomics' execute.
EXACT = 2e-6


def relative_difference(a: float, b: float) -> float:
    return abs(a - b) / max(abs(b), 1e-9)


@pytest.fixture(scope="module")
def params() -> dict:
    return load_params()


def test_paper_parameters_give_1316_named_features(params: dict) -> None:
    names = feature_names(params)
    assert len(names) == 1316 == len(set(names))
    prefixes = pd.Series([n.split("_")[0] for n in names]).value_counts().to_dict()
    assert prefixes["original"] == 107
    assert sum(v for k, v in prefixes.items() if k.startswith("wavelet")) == 744
    assert sum(v for k, v in prefixes.items() if k.startswith("log")) == 465
    original = pd.Series([n.split("_")[1] for n in names if n.startswith("original")])
    assert original.value_counts().to_dict() == {
        "glcm": 24,
        "firstorder": 18,
        "glrlm": 16,
        "glszm": 16,
        "shape": 14,
        "gldm": 14,
        "ngtdm": 5,
    }
    assert (
        "wavelet-HLH_glszm_ZoneEntropy" in names and "log-sigma-5-0-mm-3D_ngtdm_Busyness" in names
    )
    settings = yaml.safe_load(paper_params_path().read_text())["setting"]
    assert settings["binWidth"] == 25 and settings["normalize"] is True


def test_normalize_scale_override(params: dict) -> None:
    assert load_params(normalize_scale=1.0)["setting"]["normalizeScale"] == 1.0
    with pytest.raises(ValueError, match="-5"):
        load_params(normalize_scale=-5)


def test_unknown_setting_is_named(tmp_path: Path) -> None:
    bad = yaml.safe_load(paper_params_path().read_text())
    bad["setting"]["binWidht"] = 25
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(bad))
    with pytest.raises(InputError, match="binWidht"):
        load_params(path)


def _patient(small_cohort_dir: Path, tmp_path: Path, index: int) -> tuple[sitk.Image, dict]:
    row = pd.read_csv(small_cohort_dir / "manifest.csv").iloc[index]
    row["image"], row["mask"] = small_cohort_dir / row["image"], small_cohort_dir / row["mask"]
    folder = write_patient(convert_patient(row), tmp_path / "v", write_qa=False)
    segment_patient(folder, tmp_path / "r", write_qa=False)
    return sitk.ReadImage(str(folder / "image.nii.gz")), patient_rois(
        folder, tmp_path / "r" / folder.name
    )


def _largest_differences(fast: dict, naive: dict) -> dict[str, float]:
    worst: dict[str, float] = {}
    for roi, values in naive.items():
        for name, value in values.items():
            group = name.split("_")[0].split("-")[0]
            worst[group] = max(worst.get(group, 0.0), relative_difference(fast[roi][name], value))
    return worst


@pytest.mark.slow
def test_fast_path_equals_pyradiomics_on_synthetic_patients(
    small_cohort_dir: Path, tmp_path: Path, params: dict
) -> None:
    for index in (0, 3):
        image, rois = _patient(small_cohort_dir, tmp_path / str(index), index)
        fast, failures = extract_patient(image, rois, params)
        assert not failures
        naive = extract_naive(image, rois, params)
        worst = _largest_differences(fast, naive)
        print(f"synthetic patient {index}: largest relative difference by image type {worst}")
        assert max(worst.values()) < EXACT


@pytest.mark.slow
def test_fast_path_equals_pyradiomics_on_lung1(
    lung1_row: dict, tmp_path: Path, params: dict
) -> None:
    folder = write_patient(convert_patient(lung1_row), tmp_path / "v", write_qa=False)
    segment_patient(folder, tmp_path / "r", distances_mm=(3.0,), write_qa=False)
    image = sitk.ReadImage(str(folder / "image.nii.gz"))
    rois = patient_rois(folder, tmp_path / "r" / folder.name)
    assert list(rois) == [GTV_ROI, "ring_3mm"]
    fast, _ = extract_patient(image, rois, params)
    worst = _largest_differences(fast, extract_naive(image, rois, params))
    print(f"LUNG1-001: largest relative difference by image type {worst}")
    assert worst["original"] < 1e-9 and worst["wavelet"] < 1e-9
    assert worst["log"] < EXACT


def _baseline(case: str) -> tuple[dict, dict[str, float]]:
    settings: dict = {}
    values: dict[str, float] = {}
    for path in sorted((PYRADIOMICS / "baseline").glob("baseline_*.csv")):
        if path.name in {"baseline_shape2D.csv"}:
            continue
        table = pd.read_csv(path, index_col=0)
        column = table[case]
        settings = ast.literal_eval(column["diagnostics_Configuration_Settings"])
        for name, value in column.items():
            if not str(name).startswith("diagnostics"):
                values[str(name)] = float(value)
    return settings, values


@pytest.mark.parametrize("case", ["lung1", "lung2"])
def test_pyradiomics_regression_baseline(case: str) -> None:
    if not PYRADIOMICS.exists():
        pytest.skip("../shared/data/pyradiomics is not here")
    settings, expected = _baseline(case)
    settings = {k: v for k, v in settings.items() if v is not None and k != "additionalInfo"}
    params = {
        "imageType": {"Original": {}},
        "featureClass": {
            c: None for c in ("firstorder", "shape", "glcm", "glrlm", "glszm", "gldm", "ngtdm")
        },
        "setting": settings,
    }
    image = sitk.ReadImage(str(PYRADIOMICS / f"{case}_image.nrrd"))
    mask = sitk.ReadImage(str(PYRADIOMICS / f"{case}_label.nrrd"))
    results, failures = extract_patient(image, {"gtv": mask}, params)
    assert not failures
    got = results["gtv"]
    compared = 0
    for name, value in expected.items():
        if name not in got:
            continue  # a feature PyRadiomics 3.1 deprecated since the baseline was made
        compared += 1
        tolerance = 0.03 * abs(value) if value != 0 else 1e-9
        assert abs(got[name] - value) <= tolerance, (name, got[name], value)
    assert compared >= 100


@pytest.mark.slow
def test_cohort_table_and_bad_rois(small_cohort_dir: Path, tmp_path: Path, params: dict) -> None:
    manifest = pd.read_csv(small_cohort_dir / "manifest.csv").head(4)
    for column in ("image", "mask"):
        manifest[column] = [str(small_cohort_dir / v) for v in manifest[column]]
    convert_cohort(manifest, tmp_path / "v", ConvertSettings(write_qa=False))
    segment_cohort(tmp_path / "v", tmp_path / "r", write_qa=False)
    ids = list(manifest["patient_id"])
    # Patient 1: a 3-voxel GTV (a line: too small for PyRadiomics' 2D minimum).
    gtv = sitk.ReadImage(str(tmp_path / "v" / ids[1] / "gtv.nii.gz"))
    tiny = np.zeros(sitk.GetArrayViewFromImage(gtv).shape, np.uint8)
    tiny[20, 20, 20:23] = 1
    tiny_image = sitk.GetImageFromArray(tiny)
    tiny_image.CopyInformation(gtv)
    sitk.WriteImage(tiny_image, str(tmp_path / "v" / ids[1] / "gtv.nii.gz"))
    # Patient 2: its 9 mm ring vanished (as after clipping to the lungs).
    ring = sitk.ReadImage(str(tmp_path / "r" / ids[2] / "ring_9mm.nii.gz"))
    sitk.WriteImage(ring * 0, str(tmp_path / "r" / ids[2] / "ring_9mm.nii.gz"))
    # Patient 3: a ring mask on another grid than its image.
    shifted = sitk.ReadImage(str(tmp_path / "r" / ids[3] / "ring_3mm.nii.gz"))
    shifted.SetOrigin(tuple(o + 7.0 for o in shifted.GetOrigin()))
    sitk.WriteImage(shifted, str(tmp_path / "r" / ids[3] / "ring_3mm.nii.gz"))

    table, failures = extract_cohort(tmp_path / "v", tmp_path / "r", params, workers=2)
    table.to_parquet(tmp_path / "features.parquet")
    back = pd.read_parquet(tmp_path / "features.parquet")
    assert list(back.columns[:3]) == ["patient_id", "roi", "n_voxels"]
    assert list(back.columns[3:8]) == list(PROVENANCE_COLUMNS)
    assert back.shape[1] == len(NON_FEATURE_COLUMNS) + 1316
    assert not back.drop(columns=["patient_id", "roi"]).isna().any().any()
    # Every row says how it was made: one engine and parameter set, the patient's one image,
    # each ROI's own mask (the GTV's digest is that of the file the stage read).
    assert set(back["engine_version"]) == {engine_version()}
    assert set(back["params_digest"]) == {params_digest(params)}
    assert (back.groupby("patient_id")["image_digest"].nunique() == 1).all()
    assert (
        back.groupby("patient_id")["mask_digest"].nunique() == back.groupby("patient_id").size()
    ).all()
    first = back[(back["patient_id"] == ids[0]) & (back["roi"] == "gtv")].iloc[0]
    assert first["mask_digest"] == image_digest(
        sitk.ReadImage(str(tmp_path / "v" / ids[0] / "gtv.nii.gz"))
    )
    assert first["image_digest"] == image_digest(
        sitk.ReadImage(str(tmp_path / "v" / ids[0] / "image.nii.gz"))
    )
    rows = back.groupby("patient_id")["roi"].apply(list).to_dict()
    assert ids[1] not in rows
    assert rows[ids[0]] == ["gtv", "ring_3mm", "ring_6mm", "ring_9mm"]
    assert rows[ids[2]] == ["gtv", "ring_3mm", "ring_6mm"]
    assert rows[ids[3]] == ["gtv", "ring_6mm", "ring_9mm"]
    reasons = {(f.patient_id, f.message.split(":")[0]) for f in failures.itertuples()}
    assert (ids[1], "ROI gtv") in reasons
    assert (ids[2], "ROI ring_9mm") in reasons
    assert (ids[3], "ROI ring_3mm") in reasons
    assert set(failures["stage"]) == {"radiomics"}


def test_constant_roi_gives_documented_values(params: dict) -> None:
    """A constant-intensity ROI is valid input: one grey level, zero spread, no NaN."""
    array = np.full((30, 30, 30), 40.0, np.float32)
    array += np.random.default_rng(0).normal(0, 30, array.shape).astype(np.float32)
    array[10:20, 10:20, 10:20] = 55.0
    image = sitk.GetImageFromArray(array)
    mask_array = np.zeros(array.shape, np.uint8)
    mask_array[10:20, 10:20, 10:20] = 1
    mask = sitk.GetImageFromArray(mask_array)
    results, failures = extract_patient(image, {"gtv": mask}, params)
    assert not failures
    values = results["gtv"]
    assert values["original_firstorder_Variance"] == pytest.approx(0, abs=1e-12)
    assert values["original_glcm_JointEntropy"] == pytest.approx(0, abs=1e-12)
    assert values["original_glszm_ZoneEntropy"] == pytest.approx(0, abs=1e-12)
    assert not np.isnan(values["original_firstorder_Mean"])


def test_wanted_features_only_are_computed_with_the_same_values(
    small_cohort_dir: Path, tmp_path: Path, params: dict
) -> None:
    """Serving asks each ROI for a few features; they equal the full extraction's exactly."""
    image, rois = _patient(small_cohort_dir, tmp_path, 1)
    rois = {k: rois[k] for k in ("gtv", "ring_6mm")}
    full, _ = extract_patient(image, rois, params)
    wanted = {
        "gtv": {"original_shape_Sphericity", "wavelet-HLL_glszm_ZoneEntropy"},
        "ring_6mm": {"log-sigma-3-0-mm-3D_firstorder_Mean", "original_gldm_DependenceEntropy"},
    }
    some, failures = extract_patient(image, rois, params, wanted=wanted)
    assert not failures
    for roi, names in wanted.items():
        assert set(some[roi]) == names
        assert all(some[roi][n] == full[roi][n] for n in names)


def _scan_with_tumour() -> tuple[sitk.Image, sitk.Image]:
    """A 'whole scan' (air, body, lung) with a textured sphere: the crop around the sphere holds
    much less air than the scan, so its own statistics differ from the scan's."""
    rng = np.random.default_rng(4)
    z, y, x = np.mgrid[:40, :80, :80]
    array = np.where((y - 40) ** 2 + (x - 40) ** 2 < 35**2, -820.0, -1000.0)
    inside = (z - 20) ** 2 + (y - 40) ** 2 + (x - 30) ** 2 <= 7**2
    array[inside] = 30.0 + rng.normal(0, 40, inside.sum())
    array += rng.normal(0, 15, array.shape)
    image = sitk.GetImageFromArray(array.astype(np.float32))
    mask = sitk.GetImageFromArray(inside.astype(np.uint8))
    mask.CopyInformation(image)
    return image, mask


@pytest.mark.parametrize("outliers", [None, 3.0])
def test_a_crop_normalised_with_the_scans_statistics_equals_pyradiomics_on_the_scan(
    outliers: float | None,
) -> None:
    image, mask = _scan_with_tumour()
    params = {
        "imageType": {"Original": {}},
        "featureClass": {"firstorder": None, "glcm": None},
        "setting": {"normalize": True, "normalizeScale": 100, "binWidth": 25, "label": 1},
    }
    if outliers is not None:
        params["setting"]["removeOutliers"] = outliers
    whole, _ = extract_patient(image, {"gtv": mask}, params)
    statistics = sitk.StatisticsImageFilter()
    statistics.Execute(image)
    box = [[20, 25, 10], [20, 30, 20]]  # x, y, z lower; sizes: the sphere and a margin
    crop_image = sitk.RegionOfInterest(image, box[1], box[0])
    crop_mask = sitk.RegionOfInterest(mask, box[1], box[0])
    scans, _ = extract_patient(
        crop_image,
        {"gtv": crop_mask},
        params,
        ct_statistics=(statistics.GetMean(), statistics.GetSigma()),
    )
    own, _ = extract_patient(crop_image, {"gtv": crop_mask}, params)
    for name, value in whole["gtv"].items():
        assert relative_difference(scans["gtv"][name], value) < 1e-4, name
    # The crop's own statistics give other values: the tumour would set its own scale.
    mean = "original_firstorder_Mean"
    assert relative_difference(own["gtv"][mean], whole["gtv"][mean]) > 0.05


@pytest.mark.parametrize("statistics", [(0.0, 0.0), (float("nan"), 1.0), (-500.0, -3.0)])
def test_unusable_scan_statistics_are_refused(statistics: tuple[float, float]) -> None:
    image, mask = _scan_with_tumour()
    with pytest.raises(InputError, match="intensity statistics are unusable"):
        extract_patient(image, {"gtv": mask}, load_params(), ct_statistics=statistics)


@pytest.mark.parametrize(
    ("labels", "message"),
    [(0, "No labels found"), (2, r"Label \(1\) not present in mask. Choose from \[2\]")],
)
def test_an_roi_without_its_label_is_reported_as_pyradiomics_would(
    labels: int, message: str
) -> None:
    image, mask = _scan_with_tumour()
    other = sitk.Cast(mask, sitk.sitkUInt8) * labels
    values, failures = extract_patient(image, {"gtv": mask, "other": other}, load_params())
    assert set(values) == {"gtv"} and re.search(message, failures["other"])


def test_the_extractor_is_made_once_per_thread_and_parameter_set(params: dict) -> None:
    first = cached_extractor(params)
    assert cached_extractor(yaml.safe_load(yaml.safe_dump(params))) is first
    changed = {**params, "setting": {**params["setting"], "binWidth": 10}}
    assert cached_extractor(changed) is not first
    elsewhere: list[object] = []
    thread = threading.Thread(target=lambda: elsewhere.append(cached_extractor(params)))
    thread.start()
    thread.join()
    assert elsewhere[0] is not first  # extraction switches its features: one per thread


def _mask_on(image: sitk.Image, voxels: tuple[slice, ...], label: int = 1) -> sitk.Image:
    values = np.zeros(sitk.GetArrayViewFromImage(image).shape, dtype=np.uint32)
    values[voxels] = label
    mask = sitk.GetImageFromArray(values)
    mask.CopyInformation(image)
    return mask


@pytest.mark.parametrize(
    ("voxels", "settings"),
    [
        ((slice(3, 9), slice(2, 12), slice(5, 7)), {}),  # a box
        ((slice(4, 5), slice(6, 7), slice(8, 9)), {}),  # one voxel
        ((slice(4, 5), slice(6, 7), slice(2, 9)), {}),  # a line, 2 dimensions needed
        ((slice(4, 5), slice(2, 7), slice(2, 9)), {"minimumROIDimensions": 3}),  # a plane
        ((slice(4, 6), slice(2, 4), slice(2, 4)), {"minimumROISize": 8}),  # 8 voxels, too few
        ((slice(4, 6), slice(2, 4), slice(2, 4)), {"minimumROISize": 7}),
        ((slice(0, 16), slice(0, 14), slice(0, 12)), {}),  # the whole image
    ],
)
def test_the_mask_check_equals_pyradiomics(voxels: tuple[slice, ...], settings: dict) -> None:
    from radiomics import imageoperations

    from lungsurv.radiomics.extract import _check_mask

    image = sitk.GetImageFromArray(np.random.default_rng(0).normal(size=(16, 14, 12)))
    image.SetSpacing((0.8, 1.0, 2.5))
    image.SetOrigin((-3.0, 4.0, 10.0))
    mask = _mask_on(image, voxels)
    inside = sitk.GetArrayViewFromImage(mask) == 1
    settings = {"label": 1, "minimumROIDimensions": 2, "minimumROISize": None, **settings}
    try:
        expected = imageoperations.checkMask(image, mask, **settings)
    except ValueError as error:
        with pytest.raises(ValueError, match=re.escape(str(error))):
            _check_mask(image, mask, inside, settings)
        return
    bbox, corrected = _check_mask(image, mask, inside, settings)
    assert np.array_equal(bbox, expected[0]) and corrected is None is expected[1]
