"""The select-features stage: the paper's signatures and a TNM baseline, on training rows only.

:func:`select_features` fits each signature (``Rad``, ``Rad_<d>mm``, ``Rad+Rad_<d>mm``, ``DL``)
as a :class:`~lungsurv.survival.selection.CoxSignature` on the training patients and scores every
patient; the result is a :class:`Selection` (a Parquet table of the selected features and their
coefficients plus a small JSON) that PCA-fuse (:mod:`lungsurv.stages.fusion`) and evaluate read.
Everything fitted (scalers, filters, LASSO, the TNM Cox model) sees training rows only; the tests
prove it by perturbing the test rows.
"""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sksurv.util import Surv

from lungsurv.core.layout import (
    CLINICAL_ROI,
    DL_RISK_FEATURE,
    DL_ROI,
    GTV_ROI,
    RING_PREFIX,
    SPLIT_COLUMN,
    STAGE_FEATURE,
    is_ring,
    ring_name,
    ring_rois,
)
from lungsurv.core.tables import write_parquet
from lungsurv.survival.cox import univariate_cox
from lungsurv.survival.fusion import BlockParameters, feature_blocks
from lungsurv.survival.metrics import c_index
from lungsurv.survival.selection import CoxSignature, assign_folds

logger = logging.getLogger(__name__)

SELECTED_FILE = "selected_features.parquet"
SELECTION_FILE = "selection.json"
#: The ring the combined model fuses: the paper's 6 mm (``"auto"`` chooses one by CV).
DEFAULT_COMBINED_RING = ring_name(6.0)
#: Overall stage as an ordinal covariate for the TNM baseline (AJCC 7th edition groups).
STAGE_ORDER: dict[str, int] = {"i": 1, "ia": 1, "ib": 1, "ii": 2, "iia": 2, "iib": 2}


STAGE_ORDER |= {"iii": 3, "iiia": 3, "iiib": 4, "iv": 5}
#: What the deep-learning block offers its signature: the network's pooled deep features (the
#: paper's) or the network's own risk output, one feature.
DL_BLOCKS: tuple[str, ...] = ("features", "risk")


def deep_block(block: pd.DataFrame, dl_block: str) -> pd.DataFrame:
    """The deep-learning block's candidate features: the deep features without the network's
    risk (``"features"``), or the risk alone (``"risk"``)."""
    if dl_block not in DL_BLOCKS:
        raise ValueError(f"dl_block must be one of {DL_BLOCKS}, got {dl_block!r}")
    if dl_block == "features":
        return block.drop(columns=[DL_RISK_FEATURE], errors="ignore")
    if DL_RISK_FEATURE not in block.columns:
        raise ValueError(
            f"dl_block='risk' needs the network's risk, column {DL_RISK_FEATURE!r}, in the deep "
            "features table; this one has only deep features (train the network again)"
        )
    return block[[DL_RISK_FEATURE]]


@dataclass
class _Cohort:
    """The patients with every requested block, their blocks, and the training target."""

    outcomes: pd.DataFrame
    patients: list[str]
    train: list[str]
    blocks: dict[str, pd.DataFrame]
    y: np.ndarray

    def split_column(self) -> list[str]:
        train = set(self.train)
        return ["train" if p in train else "test" for p in self.patients]


def _assemble(
    features: pd.DataFrame,
    manifest: pd.DataFrame,
    is_train: pd.Series,
    rois: Sequence[str],
) -> _Cohort:
    """Patients with a row for every ROI (the others are named in a warning), their wide
    blocks, and the survival target of the training patients."""
    outcomes = manifest.set_index(manifest["patient_id"].astype(str))[["time_days", "event"]]
    complete = set(outcomes.index)
    for roi in rois:
        complete &= set(features.loc[features["roi"] == roi, "patient_id"].astype(str))
    dropped = sorted(set(outcomes.index) - complete)
    if dropped:
        warnings.warn(
            f"{len(dropped)} patient(s) without every feature block are left out: {dropped[:5]}",
            stacklevel=3,
        )
    patients = [p for p in outcomes.index if p in complete]
    train = [p for p in patients if is_train.get(p, False)]
    blocks = feature_blocks(features, list(rois), patients=patients)
    y = Surv.from_arrays(
        outcomes.loc[train, "event"].astype(bool).to_numpy(),
        outcomes.loc[train, "time_days"].astype(float).to_numpy(),
    )
    return _Cohort(outcomes, patients, train, blocks, y)


def has_roi(features: pd.DataFrame, roi: str) -> bool:
    return bool((features["roi"] == roi).any())


def signature_name(rois: Sequence[str]) -> str:
    """The paper's names: ``Rad`` (GTV), ``Rad_6mm`` (a ring), ``Rad+Rad_6mm``, ``DL``; and
    ``TNM`` for the clinical block (the overall stage)."""
    parts = []
    for roi in rois:
        if roi == GTV_ROI:
            parts.append("Rad")
        elif is_ring(roi):
            parts.append("Rad_" + roi.removeprefix(RING_PREFIX))
        elif roi == CLINICAL_ROI:
            parts.append("TNM")
        else:
            parts.append(roi.upper() if roi == DL_ROI else roi)
    return "+".join(parts)


@dataclass
class Selection:
    """What select-features hands to PCA-fuse and evaluate.

    ``table``: one row per selected feature of every signature (``signature, block, feature,
    coefficient, mean, scale, univariate_hr, univariate_p``); ``signature_blocks``: the blocks
    of each signature; ``combined_blocks``: the blocks the combined model fuses (GTV, the ring,
    and ``dl`` when deep features were given); ``scores``: every patient's signature scores
    (``patient_id, split`` and one column per signature, plus ``TNM`` when the manifest has
    ``overall_stage``).
    """

    table: pd.DataFrame
    signature_blocks: dict[str, list[str]]
    combined_blocks: list[str]
    #: The ring the combined model fuses; None for a table without rings (GTV, and DL, only).
    ring: str | None
    ring_chosen_automatically: bool
    scores: pd.DataFrame
    settings: dict[str, Any] = field(default_factory=dict)

    def block_parameters(self) -> list[BlockParameters]:
        """The combined blocks' own signatures (``Rad``, ``Rad_6mm``, ``DL``) for PCA-fuse."""
        parameters = []
        for block in self.combined_blocks:
            rows = self.table[self.table["signature"] == signature_name([block])]
            parameters.append(
                BlockParameters(
                    name=block,
                    features=[str(f) for f in rows["feature"]],
                    mean=rows["mean"].to_numpy(float),
                    scale=rows["scale"].to_numpy(float),
                    signature_coef=rows["coefficient"].to_numpy(float),
                )
            )
        return parameters

    def save(self, folder: Path) -> Path:
        """``folder/selected_features.parquet`` and ``folder/selection.json``."""

        folder.mkdir(parents=True, exist_ok=True)
        write_parquet(self.table, folder / SELECTED_FILE)
        info = {
            "signature_blocks": self.signature_blocks,
            "combined_blocks": self.combined_blocks,
            "ring": self.ring,
            "ring_chosen_automatically": self.ring_chosen_automatically,
            "settings": self.settings,
        }
        (folder / SELECTION_FILE).write_text(json.dumps(info, indent=1))
        return folder

    @classmethod
    def load(cls, folder: Path, scores: pd.DataFrame | None = None) -> Selection:
        """Read a selection written by :meth:`save` (scores travel as their own table)."""
        info = json.loads((folder / SELECTION_FILE).read_text())
        return cls(
            table=pd.read_parquet(folder / SELECTED_FILE),
            signature_blocks={k: list(v) for k, v in info["signature_blocks"].items()},
            combined_blocks=list(info["combined_blocks"]),
            ring=None if info["ring"] is None else str(info["ring"]),
            ring_chosen_automatically=bool(info["ring_chosen_automatically"]),
            scores=scores if scores is not None else pd.DataFrame(),
            settings=dict(info.get("settings", {})),
        )


SELECTION_COLUMNS: tuple[str, ...] = (
    "signature",
    "block",
    "feature",
    "coefficient",
    "mean",
    "scale",
    "univariate_hr",
    "univariate_p",
)


def _log_selection(name: str, signature: CoxSignature) -> None:
    """One line per signature; an empty one is a warning: it scores everyone 0 (C 0.5)."""
    n = len(signature.selected_)
    if n:
        logger.info("select-features: %s selected %d feature(s)", name, n)
    else:
        logger.warning(
            "select-features: %s selected NO feature: it scores every patient 0 (C-index 0.5)",
            name,
        )


def _signature_rows(name: str, signature: Any) -> list[dict[str, Any]]:
    rows = []
    for index, coefficient in zip(signature.selected_, signature.coef_, strict=True):
        block, feature = str(signature.feature_names_in_[index]).split(":", 1)
        rows.append(
            {
                "signature": name,
                "block": block,
                "feature": feature,
                "coefficient": float(coefficient),
                "mean": float(signature.scaler_.mean_[index]),
                "scale": float(signature.scaler_.scale_[index]),
                "univariate_hr": float(np.exp(signature.univariate_.coef_[index])),
                "univariate_p": float(signature.univariate_.pvalues_[index]),
            }
        )
    return rows


def select_features(
    features: pd.DataFrame,
    manifest: pd.DataFrame,
    is_train: pd.Series,
    *,
    rings: Sequence[str] | None = None,
    combined_ring: str = DEFAULT_COMBINED_RING,
    alpha: float = 0.05,
    n_folds: int = 10,
    cv_scoring: str = "deviance",
    cv_rule: str = "min",
    random_state: int = 0,
    dl_block: str = "features",
    fuse_stage: bool = False,
) -> Selection:
    """select-features: the paper's signatures, each fitted on the training patients only.

    ``Rad`` (GTV), ``Rad_<d>mm`` per ring, ``Rad+Rad_<d>mm`` (GTV and ring features in one
    signature) and ``DL`` when the table has deep-feature rows (``roi == "dl"``), each a
    :class:`~lungsurv.survival.selection.CoxSignature` (``cv_scoring``, ``cv_rule``: see
    :class:`~lungsurv.survival.selection.LassoCoxSelector`).
    ``rings``: default every ring in the table. ``combined_ring``: the ring the combined
    model fuses, or ``"auto"`` for the one with the best cross-validated training C-index
    (:func:`choose_ring`). ``dl_block``: what the ``DL`` signature selects from
    (:func:`deep_block`): the deep features (the paper's) or the network's risk. A TNM
    baseline (Cox on the ordinal overall stage, :func:`tnm_scores`) is scored alongside when
    the manifest has ``overall_stage``. ``fuse_stage``: the combined model fuses that stage as
    a clinical block (:func:`with_clinical_block`), its ``TNM`` signature a pre-specified Cox
    model; patients without a known stage are left out, with a warning.
    """

    rings = list(ring_rois(features["roi"]) if rings is None else rings)
    if rings and combined_ring != "auto" and combined_ring not in rings:
        raise ValueError(f"combined ring {combined_ring!r} is not among the rings {rings}")
    params = {"alpha": alpha, "n_folds": n_folds, "cv_scoring": cv_scoring, "cv_rule": cv_rule}
    extra = [DL_ROI] if has_roi(features, DL_ROI) else []
    extra += [CLINICAL_ROI] if fuse_stage else []
    cohort = assemble_cohort(features, manifest, is_train, [GTV_ROI, *rings, *extra], dl_block)
    combos: list[list[str]] = [[GTV_ROI]] + [[r] for r in rings] + [[GTV_ROI, r] for r in rings]
    combos += [[block] for block in extra]
    settings = params | {"random_state": random_state, "dl_block": dl_block}
    fitted, rows, signature_blocks = _fit_signatures(
        cohort, combos, params | {"random_state": random_state}
    )
    scores = pd.DataFrame({"patient_id": cohort.patients, SPLIT_COLUMN: cohort.split_column()})
    scores = scores.assign(**fitted)
    if "overall_stage" in manifest.columns and not fuse_stage:  # fused: the block's signature
        scores["TNM"] = tnm_scores(manifest, is_train).reindex(cohort.patients).to_numpy()
    ring, ring_scores = (combined_ring if rings else None), {}
    if combined_ring == "auto" and rings:
        ring, ring_scores = choose_ring(
            features, manifest, is_train, rings, random_state=random_state, **params
        )
    return Selection(
        table=pd.DataFrame(rows, columns=list(SELECTION_COLUMNS)),
        signature_blocks=signature_blocks,
        combined_blocks=[GTV_ROI, *([ring] if ring else []), *extra],
        ring=ring,
        ring_chosen_automatically=combined_ring == "auto" and bool(rings),
        scores=scores,
        settings=settings | {"fuse_stage": fuse_stage, "ring_cv_c_index": ring_scores},
    )


def assemble_cohort(
    features: pd.DataFrame,
    manifest: pd.DataFrame,
    is_train: pd.Series,
    blocks: Sequence[str],
    dl_block: str,
) -> _Cohort:
    """The patients with every block (the clinical one from the manifest) and their blocks, the
    deep block as ``dl_block`` offers it: what select-features and PCA-fuse both fit on."""
    features = with_clinical_block(features, manifest, blocks)
    cohort = _assemble(features, manifest, is_train, blocks)
    if DL_ROI in cohort.blocks:
        cohort.blocks[DL_ROI] = deep_block(cohort.blocks[DL_ROI], dl_block)
    return cohort


def _fit_signatures(
    cohort: _Cohort, combos: Sequence[Sequence[str]], params: dict[str, Any]
) -> tuple[dict[str, np.ndarray], list[dict[str, Any]], dict[str, list[str]]]:
    """Each combination's signature fitted on the training patients: (every patient's score
    per signature, the selection table's rows, each signature's blocks)."""
    scores: dict[str, np.ndarray] = {}
    rows: list[dict[str, Any]] = []
    signature_blocks: dict[str, list[str]] = {}
    for combo in combos:
        joined = pd.concat([cohort.blocks[r].add_prefix(f"{r}:") for r in combo], axis=1)
        signature = _fit_signature(joined.loc[cohort.train], cohort.y, combo, **params)
        name = signature_name(combo)
        signature_blocks[name] = list(combo)
        scores[name] = signature.predict(joined)
        rows += _signature_rows(name, signature)
        _log_selection(name, signature)
    return scores, rows, signature_blocks


def _fit_signature(
    x: pd.DataFrame, y: np.ndarray, blocks: Sequence[str] = (), **params: Any
) -> CoxSignature:
    """A :class:`CoxSignature` of ``blocks`` fitted quietly (lifelines/sksurv convergence
    chatter). Deep features may order the training pairs perfectly: the network learnt them
    from these outcomes (the paper's design), so they are not refused as outcome functions. The
    clinical block is pre-specified: kept whole, never screened (``select=False``)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        refuse, select = DL_ROI not in blocks, CLINICAL_ROI not in blocks
        return CoxSignature(refuse_outcome_functions=refuse, select=select, **params).fit(x, y)


def with_clinical_block(
    features: pd.DataFrame, manifest: pd.DataFrame, blocks: Sequence[str]
) -> pd.DataFrame:
    """The feature table with the clinical block's rows (``roi == "clinical"``, one column
    :data:`~lungsurv.core.layout.STAGE_FEATURE`: the ordinal overall stage) added when
    ``blocks`` names that block and the table lacks them; patients whose stage is unknown get no
    row. The stage comes from the manifest, never from images, and is not harmonised."""
    if CLINICAL_ROI not in blocks or has_roi(features, CLINICAL_ROI):
        return features
    if "overall_stage" not in manifest.columns:
        raise ValueError(
            "fuse_stage needs an 'overall_stage' column in the manifest; add one, or set "
            "fuse_stage to false for an imaging-only combined model"
        )
    stage = overall_stage_number(manifest["overall_stage"])
    known = stage.notna().to_numpy()
    rows = pd.DataFrame(
        {
            "patient_id": manifest["patient_id"].astype(str).to_numpy()[known],
            "roi": CLINICAL_ROI,
            STAGE_FEATURE: stage.to_numpy(float)[known],
        }
    )
    if not known.all():
        logger.warning(
            "the clinical block: %d patient(s) without a known overall stage have no row",
            int((~known).sum()),
        )
    return pd.concat([features, rows], ignore_index=True)


def overall_stage_number(stage: pd.Series) -> pd.Series:
    """Overall stage as an ordinal number (I 1, II 2, IIIa 3, IIIb 4, IV 5); unknown is NaN."""
    text = stage.astype("string").str.strip().str.lower().str.removeprefix("stage ")
    return text.map(STAGE_ORDER).astype(float)


def tnm_scores(manifest: pd.DataFrame, is_train: pd.Series) -> pd.Series:
    """The TNM baseline: a Cox model on the ordinal overall stage, fitted on the training
    patients with a known stage; its linear predictor for every patient (NaN where the stage is
    unknown). Index: patient_id."""

    ids = manifest["patient_id"].astype(str).to_numpy()
    stage = overall_stage_number(manifest["overall_stage"]).to_numpy()
    train = is_train.reindex(ids).fillna(False).to_numpy(bool) & np.isfinite(stage)
    event = manifest["event"].to_numpy(bool)[train]
    if event.sum() < 1 or np.ptp(stage[train]) == 0:
        return pd.Series(np.nan, index=ids, name="TNM")
    coef, _, _ = univariate_cox(
        stage[train].reshape(-1, 1), event, manifest["time_days"].to_numpy(float)[train]
    )
    return pd.Series(coef[0] * stage, index=ids, name="TNM")


def choose_ring(
    features: pd.DataFrame,
    manifest: pd.DataFrame,
    is_train: pd.Series,
    rings: Sequence[str],
    *,
    n_folds: int = 5,
    random_state: int = 0,
    **signature_params: Any,
) -> tuple[str, dict[str, float]]:
    """The ring whose signature has the highest cross-validated C-index on the training
    patients (ties: the smaller distance); returns it and every ring's score.

    The whole signature (z-score, univariate filter, LASSO-Cox) is refitted in each of
    ``n_folds`` folds and scored on the held-out fold: the in-sample C-index of a signature
    rewards rings whose noise features happened to pass the filter.
    """

    cohort = _assemble(features, manifest, is_train, list(rings))
    event, time = cohort.y["event"], cohort.y["time"]
    fold = assign_folds(cohort.train, event, n_folds, seed=random_state)
    scores: dict[str, float] = {}
    for ring in rings:
        block = cohort.blocks[ring].loc[cohort.train]
        values = []
        for k in range(n_folds):
            train, held_out = np.flatnonzero(fold != k), np.flatnonzero(fold == k)
            signature = _fit_signature(
                block.iloc[train], cohort.y[train], random_state=random_state, **signature_params
            )
            risk = signature.predict(block.iloc[held_out])
            held = event[held_out]
            usable = held.any() and np.ptp(risk) > 0
            values.append(c_index(time=time[held_out], event=held, risk=risk) if usable else 0.5)
        scores[ring] = float(np.mean(values))
    best = max(rings, key=lambda r: (round(scores[r], 12), -list(rings).index(r)))
    return best, scores
