"""Self-contained HTML pages for the KFP UI: the evaluation report and the training curves.

Figures are embedded as data URIs, so a page reads offline and needs nothing from the internet.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd

from lungsurv.reports.figures import evaluation_figures, training_curves_png
from lungsurv.stages.evaluation import Evaluation

if TYPE_CHECKING:  # torch is not in the CPU image, which renders the evaluation report
    from lungsurv.stages.training import CohortTraining

_SECTIONS: tuple[tuple[str, str, str | None], ...] = (
    ("c_index", "Table 3. Harrell's C-index (95 % bootstrap CI)", None),
    ("auc", "Table 4. Time-dependent AUC at 1, 2 and 3 years (95 % bootstrap CI)", "roc"),
    (
        "delong_summary",
        "DeLong's test on the test cohort: each model's AUC minus the combined model's, and p "
        "(every cohort and horizon: delong.parquet)",
        None,
    ),
    (
        "prediction_error",
        "Brier score at 1, 2 and 3 years and integrated Brier score (95 % bootstrap CI), beside "
        "the null model's (the training Kaplan-Meier curve for everyone); lower is better",
        None,
    ),
    (
        "calibration_measures",
        "Calibration slope (1 is ideal; below 1: risks spread too widely) and intercept "
        "(log observed / expected deaths by the horizon; 0 is ideal), 95 % bootstrap CI",
        None,
    ),
    ("calibration", "Figure 7. Calibration: predicted vs Kaplan-Meier observed", "calibration"),
    ("risk_groups", "Figures 8-12. Risk groups at the training median", "kaplan_meier"),
    ("number_at_risk", "Number at risk", "subgroups"),
    ("selected_features", "Figure 3. Selected features and coefficients", "coefficients"),
    ("loadings", "Figure 5. PCA loadings", "loadings"),
    (
        "negative_controls",
        "Negative controls: the radiomics recipe on the CT's values shuffled within the ROIs "
        "(keeps each ROI's histogram and size) and on the ROI moved elsewhere (keeps its size "
        "and the patient's scan); C-index per cohort",
        None,
    ),
    (
        "robustness",
        "Feature robustness: ICC(1,1) over perturbed training patients per ROI, image type and "
        "feature class (quartiles; kept: the share at or above the threshold)",
        None,
    ),
)


_DEFINITIONS = """<p>Definitions. C-index: Harrell's, per cohort, CIs from patient resampling.
Time-dependent AUC: scikit-survival's cumulative/dynamic AUC (cases died by t, controls alive
after t) with censoring weights from the training cohort. ROC curves and DeLong's test: at
horizon t a case died by t, a control was followed beyond t; patients censored before t are left
out. Risk groups: high if the combined risk exceeds the training median; hazard ratio high vs low
(Cox, Wald 95 % CI); log-rank p; + marks a censored patient. Brier score: scikit-survival's, with
censoring weights from the training cohort; IBS integrates it up to 3 years. Calibration slope:
the Cox coefficient of the combined risk refitted on the cohort; intercept: log of observed over
expected deaths by the horizon (Crowson et al. 2016). TNM: a Cox model on the ordinal overall
stage, fitted on the training cohort.</p>"""


def evaluation_html(evaluation: Evaluation, *, title: str = "lungsurv evaluation") -> str:
    """A self-contained HTML report (figures embedded as data URIs, readable offline), one
    section per paper table or figure."""
    import base64
    import html

    style = (
        "body{font-family:sans-serif;max-width:1100px;margin:2em auto}"
        "table{border-collapse:collapse;font-size:12px}td,th{border:1px solid #ccc;padding:2px 6px}"
        "img{max-width:100%}"
    )
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{style}</style></head><body><h1>Overall-survival model: evaluation</h1>",
        _warnings_html(evaluation.warnings),
        "<h2>Headline</h2>",
        _frame_html(evaluation.tables["headline"]) if "headline" in evaluation.tables else "",
        "".join(f"<p>{html.escape(n)}</p>" for n in evaluation.notes),
        _DEFINITIONS,
    ]
    figures = evaluation_figures(evaluation)
    fusion = evaluation.params.metadata.get("fusion", "pca") if evaluation.params else "pca"
    for key, heading, figure in _SECTIONS:
        if key == "loadings" and fusion != "pca":  # the axes are the blocks' signatures
            heading = f"The combined model's covariates: each block's signature ({fusion} fusion)"
        table = evaluation.tables.get(key)
        if table is None and figure not in figures:
            continue
        parts.append(f"<h2>{html.escape(heading)}</h2>")
        if figure in figures:
            data = base64.b64encode(figures[figure]).decode()
            parts.append(f"<img alt='{figure}' src='data:image/png;base64,{data}'>")
        if table is not None:
            parts.append(_frame_html(table))
    metrics = "".join(f"<li>{html.escape(k)}: {v}</li>" for k, v in evaluation.metrics.items())
    parts.append(
        f"<details><summary>KFP metrics of this step</summary><ul>{metrics}</ul></details>"
    )
    parts.append("</body></html>")
    return "\n".join(parts)


def _frame_html(table: pd.DataFrame) -> str:
    return table.to_html(index=False, float_format=lambda v: f"{v:.3g}", na_rep="")


def _warnings_html(warnings: list[str]) -> str:
    """The model's warnings first, before any number, in a box nobody can miss."""
    import html

    if not warnings:
        return "<p id='warnings' style='color:#176117'>No warning: every trust check passed.</p>"
    items = "".join(f"<li>{html.escape(w)}</li>" for w in warnings)
    return (
        "<section id='warnings' style='border:2px solid #b00020;background:#fdecee;"
        f"padding:0.5em 1em'><h2>Warnings ({len(warnings)})</h2><ul>{items}</ul></section>"
    )


def curves_html(run: CohortTraining) -> str:
    """The training curves and the C-index table (the SE ablation side by side) as a
    self-contained HTML page for the KFP UI."""
    import base64

    parts = ["<!doctype html><html><head><meta charset='utf-8'><title>3D SE-ResNet</title>"]
    parts.append("</head><body style='font-family:sans-serif'><h1>train-3D-SE-ResNet</h1>")
    parts.append(
        f"<p>{run.result.parameters:,} parameters; best epoch {run.result.best_epoch}; "
        f"{run.result.seconds:.0f} s; {len(run.features)} patients' deep features.</p>"
    )
    parts.append(run.c_index_table().to_html(index=False, float_format=lambda v: f"{v:.3f}"))
    for name, result in (("3D-SE-ResNet", run.result), ("3D-ResNet", run.ablation)):
        if result is None or result.history.empty:
            continue
        image = base64.b64encode(training_curves_png(result.history)).decode()
        parts.append(f"<h2>{name}</h2><img src='data:image/png;base64,{image}'>")
        parts.append(result.history.to_html(index=False, float_format=lambda v: f"{v:.4g}"))
    if len(run.failures):
        parts.append("<h2>Patients left out</h2>" + run.failures.to_html(index=False))
    parts.append("</body></html>")
    return "\n".join(parts)
