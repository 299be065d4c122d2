"""The evaluate stage: the paper's evaluation tables and headline metrics for every model.

:func:`evaluate_models` takes PCA-fuse's scores (the combined model), select-features' signature
scores and the TNM baseline, and computes Table 3 (C-index), Table 4 (time-dependent AUC),
DeLong's test, calibration, risk groups with hazard ratios and log-rank tests, subgroups and the
number at risk; and beyond the paper (:mod:`lungsurv.stages.accuracy`) the Brier and integrated
Brier scores, the calibration slope and intercepts, and the one-screen headline table. The
figures and the HTML/Markdown reports are drawn from the result by :mod:`lungsurv.reports`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lungsurv.core.layout import HORIZONS_DAYS, SPLIT_COLUMN
from lungsurv.core.tables import write_parquet
from lungsurv.stages.accuracy import (
    accuracy_tables,
    delong_summary,
    headline_metrics,
    headline_table,
)
from lungsurv.stages.evidence import add_evidence
from lungsurv.stages.selection import overall_stage_number
from lungsurv.stages.trust import constant_models, fusion_notes, model_warnings
from lungsurv.survival.fusion import ModelParameters, loadings_frame, survival_at
from lungsurv.survival.metrics import (
    bootstrap_c_index,
    calibration,
    delong_test,
    hazard_ratio,
    logrank,
    percentile_interval,
    status_at,
    time_dependent_auc,
)


def discrimination_table(
    scores: pd.DataFrame, *, n_resamples: int = 1000, seed: int = 0
) -> pd.DataFrame:
    """Harrell's C-index with bootstrap CIs per model (score column) and cohort (the paper's
    Table 3 layout). ``scores``: patient_id, split, time_days, event and one column per model."""

    models = [
        c for c in scores.columns if c not in {"patient_id", SPLIT_COLUMN, "time_days", "event"}
    ]
    rows = []
    for model in models:
        for split in ("train", "test"):
            part = scores[(scores[SPLIT_COLUMN] == split) & scores[model].notna()]
            if part.empty or part[model].nunique() < 2 or not part["event"].any():
                continue
            estimate = bootstrap_c_index(
                time=part["time_days"],
                event=part["event"],
                risk=part[model],
                n_resamples=n_resamples,
                seed=seed,
            )
            rows.append(
                {
                    "model": model,
                    "cohort": split,
                    "c_index": estimate.value,
                    "ci_low": estimate.low,
                    "ci_high": estimate.high,
                    "patients": len(part),
                }
            )
    return pd.DataFrame(
        rows, columns=["model", "cohort", "c_index", "ci_low", "ci_high", "patients"]
    )


MODEL_ID_COLUMNS = frozenset({"patient_id", SPLIT_COLUMN, "time_days", "event"})


def model_columns(scores: pd.DataFrame) -> list[str]:
    """The score columns of a per-model scores table (everything but the id and outcome)."""
    return [c for c in scores.columns if c not in MODEL_ID_COLUMNS]


def auc_table(
    scores: pd.DataFrame,
    horizons: tuple[int, ...] = HORIZONS_DAYS,
    *,
    n_resamples: int = 0,
    seed: int = 0,
) -> pd.DataFrame:
    """Time-dependent AUC per model, cohort and horizon (Table 4 layout), with percentile
    bootstrap CIs over ``n_resamples`` resamples of the cohort's patients (0: no CI).

    Censoring weights come from the training cohort (both for the training and the test AUC).
    """
    train = scores[scores[SPLIT_COLUMN] == "train"]
    rng = np.random.default_rng(seed)
    rows = []
    for split in ("train", "test"):
        part = scores[scores[SPLIT_COLUMN] == split]
        draws = [rng.integers(0, len(part), len(part)) for _ in range(n_resamples)]
        for model in model_columns(scores):
            known = part[part[model].notna()]
            if known.empty:
                continue

            point = _auc(train, known, model, horizons)
            resampled = np.full((len(draws), len(horizons)), np.nan)
            for k, draw in enumerate(draws):
                sample = part.iloc[draw]
                sample = sample[sample[model].notna()]
                if sample["event"].any() and sample[model].nunique() > 1:
                    resampled[k] = _auc(train, sample, model, horizons)["auc"].to_numpy()
            for h, row in enumerate(point.itertuples()):
                low, high = percentile_interval(resampled[:, h])
                rows.append(
                    {
                        "model": model,
                        "cohort": split,
                        "horizon_days": int(row.time),
                        "auc": row.auc,
                        "ci_low": low,
                        "ci_high": high,
                        "cases": row.cases,
                        "patients": len(known),
                    }
                )
    return pd.DataFrame(rows, columns=list(AUC_COLUMNS))


def _auc(
    train: pd.DataFrame, rows: pd.DataFrame, model: str, horizons: tuple[int, ...]
) -> pd.DataFrame:

    return time_dependent_auc(
        train["time_days"], train["event"], rows["time_days"], rows["event"], rows[model], horizons
    )


AUC_COLUMNS = ("model", "cohort", "horizon_days", "auc", "ci_low", "ci_high", "cases", "patients")


def delong_table(
    scores: pd.DataFrame,
    horizons: tuple[int, ...] = HORIZONS_DAYS,
    reference: str = "Combined",
) -> pd.DataFrame:
    """DeLong's test of each model's AUC against ``reference`` at each horizon and cohort.

    Definition: at horizon t a patient is a case if they died by t and a control if they were
    followed beyond t; patients censored before t have no known status and are left out (as are
    patients a model cannot score). The AUCs here are these binary ROC AUCs, not the weighted
    cumulative/dynamic AUCs of :func:`auc_table`.
    """

    rows = []
    for split in ("train", "test"):
        part = scores[scores[SPLIT_COLUMN] == split]
        for horizon in horizons:
            known, died = status_at(part["time_days"], part["event"], horizon)
            for model in model_columns(scores):
                if model == reference:
                    continue
                usable = known & part[model].notna().to_numpy()
                cases = int(died[usable].sum())
                row: dict[str, Any] = {
                    "cohort": split,
                    "horizon_days": horizon,
                    "model": model,
                    "reference": reference,
                    "patients": int(usable.sum()),
                    "cases": cases,
                }
                if 0 < cases < usable.sum():
                    auc, auc_reference, p_value = delong_test(
                        died[usable],
                        part[model].to_numpy()[usable],
                        part[reference].to_numpy()[usable],
                    )
                    row |= {"auc": auc, "auc_reference": auc_reference, "p_value": p_value}
                rows.append(row)
    columns = ["cohort", "horizon_days", "model", "reference", "patients", "cases", "auc"]
    return pd.DataFrame(rows, columns=[*columns, "auc_reference", "p_value"])


def calibration_table(
    scores: pd.DataFrame,
    predicted_survival: Callable[[np.ndarray, float], np.ndarray],
    horizons: tuple[int, ...] = HORIZONS_DAYS,
    *,
    n_groups: int = 4,
    n_resamples: int = 1000,
    seed: int = 0,
) -> pd.DataFrame:
    """Predicted (Cox + Breslow) against Kaplan-Meier observed survival at each horizon, in
    ``n_groups`` quantile groups of predicted survival per cohort, bootstrap CIs (Figure 7)."""

    frames = []
    for split in ("train", "test"):
        part = scores[scores[SPLIT_COLUMN] == split]
        if len(part) < n_groups:
            continue
        for horizon in horizons:
            predicted = predicted_survival(part["risk"].to_numpy(float), float(horizon))
            table = calibration(
                part["time_days"],
                part["event"],
                predicted,
                horizon,
                n_groups=n_groups,
                n_resamples=n_resamples,
                seed=seed,
            )
            table.insert(0, "horizon_days", horizon)
            table.insert(0, "cohort", split)
            frames.append(table)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


#: Smallest subgroup (per cohort) whose risk groups are compared; smaller ones are skipped.
MIN_SUBGROUP_PATIENTS = 10


def subgroups(manifest: pd.DataFrame) -> dict[tuple[str, str], set[str]]:
    """The paper's subgroups (Figures 9-12) as patient-id sets: overall stage I-II vs III,
    adenocarcinoma vs squamous cell carcinoma, male vs female, age < 65 vs >= 65. A variable
    the manifest lacks gives no subgroup; stage IV and other histologies fall in none."""

    ids = manifest["patient_id"].astype(str)
    groups: dict[tuple[str, str], pd.Series] = {}
    if "overall_stage" in manifest.columns:
        stage = overall_stage_number(manifest["overall_stage"])
        groups[("stage", "I-II")] = stage <= 2
        groups[("stage", "III")] = stage.between(3, 4)
    if "histology" in manifest.columns:
        histology = manifest["histology"].astype("string").str.lower()
        groups[("histology", "adenocarcinoma")] = histology.str.contains("adeno", na=False)
        groups[("histology", "squamous")] = histology.str.contains("squamous", na=False)
    if "sex" in manifest.columns:
        sex = manifest["sex"].astype("string").str.lower().str[:1]
        groups[("sex", "male")] = sex == "m"
        groups[("sex", "female")] = sex == "f"
    if "age" in manifest.columns:
        age = pd.to_numeric(manifest["age"], errors="coerce")
        groups[("age", "<65")] = age < 65
        groups[("age", ">=65")] = age >= 65
    return {key: set(ids[mask.fillna(False).to_numpy(bool)]) for key, mask in groups.items()}


RISK_GROUP_COLUMNS = (
    "cohort",
    "subgroup",
    "level",
    "patients",
    "high",
    "low",
    "logrank_p",
    "hr",
    "hr_low",
    "hr_high",
    "note",
)


def risk_group_table(
    scores: pd.DataFrame, cutoff: float, manifest: pd.DataFrame | None = None
) -> pd.DataFrame:
    """High vs low risk (training median cutoff) per cohort, and within each subgroup of
    :func:`subgroups` when ``manifest`` is given: log-rank p and the hazard ratio (high vs low)
    with its 95 % CI (Figures 8-12). A subgroup with fewer than ``MIN_SUBGROUP_PATIENTS``
    patients, no event, or one risk group only is listed with a note and no estimate; so is a
    hazard ratio that cannot be estimated (no death in one risk group)."""

    strata: dict[tuple[str, str], set[str] | None] = {("all", "all"): None}
    if manifest is not None:
        strata |= subgroups(manifest)
    rows = []
    for split in ("train", "test"):
        cohort = scores[scores[SPLIT_COLUMN] == split]
        for (subgroup, level), members in strata.items():
            part = cohort if members is None else cohort[cohort["patient_id"].isin(members)]
            high = (part["risk"] > cutoff).to_numpy()
            row: dict[str, Any] = {
                "cohort": split,
                "subgroup": subgroup,
                "level": level,
                "patients": len(part),
                "high": int(high.sum()),
                "low": int((~high).sum()),
                "note": "",
            }
            if part.empty:
                continue
            if members is not None and len(part) < MIN_SUBGROUP_PATIENTS:
                row["note"] = f"skipped: {len(part)} patients (< {MIN_SUBGROUP_PATIENTS})"
            elif not part["event"].any():
                row["note"] = "skipped: no death"
            elif high.all() or not high.any():
                row["note"] = "skipped: a single risk group"
            else:
                _, p_value = logrank(part["time_days"], part["event"], high)
                hr, _ = hazard_ratio(part["time_days"], part["event"], high.astype(float))
                row |= {"logrank_p": p_value, "hr": hr.value, "hr_low": hr.low, "hr_high": hr.high}
                if not np.isfinite(hr.value):
                    row["note"] = "no hazard ratio: the Cox fit diverges (no death in one group)"
            rows.append(row)
    return pd.DataFrame(rows, columns=list(RISK_GROUP_COLUMNS))


#: The days of the Kaplan-Meier figure's number-at-risk table: every year up to five.
RISK_TABLE_DAYS: tuple[int, ...] = (0, 365, 730, 1095, 1460, 1825)


def number_at_risk(
    scores: pd.DataFrame, cutoff: float, times: tuple[int, ...] = RISK_TABLE_DAYS
) -> pd.DataFrame:
    """Patients still at risk at ``times`` per cohort and risk group (Figure 8's table)."""
    rows = []
    for split in ("train", "test"):
        part = scores[scores[SPLIT_COLUMN] == split]
        for group, members in (("high", part["risk"] > cutoff), ("low", part["risk"] <= cutoff)):
            follow_up = part.loc[members, "time_days"].to_numpy(float)
            for t in times:
                rows.append(
                    {
                        "cohort": split,
                        "risk_group": group,
                        "day": t,
                        "at_risk": int(np.sum(follow_up >= t)),
                    }
                )
    return pd.DataFrame(rows, columns=["cohort", "risk_group", "day", "at_risk"])


@dataclass
class Evaluation:
    """The evaluate stage's output: Parquet-ready tables and headline metrics, plus what the
    report's figures are drawn from (:func:`lungsurv.reports.figures.evaluation_figures`)."""

    tables: dict[str, pd.DataFrame]
    metrics: dict[str, float]
    notes: list[str] = field(default_factory=list)
    #: Every reason not to trust the model (:func:`lungsurv.stages.trust.model_warnings`).
    warnings: list[str] = field(default_factory=list)
    #: One column of scores per model (``Combined``, the signatures, ``TNM``) for every patient.
    per_model: pd.DataFrame = field(default_factory=pd.DataFrame)
    #: PCA-fuse's scores (risk, risk group) of every patient.
    scores: pd.DataFrame = field(default_factory=pd.DataFrame)
    params: ModelParameters | None = None
    horizons: tuple[int, ...] = HORIZONS_DAYS
    subgroups: dict[tuple[str, str], set[str]] = field(default_factory=dict)

    @property
    def models(self) -> list[str]:
        return model_columns(self.per_model)

    @property
    def combined_signatures(self) -> list[str]:
        """The single-block signatures the combined model fuses (``Rad``, ``Rad_6mm``, ``DL``)."""
        models = self.models
        return [s for s in ("Rad", *_ring_signatures(models), "DL") if s in models]


def evaluate_models(
    scores: pd.DataFrame,
    signature_scores: pd.DataFrame,
    params: ModelParameters,
    *,
    manifest: pd.DataFrame | None = None,
    selected: pd.DataFrame | None = None,
    horizons: tuple[int, ...] = HORIZONS_DAYS,
    n_resamples: int = 1000,
    seed: int = 0,
    oracle_c_index: float | None = None,
    training_history: pd.DataFrame | None = None,
    icc: pd.DataFrame | None = None,
    controls: pd.DataFrame | None = None,
    control_margin: float = 0.05,
) -> Evaluation:
    """Every table and figure of the paper's evaluation for the combined model (``scores``
    from PCA-fuse), the signatures and the TNM baseline (``signature_scores`` from
    select-features); ``params`` is the fitted bundle (cutoff, Breslow baseline, loadings);
    ``training_history`` the network's per-epoch losses, for the trust checks; ``icc`` and
    ``controls``: the robustness and negative-controls steps' tables
    (:func:`~lungsurv.stages.evidence.add_evidence`, with ``control_margin``)."""

    per_model = scores[["patient_id", SPLIT_COLUMN, "time_days", "event", "risk"]].rename(
        columns={"risk": "Combined"}
    )
    per_model = per_model.merge(signature_scores.drop(columns=SPLIT_COLUMN), on="patient_id")
    tables = _tables(per_model, scores, params, manifest, horizons, n_resamples, seed)
    if selected is not None:
        tables["selected_features"] = selected
    metrics = headline_metrics(tables, oracle_c_index)
    metrics["pca_components"] = int(np.asarray(params.cox_coef).size)
    warnings = model_warnings(
        per_model=per_model,
        scores=scores,
        params=params,
        models=model_columns(per_model),
        test_c_index=metrics.get("test_combined_c_index"),
        oracle_c_index=oracle_c_index,
        horizons=horizons,
        training_history=training_history,
    )
    notes = add_evidence(
        tables, metrics, warnings, icc=icc, controls=controls, margin=control_margin
    )
    metrics["model_warnings"] = len(warnings)
    return Evaluation(
        tables=tables,
        metrics=metrics,
        warnings=warnings,
        notes=([f"Oracle C-index (test) {oracle_c_index:.3f}"] if oracle_c_index else [])
        + fusion_notes(params)
        + notes,
        per_model=per_model,
        scores=scores,
        params=params,
        horizons=horizons,
        subgroups=subgroups(manifest) if manifest is not None else {},
    )


def _tables(
    per_model: pd.DataFrame,
    scores: pd.DataFrame,
    params: ModelParameters,
    manifest: pd.DataFrame | None,
    horizons: tuple[int, ...],
    n_resamples: int,
    seed: int,
) -> dict[str, pd.DataFrame]:
    cutoff = params.cutoff
    tables = {
        "c_index": discrimination_table(per_model, n_resamples=n_resamples, seed=seed),
        "auc": auc_table(per_model, horizons, n_resamples=n_resamples, seed=seed),
        "delong": delong_table(_comparable(per_model), horizons),
        "calibration": calibration_table(
            scores,
            lambda risk, t: survival_at(risk, [t], params)[:, 0],
            horizons,
            n_resamples=n_resamples,
            seed=seed,
        ),
        "risk_groups": risk_group_table(scores, cutoff, manifest),
        "number_at_risk": number_at_risk(scores, cutoff),
        "loadings": loadings_frame(params).reset_index(names="feature"),
    }
    tables |= accuracy_tables(scores, params, horizons, n_resamples=n_resamples, seed=seed)
    tables["headline"] = headline_table(tables, per_model)
    tables["delong_summary"] = delong_summary(tables["delong"])
    return tables


def _comparable(per_model: pd.DataFrame, reference: str = "Combined") -> pd.DataFrame:
    """The models DeLong's test can compare: a constant (empty) signature is left out, with a
    warning; a constant reference leaves nothing to compare against."""
    constant = constant_models(per_model, model_columns(per_model))
    if reference in constant:
        constant = [m for m in model_columns(per_model) if m != reference]
    return per_model.drop(columns=constant)


def write_tables(evaluation: Evaluation, folder: Path) -> None:
    """Each table as ``folder/<name>.parquet``."""

    folder.mkdir(parents=True, exist_ok=True)
    for name, table in evaluation.tables.items():
        write_parquet(table, folder / f"{name}.parquet")


def _ring_signatures(models: list[str]) -> list[str]:
    return [m for m in models if m.startswith("Rad_")]
