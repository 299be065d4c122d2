"""The evaluation report's figures (the paper's Figures 3-12) as PNG bytes, drawn with matplotlib.

Each function takes the tables the evaluate stage already computed, so the figures and the
Parquet tables never disagree.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from lungsurv.core.layout import SPLIT_COLUMN
from lungsurv.stages.evaluation import RISK_TABLE_DAYS, Evaluation
from lungsurv.survival.fusion import loadings_frame
from lungsurv.survival.metrics import kaplan_meier, logrank, status_at

HIGH, LOW = "#d62728", "#1f77b4"


HORIZON_COLOURS = ("#d62728", "#2ca02c", "#1f77b4")  # the paper's red, green, blue


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(fig: Any) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    _pyplot().close(fig)
    return buffer.getvalue()


def _km_panel(
    ax: Any,
    part: pd.DataFrame,
    cutoff: float,
    title: str,
    at_days: Sequence[int] = (),
    table_ax: Any = None,
) -> None:
    """High- vs low-risk curves with + at each censored patient and the log-rank p; with
    ``table_ax``, the number at risk at ``at_days`` beneath, each count under its tick."""
    groups = (
        ("high risk", part[part["risk"] > cutoff], HIGH),
        ("low risk", part[part["risk"] <= cutoff], LOW),
    )
    for label, rows, colour in groups:
        if rows.empty:
            continue
        curve = kaplan_meier(rows["time_days"], rows["event"])
        times, survival = [0.0, *curve["time"]], [1.0, *curve["survival"]]
        ax.step(times, survival, where="post", color=colour, label=f"{label} (n={len(rows)})")
        censored = rows.loc[rows["event"].astype(int) == 0, "time_days"].to_numpy(float)
        at = np.searchsorted(np.asarray(times), censored, side="right") - 1
        ax.plot(censored, np.asarray(survival)[at], "+", color=colour, markersize=6)
    high = (part["risk"] > cutoff).to_numpy()
    if 0 < high.sum() < len(part) and part["event"].any():
        _, p_value = logrank(part["time_days"], part["event"], high)
    else:
        p_value = float("nan")
    if np.isfinite(p_value):
        ax.text(
            0.97,
            0.95,
            f"log-rank p = {p_value:.2g}",
            transform=ax.transAxes,
            ha="right",
            va="top",
            fontsize=8,
        )
    ax.set_title(title, fontsize=9)
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize=7, loc="lower left")
    if table_ax is None or not len(at_days):
        ax.set_xlabel("days")
        return
    ax.set_xticks(list(at_days))
    ax.set_xlim(-0.03 * max(at_days), max(at_days) * 1.03)
    table_ax.set_xlim(ax.get_xlim())
    table_ax.set_ylim(-0.5, 1.5)
    for y, (_, rows, colour) in zip((1, 0), groups, strict=True):
        follow_up = rows["time_days"].to_numpy(float)
        for day in at_days:
            count = int(np.sum(follow_up >= day))
            table_ax.text(day, y, str(count), ha="center", va="center", fontsize=8, color=colour)
    table_ax.set_yticks([1, 0], ["high", "low"], fontsize=8)
    table_ax.set_xticks(list(at_days))
    table_ax.tick_params(axis="x", labelsize=8)
    table_ax.set_xlabel("days")
    table_ax.set_title("number at risk", fontsize=8, loc="left")
    for side in ("top", "right", "left"):
        table_ax.spines[side].set_visible(False)
    ax.tick_params(labelbottom=False)


def kaplan_meier_png(
    scores: pd.DataFrame, cutoff: float, at_days: Sequence[int] = RISK_TABLE_DAYS
) -> bytes:
    """High- vs low-risk Kaplan-Meier curves, training and test side by side, with censoring
    marks, the log-rank p and the number at risk at ``at_days`` under each panel (Figure 8)."""
    plt = _pyplot()
    fig, axes = plt.subplots(
        2, 2, figsize=(10, 5.2), gridspec_kw={"height_ratios": [4, 1]}, sharex="col"
    )
    for col, split in enumerate(("train", "test")):
        part = scores[scores[SPLIT_COLUMN] == split]
        _km_panel(axes[0, col], part, cutoff, f"{split} cohort", at_days, table_ax=axes[1, col])
    axes[0, 0].set_ylabel("overall survival")
    fig.tight_layout()
    return _png(fig)


def subgroup_kaplan_meier_png(
    scores: pd.DataFrame, cutoff: float, groups: dict[tuple[str, str], set[str]]
) -> bytes | None:
    """High vs low risk within each subgroup (rows) and cohort (columns), Figures 9-12."""
    if not groups:
        return None
    plt = _pyplot()
    fig, axes = plt.subplots(len(groups), 2, figsize=(9, 2.6 * len(groups)), squeeze=False)
    for row, ((subgroup, level), members) in enumerate(groups.items()):
        for col, split in enumerate(("train", "test")):
            part = scores[(scores[SPLIT_COLUMN] == split) & scores["patient_id"].isin(members)]
            _km_panel(axes[row, col], part, cutoff, f"{split}: {subgroup} {level} (n={len(part)})")
    fig.tight_layout()
    return _png(fig)


def roc_png(scores: pd.DataFrame, models: Sequence[str], horizons: Sequence[int]) -> bytes:
    """ROC curves of every model at each horizon (columns) and cohort (rows), on the patients
    whose status at the horizon is known (Figures 4 and 6)."""
    from sklearn.metrics import roc_auc_score, roc_curve

    plt = _pyplot()
    fig, axes = plt.subplots(2, len(horizons), figsize=(4 * len(horizons), 7.6), squeeze=False)
    for row, split in enumerate(("train", "test")):
        part = scores[scores[SPLIT_COLUMN] == split]
        for col, horizon in enumerate(horizons):
            ax = axes[row, col]
            known, died = status_at(part["time_days"], part["event"], horizon)
            for model in models:
                usable = known & part[model].notna().to_numpy()
                if died[usable].all() or not died[usable].any():
                    continue
                values = part[model].to_numpy(float)[usable]
                fpr, tpr, _ = roc_curve(died[usable], values)
                auc = roc_auc_score(died[usable], values)
                width = 2.2 if model == "Combined" else 1.0
                ax.plot(fpr, tpr, linewidth=width, label=f"{model} {auc:.2f}")
            ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=0.8)
            ax.set_title(f"{split}: {horizon / 365:.0f}-year status", fontsize=9)
            ax.set_xlabel("1 - specificity")
            ax.set_ylabel("sensitivity")
            ax.legend(fontsize=6, loc="lower right")
    fig.tight_layout()
    return _png(fig)


def calibration_png(calibration: pd.DataFrame) -> bytes | None:
    """Predicted against observed survival per horizon, training and test (Figure 7)."""
    if calibration.empty:
        return None
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(9, 4.2), sharey=True)
    for ax, split in zip(axes, ("train", "test"), strict=True):
        part = calibration[calibration["cohort"] == split]
        horizons = sorted(part["horizon_days"].unique())
        for colour, horizon in zip(HORIZON_COLOURS, horizons, strict=False):
            rows = part[part["horizon_days"] == horizon]
            ax.errorbar(
                rows["predicted"],
                rows["observed"],
                yerr=[
                    rows["observed"] - rows["observed_low"],
                    rows["observed_high"] - rows["observed"],
                ],
                marker="o",
                color=colour,
                capsize=3,
                label=f"{horizon / 365:.0f} year",
            )
        ax.plot([0, 1], [0, 1], color="grey", linestyle=":")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_title(f"{split} cohort", fontsize=9)
        ax.set_xlabel("predicted overall survival")
        ax.legend(fontsize=8)
    axes[0].set_ylabel("observed (Kaplan-Meier)")
    fig.tight_layout()
    return _png(fig)


def coefficients_png(selected: pd.DataFrame, signatures: Sequence[str]) -> bytes | None:
    """The selected features of each signature and their LASSO-Cox coefficients (Figure 3)."""
    panels = [s for s in signatures if (selected["signature"] == s).any()]
    if not panels:
        return None
    plt = _pyplot()
    heights = [max(1.2, 0.28 * int((selected["signature"] == s).sum())) for s in panels]
    fig, axes = plt.subplots(
        len(panels),
        1,
        figsize=(8, sum(heights) + 0.6 * len(panels)),
        squeeze=False,
        gridspec_kw={"height_ratios": heights},
    )
    for ax, signature in zip(axes[:, 0], panels, strict=True):
        rows = selected[selected["signature"] == signature].sort_values("coefficient")
        colours = [HIGH if c > 0 else LOW for c in rows["coefficient"]]
        ax.barh(rows["feature"], rows["coefficient"], color=colours)
        ax.axvline(0, color="black", linewidth=0.6)
        ax.set_title(f"{signature}: {len(rows)} feature(s)", fontsize=9)
        ax.tick_params(axis="y", labelsize=6)
    axes[-1, 0].set_xlabel("coefficient (per standard deviation)")
    fig.tight_layout()
    return _png(fig)


def loadings_png(loadings: pd.DataFrame) -> bytes | None:
    """The PCA loading matrix as a heatmap (Figure 5); rows ``block:feature``, columns PCs."""
    if loadings.empty or loadings.shape[1] == 0:
        return None
    plt = _pyplot()
    values = loadings.to_numpy(float)
    fig, ax = plt.subplots(figsize=(1.5 + 0.45 * values.shape[1], 1.2 + 0.22 * values.shape[0]))
    limit = float(np.max(np.abs(values))) or 1.0
    image = ax.imshow(values, cmap="RdBu_r", vmin=-limit, vmax=limit, aspect="auto")
    ax.set_xticks(range(values.shape[1]), list(loadings.columns), fontsize=7)
    ax.set_yticks(range(values.shape[0]), list(loadings.index), fontsize=6)
    fig.colorbar(image, ax=ax, label="loading")
    fig.tight_layout()
    return _png(fig)


def training_curves_png(history: pd.DataFrame) -> bytes:
    """Training and validation loss, and validation C-index, per epoch."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (loss_ax, c_ax) = plt.subplots(1, 2, figsize=(9, 3.4))
    loss_ax.plot(history["epoch"], history["train_loss"], label="train")
    loss_ax.plot(history["epoch"], history["validation_loss"], label="validation")
    loss_ax.set_xlabel("epoch")
    loss_ax.set_ylabel("Cox loss")
    loss_ax.legend()
    c_ax.plot(history["epoch"], history["validation_c_index"], color="#2ca02c")
    c_ax.axhline(0.5, color="grey", linestyle=":")
    c_ax.set_xlabel("epoch")
    c_ax.set_ylabel("validation C-index")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    plt.close(fig)
    return buffer.getvalue()


def evaluation_figures(evaluation: Evaluation) -> dict[str, bytes]:
    """Every figure of the evaluation report, by the name its section refers to."""
    params, scores = evaluation.params, evaluation.scores
    cutoff = params.cutoff
    selected = evaluation.tables.get("selected_features")
    drawn = {
        "roc": roc_png(evaluation.per_model, evaluation.models, evaluation.horizons),
        "calibration": calibration_png(evaluation.tables["calibration"]),
        "kaplan_meier": kaplan_meier_png(scores, cutoff),
        "subgroups": subgroup_kaplan_meier_png(scores, cutoff, evaluation.subgroups),
        "coefficients": coefficients_png(selected, evaluation.combined_signatures)
        if selected is not None
        else None,
        "loadings": loadings_png(loadings_frame(params)),
    }
    return {name: png for name, png in drawn.items() if png is not None}
