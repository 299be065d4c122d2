"""Train/test split and the combined fit: the test cohort never influences a fitted quantity."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lungsurv.fusion import save_bundle
from lungsurv.modeling import fit_combined, split_cohort


def _cohort(seed: int = 5) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    n, p = 150, 30
    ids = [f"P{i:03d}" for i in range(n)]
    centers = np.where(np.arange(n) < 100, "MAASTRO", np.where(np.arange(n) < 125, "PLAGH", "SDPH"))
    rows = []
    values = {roi: rng.standard_normal((n, p)) for roi in ("gtv", "ring_3mm", "ring_6mm")}
    eta = 0.7 * values["gtv"][:, 0] - 0.6 * values["ring_6mm"][:, 1]
    for roi, matrix in values.items():
        frame = pd.DataFrame(matrix, columns=[f"original_firstorder_F{j}" for j in range(p)])
        frame.insert(0, "n_voxels", 100)
        frame.insert(0, "roi", roi)
        frame.insert(0, "patient_id", ids)
        rows.append(frame)
    time = rng.exponential(np.exp(-eta)) * 500 + 1
    censor = rng.uniform(100, 2000, n)
    manifest = pd.DataFrame(
        {
            "patient_id": ids,
            "center": centers,
            "time_days": np.round(np.minimum(time, censor)),
            "event": (time <= censor).astype(int),
        }
    )
    return pd.concat(rows, ignore_index=True), manifest


def _bundle_text(model, tmp_path: Path, name: str) -> str:
    return (save_bundle(model.params_, tmp_path / name) / "model.json").read_text()


def test_split_by_center_column_or_fraction() -> None:
    _, manifest = _cohort()
    by_center = split_cohort(manifest)
    assert by_center.sum() == 100 and set(manifest.loc[~by_center.to_numpy(), "center"]) == {
        "PLAGH",
        "SDPH",
    }
    manifest["x_split"] = np.where(np.arange(150) % 3 == 0, "test", "train")
    assert split_cohort(manifest, split_column="x_split").sum() == 100
    fraction = split_cohort(manifest, test_fraction=0.3, seed=1)
    assert (~fraction).sum() == 45
    assert fraction.equals(split_cohort(manifest, test_fraction=0.3, seed=1))
    with pytest.raises(ValueError, match="'NOWHERE'"):
        split_cohort(manifest, train_centers=["NOWHERE"])
    with pytest.raises(ValueError, match="both must be non-empty"):
        split_cohort(manifest, train_centers=["MAASTRO", "PLAGH", "SDPH"])


def test_test_cohort_never_influences_the_fit(tmp_path: Path) -> None:
    features, manifest = _cohort()
    is_train = split_cohort(manifest)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model, scores = fit_combined(features, manifest, is_train)
    reference = _bundle_text(model, tmp_path, "a")
    # Perturb every test patient's features, times and events, and shuffle the row order.
    test_ids = set(is_train.index[~is_train.to_numpy()])
    rng = np.random.default_rng(99)
    perturbed = features.copy()
    mask = perturbed["patient_id"].isin(test_ids)
    columns = [c for c in perturbed.columns if c.startswith("original_")]
    perturbed.loc[mask, columns] = rng.normal(5, 3, (int(mask.sum()), len(columns)))
    perturbed = perturbed.sample(frac=1.0, random_state=1)
    outcomes = manifest.copy()
    test_rows = outcomes["patient_id"].isin(test_ids)
    outcomes.loc[test_rows, "time_days"] = rng.permutation(outcomes.loc[test_rows, "time_days"])
    outcomes.loc[test_rows, "event"] = 1 - outcomes.loc[test_rows, "event"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        again, _ = fit_combined(perturbed, outcomes, is_train)
    assert _bundle_text(again, tmp_path, "b") == reference
    assert set(scores["split"]) == {"train", "test"}
    assert scores.loc[scores["split"] == "train", "risk"].median() == pytest.approx(model.cutoff_)
    assert {"signature_gtv", "signature_ring_6mm"} <= set(scores.columns)


def test_patients_missing_a_block_are_left_out_and_named() -> None:
    features, manifest = _cohort()
    features = features[~((features["patient_id"] == "P007") & (features["roi"] == "ring_6mm"))]
    with pytest.warns(UserWarning, match="P007"):
        _, scores = fit_combined(features, manifest, split_cohort(manifest))
    assert "P007" not in set(scores["patient_id"]) and len(scores) == 149


def test_the_papers_signatures_and_the_ring_choice() -> None:
    from lungsurv.modeling import choose_ring, fit_signatures

    features, manifest = _cohort()
    is_train = split_cohort(manifest)
    rings = ("ring_3mm", "ring_6mm")
    fitted, table = fit_signatures(features, manifest, is_train, rings=rings)
    assert list(fitted) == ["Rad", "Rad_3mm", "Rad_6mm", "Rad+Rad_3mm", "Rad+Rad_6mm"]
    assert {"Rad", "Rad+Rad_6mm"} <= set(table.columns) and len(table) == 150
    # The planted ring signal lives in ring_6mm feature 1; the 3 mm ring is noise.
    assert "ring_6mm:original_firstorder_F1" in fitted["Rad_6mm"].selected_features_
    assert choose_ring(table, manifest, list(rings)) == "ring_6mm"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model, _ = fit_combined(features, manifest, is_train, ring="auto")
    assert model.params_.metadata == {"ring": "ring_6mm", "ring_chosen_automatically": True}


def test_ring_rois_are_ordered_by_distance() -> None:
    from lungsurv.modeling import ring_rois

    table = pd.DataFrame({"roi": ["gtv", "ring_12mm", "ring_3mm", "ring_6mm", "ring_3mm"]})
    assert ring_rois(table) == ["ring_3mm", "ring_6mm", "ring_12mm"]
