"""The negative-controls stage: control features from the pipeline's own code, the recipe fitted
on them as on the real features, and the deployment bar they set."""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr

from lungsurv.cohort.split import split_cohort
from lungsurv.imaging.convert import ConvertSettings
from lungsurv.radiomics.params import load_params
from lungsurv.stages.controls import control_models, extract_controls
from lungsurv.stages.convert import convert_cohort
from lungsurv.stages.radiomics import extract_cohort
from lungsurv.stages.rings import segment_cohort
from lungsurv.stages.trust import control_shortfalls
from lungsurv.synthetic.export import MANIFEST_FILE, generate_cohort
from lungsurv.synthetic.phantom import draw_cohort, spatial_signal_config
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


@pytest.mark.slow
def test_controls_destroy_a_signal_held_by_the_tumours_texture(tmp_path: Path) -> None:
    """On patients whose only signal is their texture's grain, the real GTV's features track the
    grain and neither control's do: the control's recipe has nothing to learn from."""
    config = dataclasses.replace(spatial_signal_config(16, seed=11), z_extent_mm=90.0)
    generate_cohort(tmp_path / "cohort", config)
    grain = pd.Series({p.patient_id: p.tumour.grain_mm for p in draw_cohort(config)})
    manifest = pd.read_csv(tmp_path / "cohort" / MANIFEST_FILE)
    for column in ("image", "mask"):
        manifest[column] = [str(tmp_path / "cohort" / v) for v in manifest[column]]
    convert_cohort(manifest, tmp_path / "volumes", ConvertSettings(write_qa=False))
    segment_cohort(tmp_path / "volumes", tmp_path / "rings", write_qa=False)
    params = load_params(normalize_scale=100.0)
    params["imageType"] = {"Original": {}}
    real, failures = extract_cohort(tmp_path / "volumes", tmp_path / "rings", params)
    tables, control_failures = extract_controls([tmp_path / "volumes"], "ring_6mm", params)
    assert failures.empty and control_failures.empty

    def strongest_tracking(table: pd.DataFrame) -> float:
        """The largest |Spearman rho| between the grain and any GTV texture feature."""
        gtv = table[table["roi"] == "gtv"].set_index("patient_id")
        texture = [c for c in gtv.columns if c.startswith(("original_gl", "original_ngtdm"))]
        return max(abs(spearmanr(grain[gtv.index], gtv[c])[0]) for c in texture)

    assert strongest_tracking(real) > 0.8
    # Chance alone, over ~75 features and 16 patients, reaches about 0.45.
    assert strongest_tracking(tables["shuffled"]) < 0.5
    assert strongest_tracking(tables["moved"]) < 0.5


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
