"""The negative-controls stage: control features from the pipeline's own code, the recipe fitted
on them as on the real features, and the deployment bar they set."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from lungsurv.cohort.split import split_cohort
from lungsurv.stages.controls import control_models, extract_controls
from lungsurv.stages.trust import control_shortfalls
from tests.stages.test_selection import _planted_table


@pytest.mark.slow
def test_control_features_come_from_the_pipelines_code(converted) -> None:
    root, _, params, real = converted
    tables, failures = extract_controls([root / "volumes"], "ring_6mm", params, seed=1)
    assert failures.empty and set(tables) == {"shuffled", "moved"}
    for kind, table in tables.items():
        assert len(table) == 5 * 2 and set(table["roi"]) == {"gtv", "ring_6mm"}
        # What a control leaves as it was is no control: left out.
        assert not any(c.startswith("original_shape_") for c in table.columns)
        assert any(c.startswith("original_firstorder_") for c in table.columns) == (kind == "moved")
        merged = table.merge(real, on=["patient_id", "roi"], suffixes=("", "_real"))
        contrast = merged["original_glcm_Contrast"] - merged["original_glcm_Contrast_real"]
        assert (contrast.abs() > 1e-6).all(), kind  # texture the real ROI did not have
    # Seeded: the same seed gives the same controls.
    again, _ = extract_controls([root / "volumes"], "ring_6mm", params, seed=1)
    pd.testing.assert_frame_equal(again["shuffled"], tables["shuffled"])


def test_the_recipe_on_a_control_without_signal_is_near_chance() -> None:
    features, manifest, _ = _planted_table(3, n=300, n_train=200, p=30)
    features = features[features["roi"].isin(["gtv", "ring_6mm"])]
    is_train = split_cohort(manifest)
    rng = np.random.default_rng(0)
    # Every feature column permuted across patients: the control holds no patient's signal.
    scrambled = features.copy()
    columns = [c for c in features.columns if c.startswith("original_")]
    for roi in ("gtv", "ring_6mm"):
        rows = scrambled["roi"] == roi
        scrambled.loc[rows, columns] = rng.permutation(scrambled.loc[rows, columns].to_numpy())
    settings = {"alpha": 0.05, "n_folds": 5, "cv_scoring": "deviance", "cv_rule": "min"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = control_models(
            {"real": features, "scrambled": scrambled}, manifest, is_train,
            ring="ring_6mm", settings=settings,
        )  # fmt: skip
    test = table[table["cohort"] == "test"].set_index("control")["c_index"]
    assert list(table.columns) == ["control", "cohort", "c_index", "patients", "features"]
    assert test["real"] > 0.65 and abs(test["scrambled"] - 0.5) < 0.08
    assert control_shortfalls(table.query("control == 'scrambled'"), test["real"], 0.05) == []
    (reason,) = control_shortfalls(table.query("control == 'real'"), test["real"], 0.05)
    assert "does not beat the real negative control" in reason


def test_no_controls_means_no_bar() -> None:
    assert control_shortfalls(pd.DataFrame(), 0.7, 0.05) == []
    table = pd.DataFrame({"control": ["moved"], "cohort": ["test"], "c_index": [0.52]})
    assert "no test C-index" in control_shortfalls(table, None, 0.05)[0]
