"""The evaluate stage's trust checks: each failure of a model is named, with its numbers."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from lungsurv.stages.trust import model_warnings
from lungsurv.survival.fusion import BlockParameters, ModelParameters


def _params(features: list[str]) -> ModelParameters:
    block = BlockParameters(
        name="gtv",
        features=features,
        mean=np.zeros(len(features)),
        scale=np.ones(len(features)),
        signature_coef=np.ones(len(features)),
    )
    k = len(features)
    return ModelParameters(
        blocks=[block],
        pca_mean=np.zeros(k),
        pca_components=np.eye(k),
        explained_variance_ratio=np.full(k, 1 / max(k, 1)),
        cox_coef=np.ones(k),
        baseline_times=np.array([100.0, 400.0, 800.0, 1200.0]),
        baseline_survival=np.array([0.95, 0.8, 0.6, 0.45]),
        cutoff=0.0,
    )


def _cohort(change: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(1)
    n = 100
    split = np.where(np.arange(n) < 60, "train", "test")
    risk = rng.uniform(-1.5, 1.5, n)
    risk[:2] = [-2.0, 2.0]  # the training range spans every test risk
    if change == "outside":
        risk[60:63] = -3.0
    if change == "uneven":
        risk[60:] = np.abs(risk[60:]) + 0.01
    if change == "tiny":
        risk[2] = 40.0
    frame = pd.DataFrame(
        {
            "patient_id": [f"P{i}" for i in range(n)],
            "split": split,
            "time_days": rng.uniform(50, 2000, n),
            "event": rng.integers(0, 2, n),
            "risk": risk,
            "Rad": 0.0 if change == "constant" else rng.normal(0, 1, n),
        }
    )
    frame["risk_group"] = np.where(frame["risk"] > 0, "high", "low")
    per_model = frame.rename(columns={"risk": "Combined"}).drop(columns="risk_group")
    return per_model, frame


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ("null", "the combined model selected no feature: it is the null model"),
        ("constant", "the Rad signature is constant (no feature selected)"),
        ("oracle", "below the oracle's 0.900"),
        ("uneven", "risk groups split 100/0 (high/low) on the test cohort"),
        ("outside", "3 of 40 test patients have risks outside the training range"),
        ("tiny", "1 patient(s) have a predicted 3-year survival below 1e-06"),
    ],
)
def test_each_failure_is_named(change: str, expected: str) -> None:
    per_model, scores = _cohort(change)
    params = _params([] if change == "null" else ["f0"])
    found = model_warnings(
        per_model=per_model,
        scores=scores,
        params=params,
        models=["Combined", "Rad"],
        test_c_index=0.55,
        oracle_c_index=0.9 if change == "oracle" else 0.6,
    )
    assert any(expected in w for w in found), found
    assert len(found) == 1, found


def test_a_sound_model_gets_no_warning() -> None:
    per_model, scores = _cohort("")
    found = model_warnings(
        per_model=per_model,
        scores=scores,
        params=_params(["f0"]),
        models=["Combined", "Rad"],
        test_c_index=0.6,
        oracle_c_index=0.62,
    )
    assert found == []


def test_the_report_and_summary_open_with_the_warnings() -> None:
    from lungsurv.reports.html import evaluation_html
    from lungsurv.reports.markdown import evaluation_markdown
    from lungsurv.stages.evaluation import evaluate_models

    per_model, scores = _cohort("constant")
    signatures = per_model[["patient_id", "split", "Rad"]]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        evaluation = evaluate_models(scores, signatures, _params([]), n_resamples=20)
    assert evaluation.metrics["model_warnings"] == len(evaluation.warnings) == 2
    assert "Rad" not in set(evaluation.tables["delong"].get("model", []))
    page = evaluation_html(evaluation)
    assert page.index("id='warnings'") < page.index("<table")
    assert "null model" in page and "Warnings (2)" in page
    summary = evaluation_markdown(evaluation)
    assert summary.index("## Warnings (2)") < summary.index("## Headline")


def test_a_constant_combined_model_leaves_nothing_to_compare() -> None:
    from lungsurv.stages.evaluation import evaluate_models

    per_model, scores = _cohort("")
    scores["risk"] = 0.0
    signatures = per_model[["patient_id", "split", "Rad"]]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        evaluation = evaluate_models(scores, signatures, _params([]), n_resamples=20)
    assert evaluation.tables["delong"].empty
    assert any("Combined signature is constant" in w for w in evaluation.warnings)


def _history(validation_loss: list[float], validation_c_index: list[float]) -> pd.DataFrame:
    epochs = len(validation_loss)
    return pd.DataFrame(
        {
            "epoch": np.arange(1, epochs + 1),
            "train_loss": np.linspace(2.0, 1.5, epochs),
            "validation_loss": validation_loss,
            "validation_c_index": validation_c_index,
        }
    )


@pytest.mark.parametrize(
    ("loss", "c_index", "expected"),
    [
        ([2.0, 2.1, 2.2, 2.05], [0.62, 0.6, 0.58, 0.6], ["did not improve"]),
        ([2.0, 1.9, 1.95, 2.0], [0.55, 0.48, 0.5, 0.52], ["no better than chance"]),
        ([2.0, 1.9, 1.8, 1.85], [0.55, 0.6, 0.66, 0.64], []),
    ],
)
def test_a_network_that_did_not_learn_is_named(
    loss: list[float], c_index: list[float], expected: list[str]
) -> None:
    from lungsurv.stages.trust import training_warnings

    found = training_warnings(_history(loss, c_index))
    assert len(found) == len(expected)
    for sentence, words in zip(found, expected, strict=True):
        assert words in sentence and "3D SE-ResNet" in sentence
    assert training_warnings(_history([], [])) == [
        "the 3D SE-ResNet has no training history: it was never trained"
    ]
