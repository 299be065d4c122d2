"""The evaluate stage beyond the paper: prediction error, calibration measures, the headline.

* :func:`accuracy_tables`: the combined model's Brier score at each horizon and integrated
  Brier score, beside the null model's, and its calibration slope and intercepts, per cohort,
  with bootstrap intervals (:mod:`lungsurv.survival.accuracy`);
* :func:`headline_table`: one row per model and cohort, the figures a reader looks for first
  (C-index with CI, AUC at each horizon, IBS);
* :func:`headline_metrics`: the KFP metrics of the evaluate step;
* :func:`delong_summary`: DeLong's test condensed to the comparisons that matter, each model
  against the combined model on the test cohort, one row per model.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from lungsurv.core.layout import HORIZONS_DAYS, SPLIT_COLUMN
from lungsurv.survival.accuracy import calibration_measures, prediction_error
from lungsurv.survival.fusion import ModelParameters, survival_at

HEADLINE_COLUMNS = ("model", "cohort", "patients", "events", "c_index", "c_index_95ci")


def accuracy_tables(
    scores: pd.DataFrame,
    params: ModelParameters,
    horizons: tuple[int, ...] = HORIZONS_DAYS,
    *,
    n_resamples: int = 1000,
    seed: int = 0,
) -> dict[str, pd.DataFrame]:
    """``prediction_error`` (Brier, IBS) and ``calibration_measures`` (slope, intercepts) of
    PCA-fuse's ``scores`` per cohort; censoring weights from the training cohort."""
    train = scores[scores[SPLIT_COLUMN] == "train"]
    errors, calibrations = [], []
    for split in ("train", "test"):
        part = scores[scores[SPLIT_COLUMN] == split]
        if len(part) < 2 or not part["event"].any():
            continue
        risk = part["risk"].to_numpy(float)

        def survival(rows: np.ndarray, times: np.ndarray, risk: np.ndarray = risk) -> np.ndarray:
            return survival_at(risk[rows], times, params)

        error = prediction_error(
            train_time=train["time_days"].to_numpy(float),
            train_event=train["event"].to_numpy(bool),
            time=part["time_days"].to_numpy(float),
            event=part["event"].to_numpy(bool),
            survival=survival,
            horizons=horizons,
            n_resamples=n_resamples,
            seed=seed,
        )
        calibration = calibration_measures(
            time=part["time_days"].to_numpy(float),
            event=part["event"].to_numpy(bool),
            risk=risk,
            survival=survival,
            horizons=horizons,
            n_resamples=n_resamples,
            seed=seed,
        )
        errors.append(error.assign(cohort=split))
        calibrations.append(calibration.assign(cohort=split))
    return {
        "prediction_error": _cohort_first(errors),
        "calibration_measures": _cohort_first(calibrations),
    }


def _cohort_first(frames: list[pd.DataFrame]) -> pd.DataFrame:
    if not frames:
        return pd.DataFrame(columns=["cohort", "measure", "horizon_days", "estimate"])
    table = pd.concat(frames, ignore_index=True)
    return table[["cohort", *[c for c in table.columns if c != "cohort"]]]


def _ci(low: float, high: float) -> str:
    return "" if not (np.isfinite(low) and np.isfinite(high)) else f"{low:.3f}-{high:.3f}"


def headline_table(tables: dict[str, pd.DataFrame], per_model: pd.DataFrame) -> pd.DataFrame:
    """One row per model and cohort: patients, events, C-index with its 95 % CI, the AUC at each
    horizon (``auc_1y`` ...) and, for the combined model (the one with survival predictions),
    the integrated Brier score beside the null model's."""
    rows = []
    auc, error = tables["auc"], tables.get("prediction_error", pd.DataFrame())
    for item in tables["c_index"].itertuples():
        part = per_model[per_model[SPLIT_COLUMN] == item.cohort]
        row: dict[str, object] = {
            "model": item.model,
            "cohort": item.cohort,
            "patients": int(part[item.model].notna().sum()),
            "events": int(part.loc[part[item.model].notna(), "event"].sum()),
            "c_index": float(item.c_index),
            "c_index_95ci": _ci(item.ci_low, item.ci_high),
        }
        mine = auc[(auc["model"] == item.model) & (auc["cohort"] == item.cohort)]
        for horizon, value in zip(mine["horizon_days"], mine["auc"], strict=True):
            row[f"auc_{int(horizon) // 365}y"] = float(value)
        if item.model == "Combined" and len(error):
            ibs = error[(error["cohort"] == item.cohort) & (error["measure"] == "ibs")]
            if len(ibs):
                row["ibs"] = float(ibs["estimate"].iloc[0])
                row["ibs_null_model"] = float(ibs["null_model"].iloc[0])
        rows.append(row)
    return pd.DataFrame(rows)


def delong_summary(delong: pd.DataFrame, cohort: str = "test") -> pd.DataFrame:
    """Each model against the reference on ``cohort``: per horizon the AUC difference (model
    minus reference) and DeLong's p, one row per model (the full table stays in Parquet)."""
    part = delong[(delong["cohort"] == cohort) & delong["p_value"].notna()]
    if part.empty:
        return pd.DataFrame(columns=["model", "reference"])
    rows = []
    for (model, reference), group in part.groupby(["model", "reference"], sort=False):
        row: dict[str, object] = {"model": model, "reference": reference}
        for item in group.itertuples():
            year = int(item.horizon_days) // 365
            row[f"auc_difference_{year}y"] = float(item.auc - item.auc_reference)
            row[f"p_{year}y"] = float(item.p_value)
        rows.append(row)
    return pd.DataFrame(rows)


def headline_metrics(
    tables: dict[str, pd.DataFrame], oracle_c_index: float | None
) -> dict[str, float]:
    """The KFP metrics: C-indices, the combined model's test AUCs and hazard ratio, the oracle."""
    metrics: dict[str, float] = {}
    c_table = tables["c_index"]
    for row in c_table[c_table["model"].isin(["Combined", "TNM"])].itertuples():
        metrics[f"{row.cohort}_{row.model.lower()}_c_index"] = round(float(row.c_index), 4)
    auc = tables["auc"]
    for row in auc[(auc["model"] == "Combined") & (auc["cohort"] == "test")].itertuples():
        if np.isfinite(row.auc):
            metrics[f"test_auc_{row.horizon_days // 365}y"] = round(float(row.auc), 4)
    overall = tables["risk_groups"]
    overall = overall[(overall["subgroup"] == "all") & (overall["cohort"] == "test")]
    if len(overall) and np.isfinite(overall["hr"].iloc[0]):
        metrics["test_hazard_ratio"] = round(float(overall["hr"].iloc[0]), 4)
    for name, table, measure in (
        ("test_combined_ibs", "prediction_error", "ibs"),
        ("test_calibration_slope", "calibration_measures", "slope"),
    ):
        rows = tables[table]
        found = rows[(rows["cohort"] == "test") & (rows["measure"] == measure)]["estimate"]
        if len(found) and np.isfinite(found.iloc[0]):
            metrics[name] = round(float(found.iloc[0]), 4)
    if oracle_c_index is not None:
        metrics["test_oracle_c_index"] = round(float(oracle_c_index), 4)
    return metrics
