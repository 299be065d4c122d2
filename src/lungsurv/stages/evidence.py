"""What the evaluation reports beyond the paper's tables: the robustness filter's ICCs and the
negative controls, as tables, metrics, notes and warnings of the report."""

from __future__ import annotations

from typing import Any

import pandas as pd

from lungsurv.radiomics.robustness import icc_summary
from lungsurv.stages.trust import control_shortfalls


def add_evidence(
    tables: dict[str, pd.DataFrame],
    metrics: dict[str, Any],
    warnings: list[str],
    *,
    icc: pd.DataFrame | None,
    controls: pd.DataFrame | None,
    margin: float,
) -> list[str]:
    """Add the robustness summary and the negative controls to the evaluation's ``tables``,
    ``metrics`` and ``warnings`` (a control the combined model does not beat by ``margin``);
    return the report's notes on them."""
    if controls is not None and len(controls):
        tables["negative_controls"] = controls
        shortfalls = control_shortfalls(controls, metrics.get("test_combined_c_index"), margin)
        warnings += shortfalls
        metrics["control_shortfalls"] = len(shortfalls)
        for row in controls[controls["cohort"] == "test"].itertuples():
            metrics[f"test_{row.control}_control_c_index"] = round(float(row.c_index), 4)
    if icc is not None and len(icc):
        tables["robustness"] = icc_summary(icc)
        if "kept" in icc.columns:
            metrics["robust_feature_share"] = round(float(icc["kept"].mean()), 4)
    return robustness_notes(icc)


def robustness_notes(icc: pd.DataFrame | None) -> list[str]:
    """One sentence on the robustness filter, when it ran: patients, versions, features kept."""
    if icc is None or icc.empty or "kept" not in icc.columns:
        return []
    kept = icc.groupby("roi")["kept"].agg(["sum", "size"])
    per_roi = ", ".join(f"{roi} {int(r['sum'])} of {int(r['size'])}" for roi, r in kept.iterrows())
    return [
        f"Robustness: every radiomics feature's ICC(1,1) over {int(icc['versions'].max())} "
        f"versions (the original and its perturbations) of {int(icc['patients'].max())} training "
        f"patients; the features kept for selection: {per_roi}."
    ]
