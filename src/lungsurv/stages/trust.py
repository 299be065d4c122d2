"""Whether a fitted model can be trusted, said before any table: the evaluate stage's warnings.

Each check names what it found, with the numbers (and :func:`fusion_notes` says where the
combined model is not the paper's); the report shows the list at the top, the
Markdown summary too, the KFP metrics count them (``model_warnings``), the stage's log repeats
them, and a null model (no feature selected) is refused for deployment.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import pandas as pd

from lungsurv.core.layout import CLINICAL_ROI, HORIZONS_DAYS, SPLIT_COLUMN, TEST, TRAIN
from lungsurv.survival.fusion import ModelParameters, survival_at
from lungsurv.survival.reliability import MIN_SURVIVAL

logger = logging.getLogger(__name__)

#: Test C-index this far below the oracle's (synthetic cohorts) is a model that failed.
MAX_ORACLE_GAP = 0.1
#: Risk groups split more unevenly than this (share of the test cohort in one group).
MAX_GROUP_SHARE = 0.8


def is_null_model(params: ModelParameters) -> bool:
    """Whether the combined model uses no feature at all (risk 0 for everyone)."""
    return sum(len(block.features) for block in params.blocks) == 0


def constant_models(per_model: pd.DataFrame, models: Sequence[str]) -> list[str]:
    """Models whose score is constant (or missing) on the training patients: an empty
    signature, with nothing to compare."""
    train = per_model[per_model[SPLIT_COLUMN] == TRAIN]
    return [m for m in models if train[m].dropna().nunique() < 2]


def model_warnings(
    *,
    per_model: pd.DataFrame,
    scores: pd.DataFrame,
    params: ModelParameters,
    models: Sequence[str],
    test_c_index: float | None,
    oracle_c_index: float | None = None,
    horizons: Sequence[int] = HORIZONS_DAYS,
    training_history: pd.DataFrame | None = None,
) -> list[str]:
    """Every reason not to trust the combined model or a signature, as sentences.
    ``training_history``: the 3D SE-ResNet's per-epoch losses (train-3D-SE-ResNet's)."""
    found: list[str] = []
    if is_null_model(params):
        found.append(
            "the combined model selected no feature: it is the null model (risk 0 for everyone, "
            "baseline survival only) and is not deployed"
        )
    for model in constant_models(per_model, models):
        found.append(
            f"the {model} signature is constant (no feature selected): its C-index is 0.5 by "
            "construction and it is left out of the DeLong comparisons"
        )
    gap = (oracle_c_index or np.nan) - (test_c_index if test_c_index is not None else np.nan)
    if gap > MAX_ORACLE_GAP:
        found.append(
            f"test C-index {test_c_index:.3f} is {gap:.3f} below the oracle's "
            f"{oracle_c_index:.3f} (the generator's own log-hazard)"
        )
    found += _risk_warnings(scores, params, horizons)
    if training_history is not None:
        found += training_warnings(training_history)
    for sentence in found:
        logger.warning("model warning: %s", sentence)
    return found


def training_warnings(history: pd.DataFrame, name: str = "3D SE-ResNet") -> list[str]:
    """The network did not learn: its validation loss never fell below the first epoch's, or
    its validation C-index at the kept (best) epoch is not above 0.5."""
    if history.empty:
        return [f"the {name} has no training history: it was never trained"]
    losses = history["validation_loss"].to_numpy(float)
    best = int(np.nanargmin(losses)) if np.isfinite(losses).any() else 0
    found = []
    if best == 0:
        found.append(
            f"training did not improve the {name}'s validation loss ({len(losses)} epochs, the "
            "first was the best): the network did not learn, its deep features are noise"
        )
    c_index = float(history["validation_c_index"].to_numpy(float)[best])
    if not c_index > 0.5:
        found.append(
            f"the {name}'s validation C-index at its best epoch is {c_index:.3f}: no better "
            "than chance"
        )
    return found


def _risk_warnings(
    scores: pd.DataFrame, params: ModelParameters, horizons: Sequence[int]
) -> list[str]:
    found: list[str] = []
    train = scores.loc[scores[SPLIT_COLUMN] == TRAIN, "risk"].to_numpy(float)
    test = scores[scores[SPLIT_COLUMN] == TEST]
    if len(test):
        share = float(np.mean(test["risk_group"] == "high"))
        if max(share, 1 - share) > MAX_GROUP_SHARE:
            found.append(
                f"risk groups split {100 * share:.0f}/{100 * (1 - share):.0f} (high/low) on the "
                f"test cohort: the training median does not separate it"
            )
    risk = test["risk"].to_numpy(float)
    if len(train) and len(risk) and np.ptp(train) > 0:
        low, high = float(train.min()), float(train.max())
        outside = int(np.sum((risk < low) | (risk > high)))
        if outside:
            found.append(
                f"{outside} of {len(risk)} test patients have risks outside the training range "
                f"{low:.2f} to {high:.2f}: the model extrapolates for them"
            )
    every = scores["risk"].to_numpy(float)
    if len(every) and len(horizons):
        survival = survival_at(every, [max(horizons)], params)[:, 0]
        tiny = int(np.sum(survival < MIN_SURVIVAL))
        if tiny:
            found.append(
                f"{tiny} patient(s) have a predicted {max(horizons) // 365}-year survival below "
                f"{MIN_SURVIVAL:g}: risks beyond what the training data support"
            )
    return found


def control_shortfalls(
    controls: pd.DataFrame, real_test_c_index: float | None, margin: float
) -> list[str]:
    """Why the real model is not clearly better than its negative controls: one sentence per
    control whose test C-index comes within ``margin`` of the real model's (or above it)."""
    if controls is None or controls.empty:
        return []
    if real_test_c_index is None or not np.isfinite(real_test_c_index):
        return ["the combined model has no test C-index to compare with its negative controls"]
    found = []
    for row in controls[controls["cohort"] == "test"].itertuples():
        if real_test_c_index - row.c_index < margin:
            found.append(
                f"the combined model's test C-index {real_test_c_index:.3f} does not beat the "
                f"{row.control} negative control's {row.c_index:.3f} by the margin {margin:.2f}: "
                + _CONTROL_MEANING.get(str(row.control), "its signal may not be the tumour's")
            )
    return found


#: What a model that does no better than a control may be ranking patients by.
_CONTROL_MEANING = {
    "shuffled": "it may rank patients by their ROIs' intensity distribution and size (which "
    "shuffling keeps), not by the spatial texture",
    "moved": "it may rank patients by the ROI's size or by the patient's scan (which moving "
    "keeps), not by what lies inside the tumour",
}


def fusion_notes(params: ModelParameters) -> list[str]:
    """What the combined model is, in a sentence each, where it is not the paper's: another
    fusion than PCA, and the overall stage fused beside the images (``fuse_stage``)."""
    notes = []
    if any(b.name == CLINICAL_ROI and b.features for b in params.blocks):
        notes.append(
            "Combined model: holds the overall stage too (the clinical block, a pre-specified "
            "Cox covariate; the paper's combined model is imaging only), so it gains over the "
            "imaging signatures what the stage adds; served predictions need the stage."
        )
    fusion = params.metadata.get("fusion", "pca")
    if fusion == "pca":
        return notes
    text = (
        "Combined model: a Cox model on the blocks' signatures (one covariate per block) "
        "instead of the paper's PCA components"
    )
    if fusion == "stacked":
        held_out = params.metadata.get("stacking_c_index", {})
        text += (
            ", weighted by a Cox fit on out-of-fold signature scores of the training cohort "
            "(held-out training C-index per block: "
            + ", ".join(f"{k} {v:.3f}" for k, v in held_out.items())
            + ")"
        )
    return [text + ".", *notes]
