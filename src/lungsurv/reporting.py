"""Human-readable summaries of a stage's tables (Markdown for the KFP UI)."""

from __future__ import annotations

import pandas as pd


def _table(frame: pd.DataFrame, columns: list[str], limit: int = 50) -> str:
    columns = [c for c in columns if c in frame.columns]
    if frame.empty or not columns:
        return "_none_\n"
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for _, row in frame.head(limit).iterrows():
        cells = []
        for column in columns:
            value = row[column]
            cells.append(f"{value:.2f}" if isinstance(value, float) else str(value))
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


HORIZONS_DAYS: tuple[int, ...] = (365, 730, 1095)


def discrimination_table(
    scores: pd.DataFrame, *, n_resamples: int = 1000, seed: int = 0
) -> pd.DataFrame:
    """Harrell's C-index with bootstrap CIs per model (score column) and cohort (the paper's
    Table 3 layout). ``scores``: patient_id, split, time_days, event and one column per model."""
    from lungsurv.evaluation import bootstrap_c_index

    models = [c for c in scores.columns if c not in {"patient_id", "split", "time_days", "event"}]
    rows = []
    for model in models:
        for split in ("train", "test"):
            part = scores[scores["split"] == split]
            if part.empty or part[model].nunique() < 2:
                continue
            estimate = bootstrap_c_index(
                part["time_days"], part["event"], part[model], n_resamples=n_resamples, seed=seed
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


def auc_table(scores: pd.DataFrame, horizons: tuple[int, ...] = HORIZONS_DAYS) -> pd.DataFrame:
    """Time-dependent AUC per model at each horizon on the test cohort (Table 4 layout)."""
    from lungsurv.evaluation import time_dependent_auc

    train, test = scores[scores["split"] == "train"], scores[scores["split"] == "test"]
    models = [c for c in scores.columns if c not in {"patient_id", "split", "time_days", "event"}]
    rows = []
    for model in models:
        table = time_dependent_auc(
            train["time_days"],
            train["event"],
            test["time_days"],
            test["event"],
            test[model],
            horizons,
        )
        for row in table.itertuples():
            rows.append(
                {"model": model, "horizon_days": int(row.time), "auc": row.auc, "cases": row.cases}
            )
    return pd.DataFrame(rows, columns=["model", "horizon_days", "auc", "cases"])


def risk_group_table(scores: pd.DataFrame, cutoff: float) -> pd.DataFrame:
    """High vs low risk (training median cutoff) per cohort: log-rank p and hazard ratio."""
    from lungsurv.evaluation import hazard_ratio, logrank

    rows = []
    for split in ("train", "test"):
        part = scores[scores["split"] == split]
        high = (part["risk"] > cutoff).to_numpy()
        if part.empty or high.all() or not high.any():
            continue
        _, p_value = logrank(part["time_days"], part["event"], high)
        hr, _ = hazard_ratio(part["time_days"], part["event"], high.astype(float))
        rows.append(
            {
                "cohort": split,
                "high": int(high.sum()),
                "low": int((~high).sum()),
                "logrank_p": p_value,
                "hr": hr.value,
                "hr_low": hr.low,
                "hr_high": hr.high,
            }
        )
    return pd.DataFrame(
        rows, columns=["cohort", "high", "low", "logrank_p", "hr", "hr_low", "hr_high"]
    )


def kaplan_meier_png(scores: pd.DataFrame, cutoff: float) -> bytes:
    """Kaplan-Meier curves of the high- and low-risk groups, train and test side by side."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from lungsurv.evaluation import kaplan_meier

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6), sharey=True)
    for ax, split in zip(axes, ("train", "test"), strict=True):
        part = scores[scores["split"] == split]
        for label, rows, colour in (
            ("high risk", part[part["risk"] > cutoff], "#d62728"),
            ("low risk", part[part["risk"] <= cutoff], "#1f77b4"),
        ):
            if rows.empty:
                continue
            curve = kaplan_meier(rows["time_days"], rows["event"])
            ax.step(
                [0, *curve["time"]],
                [1.0, *curve["survival"]],
                where="post",
                color=colour,
                label=f"{label} (n={len(rows)})",
            )
        ax.set_title(f"{split} cohort")
        ax.set_xlabel("days")
        ax.legend(fontsize=8)
    axes[0].set_ylabel("overall survival")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    plt.close(fig)
    return buffer.getvalue()


def evaluation_html(
    discrimination: pd.DataFrame,
    auc: pd.DataFrame,
    groups: pd.DataFrame,
    km_png: bytes,
    *,
    oracle_c_index: float | None = None,
) -> str:
    """A self-contained HTML report (figures embedded as data URIs)."""
    import base64

    image = base64.b64encode(km_png).decode()
    auc_wide = auc.pivot_table(index="model", columns="horizon_days", values="auc")
    style = (
        "body{font-family:sans-serif;max-width:1000px;margin:2em auto}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 8px}"
    )
    oracle = (
        f"<p>Oracle C-index of the synthetic cohort's true log-hazard: {oracle_c_index:.3f}</p>"
        if oracle_c_index is not None
        else ""
    )
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>lungsurv evaluation</title>
<style>{style}</style></head><body>
<h1>Overall-survival model: evaluation</h1>{oracle}
<h2>Discrimination: Harrell's C-index (95 % bootstrap CI)</h2>
{discrimination.to_html(index=False, float_format=lambda v: f"{v:.3f}")}
<h2>Time-dependent AUC on the test cohort</h2>
{auc_wide.to_html(float_format=lambda v: f"{v:.3f}")}
<h2>Risk groups (training median cutoff)</h2>
{groups.to_html(index=False, float_format=lambda v: f"{v:.3g}")}
<img alt="Kaplan-Meier curves by risk group" src="data:image/png;base64,{image}">
</body></html>"""


def oracle_c_index_for(cohort_uri: str, scores: pd.DataFrame, split: str = "test") -> float | None:
    """For a synthetic cohort (``truth.parquet`` beside its manifest): the C-index of the true
    log-hazard on the ``split`` patients, the best any model could reach there."""
    from pathlib import Path

    from lungsurv.evaluation import c_index
    from lungsurv.storage import is_s3_uri
    from lungsurv.synthetic import TRUTH_FILE

    if not cohort_uri or is_s3_uri(cohort_uri):
        return None
    truth_path = Path(cohort_uri).parent / TRUTH_FILE
    if not truth_path.exists():
        return None
    truth = pd.read_parquet(truth_path).set_index("patient_id")["log_hazard"]
    part = scores[(scores["split"] == split) & scores["patient_id"].isin(truth.index)]
    if part.empty:
        return None
    return c_index(part["time_days"], part["event"], truth.loc[part["patient_id"]].to_numpy())
