"""Markdown summaries for the KFP UI: the imaging stages' summary and the evaluation's headline."""

from __future__ import annotations

import pandas as pd

from lungsurv.stages.evaluation import Evaluation


def _table(frame: pd.DataFrame, columns: list[str], limit: int = 50) -> str:
    columns = [c for c in columns if c in frame.columns]
    if frame.empty or not columns:
        return "_none_\n"
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for _, row in frame.head(limit).iterrows():
        cells = []
        for column in columns:
            value = row[column]
            cells.append(f"{value:.3g}" if isinstance(value, float) else str(value))
        lines.append("| " + " | ".join(c.replace("|", "/") for c in cells) + " |")
    if len(frame) > limit:
        lines.append(f"\n_{len(frame) - limit} more rows in the Parquet table_")
    return "\n".join(lines) + "\n"


def imaging_summary_markdown(
    geometry: pd.DataFrame,
    rings: pd.DataFrame,
    failures: pd.DataFrame,
    features: pd.DataFrame | None = None,
) -> str:
    """Convert + segment-rings in a page: counts, volumes per patient, rings, failures."""
    n_ok = len(geometry)
    n_failed = failures["patient_id"].nunique() if len(failures) else 0
    parts = [
        "# Imaging: convert, segment-rings and radiomics\n",
        f"- patients converted: **{n_ok}**",
        f"- patients failed or rejected: **{n_failed}**",
    ]
    if n_ok:
        volumes = geometry["gtv_volume_ml_resampled"]
        change = geometry["gtv_volume_change_pct"].abs()
        parts += [
            f"- GTV volume (ml): median {volumes.median():.1f}, "
            f"range {volumes.min():.1f}-{volumes.max():.1f}",
            f"- GTV volume change by resampling: at most {change.max():.2f} %",
            f"- crops clipped by the CT edge: {int(geometry['crop_clipped'].sum())}",
        ]
    if len(rings):
        parts.append(f"- rings clipped by the volume edge: {int(rings['clipped_by_volume'].sum())}")
        parts.append(f"- empty rings: {int(rings['empty'].sum())}")
    if features is not None and len(features):
        n_features = features.shape[1] - 3
        per_roi = features.groupby("roi")["patient_id"].nunique().to_dict()
        listing = ", ".join(f"{roi} {count}" for roi, count in per_roi.items())
        parts.append(f"- radiomics: **{n_features}** features per ROI; patients per ROI: {listing}")
    parts.append("\n## Failures\n")
    parts.append(_table(failures, ["patient_id", "stage", "error_type", "message"]))
    parts.append("\n## Patients\n")
    parts.append(
        _table(
            geometry,
            [
                "patient_id",
                "source",
                "orig_spacing_x",
                "orig_spacing_z",
                "gtv_volume_ml_original",
                "gtv_volume_ml_resampled",
                "crop_clipped",
                "warnings",
            ],
        )
    )
    if len(rings):
        wide = rings.pivot_table(
            index="patient_id", columns="roi", values="volume_ml"
        ).reset_index()
        parts.append("\n## Ring volumes (ml)\n")
        parts.append(_table(wide, list(wide.columns)))
    return "\n".join(parts)


def evaluation_markdown(evaluation: Evaluation) -> str:
    """The headline numbers and Table 3 as Markdown for the KFP UI's Markdown viewer."""
    parts = ["# Overall-survival model: evaluation\n"]
    if evaluation.warnings:
        parts.append(f"## Warnings ({len(evaluation.warnings)})\n")
        parts += [f"- **{w}**" for w in evaluation.warnings]
        parts.append("")
    else:
        parts.append("No warning: every trust check passed.\n")
    parts += [f"- {n}" for n in evaluation.notes]
    headline = evaluation.tables.get("headline", pd.DataFrame())
    parts.append("\n## Headline (C-index with 95 % bootstrap CI, AUC at 1/2/3 years, IBS)\n")
    parts.append(_table(headline, list(headline.columns)))
    calibration = evaluation.tables.get("calibration_measures", pd.DataFrame())
    parts.append("\n## Calibration slope and intercept (95 % bootstrap CI)\n")
    parts.append(
        _table(calibration, ["cohort", "measure", "horizon_days", "estimate", "low", "high"])
    )
    groups = evaluation.tables["risk_groups"]
    parts.append("\n## Risk groups (high vs low)\n")
    parts.append(
        _table(
            groups,
            ["cohort", "subgroup", "level", "patients", "logrank_p", "hr", "hr_low", "hr_high"],
        )
    )
    parts.append("\nThe full report, with every figure, is the HTML artifact of this step.")
    return "\n".join(parts)
