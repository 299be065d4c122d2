"""The evaluation's tables, figures and its self-contained HTML and Markdown reports."""

from __future__ import annotations

import re
import warnings

import numpy as np
import pandas as pd
import pytest

from lungsurv.reports.figures import evaluation_figures
from lungsurv.reports.html import evaluation_html
from lungsurv.reports.markdown import evaluation_markdown
from lungsurv.stages.evaluation import (
    MIN_SUBGROUP_PATIENTS,
    auc_table,
    delong_table,
    discrimination_table,
    evaluate_models,
    risk_group_table,
    subgroups,
)


def _scores() -> pd.DataFrame:
    rng = np.random.default_rng(6)
    n = 160
    eta = rng.normal(0, 1, n)
    time = rng.exponential(600 * np.exp(-eta)) + 1
    censor = rng.uniform(400, 2500, n)
    return pd.DataFrame(
        {
            "patient_id": [f"P{i}" for i in range(n)],
            "split": np.where(np.arange(n) < 100, "train", "test"),
            "time_days": np.minimum(time, censor),
            "event": (time <= censor).astype(int),
            "risk": eta + rng.normal(0, 0.5, n),
            "Rad": rng.normal(0, 1, n),
        }
    )


def _clinical(scores: pd.DataFrame) -> pd.DataFrame:
    rng = np.random.default_rng(2)
    n = len(scores)
    return pd.DataFrame(
        {
            "patient_id": scores["patient_id"],
            "overall_stage": rng.choice(["I", "II", "IIIa", "IIIb", "IV"], n),
            "histology": rng.choice(["adenocarcinoma", "squamous cell carcinoma", "nos"], n),
            "sex": rng.choice(["male", "female"], n, p=[0.93, 0.07]),
            "age": rng.uniform(45, 85, n),
        }
    )


def test_discrimination_and_auc_with_intervals_are_seeded() -> None:
    scores = _scores()
    c_table = discrimination_table(scores, n_resamples=100)
    assert set(c_table["model"]) == {"risk", "Rad"} and set(c_table["cohort"]) == {"train", "test"}
    assert (c_table["ci_low"] <= c_table["c_index"]).all()
    assert (c_table["c_index"] <= c_table["ci_high"]).all()
    strong = c_table.query("model == 'risk' and cohort == 'test'")["c_index"].iloc[0]
    assert strong > 0.65
    auc = auc_table(scores, (365, 730), n_resamples=60, seed=3)
    assert len(auc) == 2 * 2 * 2 and auc["auc"].between(0, 1).all()
    assert ((auc["ci_low"] <= auc["auc"]) & (auc["auc"] <= auc["ci_high"])).all()
    pd.testing.assert_frame_equal(auc, auc_table(scores, (365, 730), n_resamples=60, seed=3))
    assert not auc.equals(auc_table(scores, (365, 730), n_resamples=60, seed=4))


def test_delong_uses_patients_with_a_known_status() -> None:
    scores = _scores().rename(columns={"risk": "Combined"})
    table = delong_table(scores, (365,))
    test = scores[scores["split"] == "test"]
    known = (test["event"].astype(bool) & (test["time_days"] <= 365)) | (test["time_days"] > 365)
    row = table.query("cohort == 'test'").iloc[0]
    assert row["model"] == "Rad" and row["patients"] == int(known.sum())
    assert row["auc_reference"] > row["auc"] and 0 <= row["p_value"] <= 1


def test_subgroups_are_estimated_or_skipped_with_a_reason() -> None:
    scores = _scores()
    clinical = _clinical(scores)
    groups = subgroups(clinical)
    assert set(groups) == {
        ("stage", "I-II"),
        ("stage", "III"),
        ("histology", "adenocarcinoma"),
        ("histology", "squamous"),
        ("sex", "male"),
        ("sex", "female"),
        ("age", "<65"),
        ("age", ">=65"),
    }
    stage_iv = set(clinical.loc[clinical["overall_stage"] == "IV", "patient_id"])
    assert not stage_iv & (groups[("stage", "I-II")] | groups[("stage", "III")])
    cutoff = float(scores.loc[scores["split"] == "train", "risk"].median())
    table = risk_group_table(scores, cutoff, clinical)
    overall = table[table["subgroup"] == "all"]
    assert list(overall["cohort"]) == ["train", "test"] and (overall["hr"] > 1).all()
    small = table[table["patients"] < MIN_SUBGROUP_PATIENTS]
    assert len(small) and small["note"].str.startswith("skipped").all()
    assert small["hr"].isna().all()
    estimated = table[table["note"] == ""]
    assert (estimated["hr_low"] <= estimated["hr"]).all() and len(estimated) > 8


@pytest.fixture(scope="module")
def evaluation():
    from lungsurv.cohort.split import split_cohort
    from lungsurv.stages.fusion import fit_combined
    from lungsurv.stages.selection import select_features
    from tests.stages.test_selection import _planted_table

    features, manifest, _ = _planted_table(1, n=240, n_train=160, p=40)
    manifest = manifest.merge(_clinical(manifest), on="patient_id")
    is_train = split_cohort(manifest)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        selection = select_features(features, manifest, is_train)
        model, scores = fit_combined(features, manifest, is_train, selection=selection)
        return evaluate_models(
            scores,
            selection.scores,
            model.params_,
            manifest=manifest,
            selected=selection.table,
            n_resamples=40,
            oracle_c_index=0.7,
        )


def test_the_evaluation_covers_the_papers_tables_and_figures(evaluation) -> None:
    assert set(evaluation.tables) == {
        "c_index",
        "auc",
        "delong",
        "calibration",
        "risk_groups",
        "number_at_risk",
        "loadings",
        "selected_features",
        "prediction_error",
        "calibration_measures",
        "headline",
        "delong_summary",
    }
    models = set(evaluation.tables["c_index"]["model"])
    assert {"Combined", "Rad", "Rad_6mm", "Rad+Rad_9mm", "TNM"} <= models
    assert set(evaluation.tables["delong"]["reference"]) == {"Combined"}
    calibration = evaluation.tables["calibration"]
    assert set(calibration["horizon_days"]) == {365, 730, 1095}
    assert calibration["predicted"].between(0, 1).all()
    figures = evaluation_figures(evaluation)
    for png in figures.values():
        assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert set(figures) == {
        "roc",
        "calibration",
        "kaplan_meier",
        "subgroups",
        "coefficients",
        "loadings",
    }
    assert evaluation.metrics["test_oracle_c_index"] == 0.7
    assert 0.5 < evaluation.metrics["test_combined_c_index"] <= 1
    assert 0 < evaluation.metrics["test_combined_ibs"] < 0.25
    assert evaluation.metrics["test_calibration_slope"] > 0


def test_prediction_error_calibration_and_the_headline_table(evaluation) -> None:
    error = evaluation.tables["prediction_error"]
    assert set(error["cohort"]) == {"train", "test"}
    for cohort in ("train", "test"):
        rows = error[error["cohort"] == cohort]
        assert list(rows["measure"]) == ["brier", "brier", "brier", "ibs"]
        # The planted signal is strong: the model predicts better than the Kaplan-Meier curve.
        assert rows["estimate"].iloc[-1] < rows["null_model"].iloc[-1]
    calibration = evaluation.tables["calibration_measures"]
    test = calibration[calibration["cohort"] == "test"]
    assert list(test["measure"]) == ["slope", "intercept", "intercept", "intercept"]
    assert (test["low"] <= test["estimate"]).all() and (test["estimate"] <= test["high"]).all()
    headline = evaluation.tables["headline"]
    combined = headline[(headline["model"] == "Combined") & (headline["cohort"] == "test")]
    assert len(combined) == 1 and combined["c_index_95ci"].str.match(r"0\.\d{3}-0\.\d{3}").all()
    assert {"auc_1y", "auc_2y", "auc_3y", "ibs", "ibs_null_model"} <= set(headline.columns)
    assert headline.loc[headline["model"] != "Combined", "ibs"].isna().all()
    summary = evaluation.tables["delong_summary"]
    assert "Combined" not in set(summary["model"]) and summary["model"].is_unique
    assert {"auc_difference_1y", "p_1y", "p_3y"} <= set(summary.columns)


def test_html_and_markdown_reports(evaluation) -> None:
    html = evaluation_html(evaluation)
    assert html.count("data:image/png;base64,") == len(evaluation_figures(evaluation))
    for heading in ("Table 3", "Table 4", "DeLong", "Figure 7", "Figures 8-12", "Figure 3"):
        assert heading in html
    for heading in ("Headline", "Brier score", "Calibration slope"):
        assert heading in html
    # The warnings come first, then the headline table, before any other table.
    assert html.index("id='warnings'") < html.index("Headline") < html.index("Table 3")
    text = re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", html)  # base64 may hold "http"
    assert "http" not in text.lower().replace("http-equiv", "")  # nothing fetched online
    markdown = evaluation_markdown(evaluation)
    assert "| Combined | test |" in markdown and "Headline" in markdown and "slope" in markdown


def test_a_stacked_model_says_what_it_is_in_the_report(evaluation) -> None:
    from dataclasses import replace

    from lungsurv.stages.trust import fusion_notes

    assert evaluation.params.metadata["fusion"] == "pca" and not fusion_notes(evaluation.params)
    metadata = {"fusion": "stacked", "stacking_c_index": {"gtv": 0.654, "dl": 0.613}}
    stacked = replace(evaluation.params, metadata=metadata)
    (note,) = fusion_notes(stacked)
    assert "out-of-fold" in note and "gtv 0.654, dl 0.613" in note
    html = evaluation_html(replace(evaluation, params=stacked, notes=[note]))
    assert "signature (stacked fusion)" in html and "PCA loadings" not in html
    assert "gtv 0.654" in evaluation_markdown(replace(evaluation, notes=[note]))


def test_a_model_that_fuses_the_stage_says_so_in_the_report(evaluation) -> None:
    from dataclasses import replace

    from lungsurv.stages.trust import fusion_notes
    from lungsurv.survival.fusion import BlockParameters

    stage = BlockParameters("clinical", ["overall_stage"], np.ones(1), np.ones(1), np.ones(1))
    staged = replace(evaluation.params, blocks=[*evaluation.params.blocks, stage])
    (note,) = fusion_notes(staged)
    assert "overall stage" in note and "imaging only" in note
    stacked = replace(staged, metadata={"fusion": "stacked", "stacking_c_index": {"gtv": 0.6}})
    assert [n.split(":")[0] for n in fusion_notes(stacked)] == ["Combined model"] * 2


def test_the_robustness_filter_is_reported_per_image_type_and_class() -> None:
    from lungsurv.radiomics.robustness import icc_summary
    from lungsurv.stages.evidence import robustness_notes

    icc = pd.DataFrame(
        {
            "roi": ["gtv"] * 4 + ["ring_6mm"] * 2,
            "feature": [
                "original_shape_VoxelVolume",
                "original_glcm_Contrast",
                "wavelet-LLH_glcm_Contrast",
                "log-sigma-1-0-mm-3D_firstorder_Mean",
                "original_glcm_Contrast",
                "wavelet-HHH_glcm_Idm",
            ],
            "icc": [0.98, 0.80, 0.40, 0.70, 0.90, np.nan],
            "patients": 30,
            "versions": 5,
        }
    )
    icc["kept"] = icc["icc"].fillna(-1) >= 0.75
    summary = icc_summary(icc).set_index(["roi", "image_type", "feature_class"])
    assert summary.loc[("gtv", "wavelet", "glcm"), "kept"] == 0.0
    assert summary.loc[("gtv", "log", "firstorder"), "icc_median"] == 0.70
    assert summary.loc[("gtv", "original", "glcm"), "features"] == 1
    (note,) = robustness_notes(icc)
    assert "5 versions" in note and "30 training patients" in note
    assert "gtv 2 of 4, ring_6mm 1 of 2" in note
    assert robustness_notes(None) == [] and robustness_notes(icc.iloc[:0]) == []


def test_degenerate_scores_give_empty_tables_with_columns() -> None:
    scores = _scores().assign(risk=0.0, Rad=0.0)
    assert list(discrimination_table(scores, n_resamples=10).columns)[:3] == [
        "model",
        "cohort",
        "c_index",
    ]
    groups = risk_group_table(scores, 0.0)
    assert (groups["note"] == "skipped: a single risk group").all()
