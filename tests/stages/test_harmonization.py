"""Harmonising the centers before select-features and PCA-fuse, and serving with the bundle's
corrections: a scanner shift at the test centers no longer decides the ranking."""

from __future__ import annotations

import warnings
from pathlib import Path

import pandas as pd
import pytest

from lungsurv.cohort.split import split_cohort
from lungsurv.stages.fusion import fit_combined, write_bundle
from lungsurv.stages.harmonization import harmonize_features
from lungsurv.stages.selection import select_features
from lungsurv.survival.bundle import load_bundle
from lungsurv.survival.fusion import feature_blocks, score
from lungsurv.survival.harmonization import harmonize_row
from lungsurv.survival.metrics import c_index
from tests.stages.test_selection import _cohort

#: What each test center's scanner does to every feature: (gain, offset).
SCANNERS = {"PLAGH": (1.8, 2.5), "SDPH": (0.6, -2.0)}


def _scanned(features: pd.DataFrame, manifest: pd.DataFrame) -> pd.DataFrame:
    centers = features["patient_id"].map(manifest.set_index("patient_id")["center"])
    out = features.copy()
    columns = [c for c in out.columns if c.startswith("original_")]
    for center, (gain, offset) in SCANNERS.items():
        rows = centers == center
        out.loc[rows, columns] = out.loc[rows, columns] * gain + offset
    return out


def _test_c_index(features: pd.DataFrame, manifest: pd.DataFrame, harmonize: str) -> float:
    is_train = split_cohort(manifest)
    table, _ = harmonize_features(features, manifest, is_train, method=harmonize)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _, scores = fit_combined(table, manifest, is_train)
    test = scores[scores["split"] == "test"]
    return c_index(time=test["time_days"], event=test["event"].astype(bool), risk=test["risk"])


def test_harmonising_undoes_a_scanner_shift_at_the_test_centers() -> None:
    features, manifest = _cohort()
    clean = _test_c_index(features, manifest, "none")
    shifted = _scanned(features, manifest)
    unharmonised = _test_c_index(shifted, manifest, "none")
    assert unharmonised < clean - 0.04
    # A per-center affine scanner effect is undone exactly: the same model as without it.
    harmonised = _test_c_index(shifted, manifest, "center")
    assert harmonised == pytest.approx(_test_c_index(features, manifest, "center"), abs=1e-12)
    assert harmonised > unharmonised + 0.02
    # Quantile mapping undoes any increasing scanner effect exactly too; with 25 patients per
    # test center its knots are noisier than a mean and SD (0.692 against 0.706 here).
    quantile = _test_c_index(shifted, manifest, "quantile")
    assert quantile == pytest.approx(_test_c_index(features, manifest, "quantile"), abs=1e-12)
    assert quantile > unharmonised


def test_training_rows_are_unchanged_and_none_is_the_identity() -> None:
    features, manifest = _cohort()
    is_train = split_cohort(manifest)
    same, fitted = harmonize_features(features, manifest, is_train, method="none")
    assert same is features and fitted == {}
    table, harmonizers = harmonize_features(
        _scanned(features, manifest), manifest, is_train, method="center"
    )
    train_rows = features["patient_id"].isin(is_train.index[is_train.to_numpy()])
    pd.testing.assert_frame_equal(table[train_rows], features[train_rows])
    assert set(harmonizers) == {"gtv", "ring_3mm", "ring_6mm"}
    assert list(harmonizers["gtv"].slope_.index) == ["MAASTRO", "PLAGH", "SDPH"]
    # Selection on the harmonised table sees the planted features again.
    selection = select_features(table, manifest, is_train)
    assert "original_firstorder_F0" in set(selection.table["feature"])


@pytest.mark.parametrize(
    ("method", "manifest_columns", "message"),
    [("combat", None, "harmonize must be one of"), ("center", ["patient_id"], "'center' column")],
)
def test_bad_settings_are_named(method: str, manifest_columns, message: str) -> None:
    features, manifest = _cohort()
    is_train = split_cohort(manifest)
    if manifest_columns:
        manifest = manifest[manifest_columns]
    with pytest.raises(ValueError, match=message):
        harmonize_features(features, manifest, is_train, method=method)


@pytest.mark.parametrize("method", ["center", "quantile"])
def test_the_bundle_serves_a_test_centers_patient_as_the_pipeline_scored_it(
    tmp_path: Path, method: str
) -> None:
    features, manifest = _cohort()
    shifted = _scanned(features, manifest)
    is_train = split_cohort(manifest)
    table, harmonizers = harmonize_features(shifted, manifest, is_train, method=method)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        selection = select_features(table, manifest, is_train)
        model, scores = fit_combined(table, manifest, is_train, selection=selection)
    geometry = pd.DataFrame(
        {
            "patient_id": manifest["patient_id"],
            "gtv_volume_ml_resampled": 10.0,
            "slice_thickness_mm": 3.0,
        }
    )
    folder = write_bundle(
        model,
        tmp_path / "bundle",
        scores=scores,
        geometry=geometry,
        selection=selection,
        radiomics_params={},
        harmonizers=harmonizers,
    )
    params = load_bundle(folder)
    document = params.metadata["harmonization"]
    assert set(document) == {b.name for b in params.blocks if b.features}
    for patient in ("P110", "P140"):  # a PLAGH and an SDPH patient, as their scanners saw them
        center = manifest.set_index("patient_id").loc[patient, "center"]
        raw = feature_blocks(shifted[shifted["patient_id"] == patient], ["gtv", "ring_6mm"])
        served, reasons = harmonize_row(raw, document, center)
        expected = scores.set_index("patient_id").loc[patient, "risk"]
        assert reasons == [] and score(served, params)["risk"][0] == pytest.approx(
            expected, abs=1e-9
        )
        _, unknown = harmonize_row(raw, document, None)
        assert unknown and "no center was given" in unknown[0]
