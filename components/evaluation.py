"""The evaluate component: the paper's tables and figures as a report for the KFP UI."""

# No `from __future__ import annotations`: KFP reads the real annotation objects.
from kfp import dsl
from kfp.dsl import HTML, Dataset, Input, Metrics, Model, Output

from components.images import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE)
def evaluate(
    cohort_uri: str,
    bundle: Input[Model],
    scores: Input[Dataset],
    signature_scores: Input[Dataset],
    n_bootstrap: int,
    seed: int,
    tables: Output[Dataset],
    report: Output[HTML],
    metrics: Output[Metrics],
):
    """C-index with bootstrap CIs, time-dependent AUC, risk groups; HTML report and metrics."""
    import json
    from pathlib import Path

    import pandas as pd

    from lungsurv import reporting

    cutoff = json.loads((Path(bundle.path) / "model.json").read_text())["cutoff"]
    combined = pd.read_parquet(scores.path)
    per_model = combined[["patient_id", "split", "time_days", "event", "risk"]].rename(
        columns={"risk": "Combined"}
    )
    signatures = pd.read_parquet(signature_scores.path).drop(columns="split")
    per_model = per_model.merge(signatures, on="patient_id")
    results = {
        "c_index": reporting.discrimination_table(per_model, n_resamples=n_bootstrap, seed=seed),
        "auc": reporting.auc_table(per_model),
        "risk_groups": reporting.risk_group_table(combined, cutoff),
    }
    Path(tables.path).mkdir(parents=True, exist_ok=True)
    for name, table in results.items():
        table.to_parquet(Path(tables.path) / f"{name}.parquet", index=False)
    oracle = reporting.oracle_c_index_for(cohort_uri, combined)
    png = reporting.kaplan_meier_png(combined, cutoff)
    with open(report.path, "w") as handle:
        handle.write(reporting.evaluation_html(*results.values(), png, oracle_c_index=oracle))
    for row in results["c_index"][results["c_index"]["model"] == "Combined"].itertuples():
        metrics.log_metric(f"{row.cohort}_c_index", round(float(row.c_index), 4))
    if oracle is not None:
        metrics.log_metric("test_oracle_c_index", round(float(oracle), 4))
