"""The evaluation report's tables and its self-contained HTML."""

from __future__ import annotations

import numpy as np
import pandas as pd

from lungsurv.reporting import (
    auc_table,
    discrimination_table,
    evaluation_html,
    kaplan_meier_png,
    risk_group_table,
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


def test_tables_and_report() -> None:
    scores = _scores()
    c_table = discrimination_table(scores, n_resamples=100)
    assert set(c_table["model"]) == {"risk", "Rad"} and set(c_table["cohort"]) == {"train", "test"}
    assert (c_table["ci_low"] <= c_table["c_index"]).all()
    assert (c_table["c_index"] <= c_table["ci_high"]).all()
    strong = c_table[(c_table["model"] == "risk") & (c_table["cohort"] == "test")]["c_index"].iloc[
        0
    ]
    assert strong > 0.65
    auc = auc_table(scores, (365, 730))
    assert len(auc) == 4 and auc["auc"].between(0, 1).all()
    cutoff = float(scores.loc[scores["split"] == "train", "risk"].median())
    groups = risk_group_table(scores, cutoff)
    assert list(groups["cohort"]) == ["train", "test"] and (groups["hr"] > 1).all()
    png = kaplan_meier_png(scores, cutoff)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    html = evaluation_html(c_table, auc, groups, png, oracle_c_index=0.71)
    assert "Oracle C-index of the synthetic cohort's true log-hazard: 0.710" in html
    assert html.count("<table") == 3 and "data:image/png;base64," in html


def test_degenerate_scores_give_empty_tables_with_columns() -> None:
    scores = _scores().assign(risk=0.0, Rad=0.0)
    assert list(discrimination_table(scores, n_resamples=10).columns)[:3] == [
        "model",
        "cohort",
        "c_index",
    ]
    assert risk_group_table(scores, 0.0).empty
