"""The synthetic cohort: real DICOM, deterministic, importable, with a known survival model."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest
import SimpleITK as sitk
from scipy.stats import spearmanr

from lungsurv.cohort.tcia import import_nsclc_radiomics
from lungsurv.imaging import dicom
from lungsurv.synthetic.export import MANIFEST_FILE, TRUTH_FILE, generate_cohort, oracle_c_index
from lungsurv.synthetic.phantom import (
    GeneratorConfig,
    draw_cohort,
    small_config,
    spatial_signal_config,
)
from lungsurv.synthetic.rendering import render_ct


def _digest(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.dcm")):
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def test_every_file_reads_back_with_pydicom_and_simpleitk(small_cohort_dir: Path) -> None:
    manifest = pd.read_csv(small_cohort_dir / MANIFEST_FILE)
    for _, row in manifest.iterrows():
        folder = small_cohort_dir / row["image"]
        for path in folder.glob("*.dcm"):
            ds = pydicom.dcmread(path)
            assert ds.Modality == "CT" and ds.pixel_array.dtype == np.int16
        reader = sitk.ImageSeriesReader()
        reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
        gdcm = reader.Execute()
        ours = dicom.read_ct_series(folder).image
        assert gdcm.GetSize() == ours.GetSize()
        assert np.allclose(gdcm.GetSpacing(), ours.GetSpacing())
        assert np.allclose(gdcm.GetOrigin(), ours.GetOrigin())
        assert np.array_equal(sitk.GetArrayViewFromImage(gdcm), sitk.GetArrayViewFromImage(ours))
        structure_set = pydicom.dcmread(small_cohort_dir / row["mask"])
        assert structure_set.Modality == "RTSTRUCT"
        names = {r.ROIName for r in structure_set.StructureSetROISequence}
        assert names == {"GTV-1", "Lung-Left", "Lung-Right"}


def test_same_seed_same_bytes(small_cohort_dir: Path, tmp_path: Path) -> None:
    again = tmp_path / "again"
    generate_cohort(again, small_config(8, seed=7))
    assert _digest(again) == _digest(small_cohort_dir)
    for name in (MANIFEST_FILE, TRUTH_FILE):
        assert (again / name).read_bytes() == (small_cohort_dir / name).read_bytes()


def test_other_seed_other_cohort() -> None:
    first = draw_cohort(small_config(8, seed=1))
    second = draw_cohort(small_config(8, seed=2))
    assert [p.log_hazard for p in first] != [p.log_hazard for p in second]


def test_centers_differ_in_acquisition(small_cohort_dir: Path) -> None:
    manifest = pd.read_csv(small_cohort_dir / MANIFEST_FILE)
    thickness = {}
    for _, row in manifest.iterrows():
        first = sorted((small_cohort_dir / row["image"]).glob("*.dcm"))[0]
        ds = pydicom.dcmread(first, stop_before_pixels=True)
        thickness.setdefault(row["center"], set()).add(float(ds.SliceThickness))
    assert len(thickness) >= 2
    assert all(len(v) == 1 for v in thickness.values())
    assert len({next(iter(v)) for v in thickness.values()}) == len(thickness)


def test_importer_round_trips_the_cohort(small_cohort_dir: Path) -> None:
    result = import_nsclc_radiomics(
        small_cohort_dir / "images", small_cohort_dir / "clinical.csv", center="any"
    )
    assert result.report.empty
    manifest = pd.read_csv(small_cohort_dir / MANIFEST_FILE).set_index("patient_id")
    imported = result.manifest.set_index("patient_id").loc[manifest.index]
    for column in ("image", "mask"):
        assert [Path(p) for p in imported[column]] == [
            small_cohort_dir / p for p in manifest[column]
        ]
    for column in ("time_days", "event", "age"):
        assert np.allclose(imported[column].astype(float), manifest[column].astype(float))
    for column in ("sex", "histology", "t_stage", "n_stage", "m_stage", "overall_stage"):
        assert list(imported[column]) == list(manifest[column])


def test_truth_follows_the_planted_model(small_cohort_dir: Path) -> None:
    truth = pd.read_parquet(small_cohort_dir / TRUTH_FILE)
    manifest = pd.read_csv(small_cohort_dir / MANIFEST_FILE)
    assert list(truth["patient_id"]) == list(manifest["patient_id"])
    observed = np.minimum(truth["event_time_days"], truth["censor_time_days"]).clip(lower=1)
    assert np.allclose(observed.round(), manifest["time_days"])
    assert np.array_equal(
        truth["event_time_days"] <= truth["censor_time_days"], manifest["event"] == 1
    )


def test_default_cohort_oracle_c_index() -> None:
    """The default cohort's survival is drawn without rendering any image: fast to check."""
    patients = draw_cohort(GeneratorConfig())
    time = np.array([p.time_days for p in patients])
    event = np.array([p.event for p in patients])
    eta = np.array([p.log_hazard for p in patients])
    c_index = oracle_c_index(time, event, eta)
    texture = np.array([p.tumour.texture_hu for p in patients])
    halo = np.array([p.tumour.halo_hu for p in patients])
    print(
        f"default synthetic cohort: {len(patients)} patients, {event.sum()} events, "
        f"oracle C-index {c_index:.3f}"
    )
    assert 0.65 < c_index < 0.9
    assert 0.3 < event.mean() < 0.95
    assert np.corrcoef(texture, eta)[0, 1] > 0.3 and np.corrcoef(halo, eta)[0, 1] > 0.3
    assert len({p.center.name for p in patients}) == 3


def test_spatial_signal_cohort_hazard_is_the_grain_alone() -> None:
    patients = draw_cohort(spatial_signal_config(300, seed=4))
    eta = np.array([p.log_hazard for p in patients])
    grain = np.array([p.tumour.grain_mm for p in patients])
    volume = np.array([p.volume_ml for p in patients])
    amplitude = np.array([p.tumour.texture_hu for p in patients])
    assert np.corrcoef(np.log(grain), eta)[0, 1] > 0.999
    assert grain.min() >= 0.7 and grain.max() <= 3.0
    assert abs(spearmanr(volume, eta)[0]) < 0.15 and abs(spearmanr(amplitude, eta)[0]) < 0.15
    time = np.array([p.time_days for p in patients])
    event = np.array([p.event for p in patients])
    assert 0.65 < oracle_c_index(time, event, eta) < 0.9
    # The default draws no grain: its cohort is the one it always was.
    assert {p.tumour.grain_mm for p in draw_cohort(GeneratorConfig(n_patients=5))} == {0.0}


def test_the_spatial_signal_is_in_the_arrangement_not_the_histogram() -> None:
    """The grain shows in the texture's autocorrelation, not in its spread: what a control that
    shuffles the ROI's voxels (keeping their histogram) must destroy."""
    config = spatial_signal_config(12, seed=3)
    config = GeneratorConfig(**{**config.__dict__, "z_extent_mm": 90.0})
    grains, spreads, correlations = [], [], []
    for patient in draw_cohort(config):
        volume, geometry = render_ct(patient, config)
        tumour = patient.tumour
        inside = np.stack(
            [tumour.surface_distance(geometry.centres(k)) < -1.5 for k in range(volume.shape[0])]
        )
        pairs = inside[:, :, :-1] & inside[:, :, 1:]
        left, right = volume[:, :, :-1][pairs], volume[:, :, 1:][pairs]
        grains.append(tumour.grain_mm)
        spreads.append(volume[inside].std() / tumour.texture_hu)
        correlations.append(np.corrcoef(left, right)[0, 1])
    assert spearmanr(grains, correlations)[0] > 0.8
    assert abs(spearmanr(grains, spreads)[0]) < 0.5


def test_oracle_c_index_undefined_cases() -> None:
    assert np.isnan(oracle_c_index(np.array([5.0]), np.array([1]), np.array([0.2])))
    assert np.isnan(oracle_c_index(np.array([5.0, 6.0]), np.array([0, 0]), np.array([0.2, 0.1])))
    # The only event is the latest time: no pair can be compared.
    assert np.isnan(oracle_c_index(np.array([5.0, 6.0]), np.array([0, 1]), np.array([0.2, 0.1])))
    assert oracle_c_index(np.array([5.0, 6.0]), np.array([1, 1]), np.array([0.2, 0.1])) == 1.0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_patients": 0}, "n_patients"),
        ({"matrix": 16}, "matrix"),
        ({"tumour_radius_mm": (5.0, 2.0)}, "tumour_radius_mm"),
        ({"center_weights": (1.0,)}, "center_weights"),
        ({"texture_hu": (60.0, 5.0)}, "texture_hu"),
        ({"texture_grain_mm": (0.0, 2.0)}, "texture_grain_mm"),
    ],
)
def test_invalid_config(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        GeneratorConfig(**kwargs)
