"""The PCA-fuse stage: the combined model over select-features' blocks, fitted on training rows.

:func:`fit_combined` assembles the blocks the selection names (GTV, the chosen ring, deep features),
fits the :class:`~lungsurv.survival.fusion.FusionModel` on the training patients with the
selection's own signatures, and scores every patient (risk, risk group, one signature per block).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lungsurv.core.layout import (
    CLINICAL_ROI,
    DL_ROI,
    GTV_ROI,
    PROVENANCE_COLUMNS,
    SPLIT_COLUMN,
    TRAIN,
    is_radiomics_roi,
)
from lungsurv.core.provenance import ProvenanceError, training_provenance
from lungsurv.imaging.qa import training_ranges
from lungsurv.radiomics.params import params_digest
from lungsurv.stages.harmonization import Harmonizer, harmonization_document
from lungsurv.stages.selection import (
    DEFAULT_COMBINED_RING,
    Selection,
    assemble_cohort,
    has_roi,
    select_features,
)
from lungsurv.survival.bundle import save_bundle
from lungsurv.survival.fusion import BlockParameters, FusionModel, feature_blocks, score
from lungsurv.survival.reliability import training_features, training_risk

logger = logging.getLogger(__name__)


def fit_combined(
    features: pd.DataFrame,
    manifest: pd.DataFrame,
    is_train: pd.Series,
    *,
    ring: str = DEFAULT_COMBINED_RING,
    selection: Selection | None = None,
    variance: float = 0.95,
    alpha: float = 0.05,
    n_folds: int = 10,
    random_state: int = 0,
    fusion: str = "pca",
    cv_scoring: str = "deviance",
    cv_rule: str = "min",
    dl_block: str = "features",
    fuse_stage: bool = False,
) -> tuple[FusionModel, pd.DataFrame]:
    """PCA-fuse: the combined model, fitted on the training patients, and every patient's scores.

    With a ``selection`` (from :func:`select_features`) its combined blocks and their selected
    features are used as they are; without one each block's signature is selected here (GTV,
    ``ring``, and deep features when the table has ``dl`` rows), and ``ring="auto"`` picks the
    ring by cross-validated training C-index. ``fusion``: the paper's PCA, ``"signatures"``
    (a Cox model on the blocks' signature scores) or ``"stacked"`` (that Cox model fitted on
    out-of-fold signature scores; :class:`FusionModel`). Signatures refitted here (without a
    selection, or in the stacking's folds) use ``alpha``, ``n_folds``, ``cv_scoring`` and
    ``cv_rule``, or the selection's own settings when it has them; so do ``dl_block`` (what
    the deep-learning block offers, :func:`~lungsurv.stages.selection.deep_block`) and
    ``fuse_stage`` (the stage as a clinical block). Patients lacking a block are left out, with
    a warning. The scores table has ``patient_id, split, time_days, event, risk, risk_group``
    and one ``signature_<block>`` column per block.
    """
    settings: dict[str, Any] = {"alpha": alpha, "n_folds": n_folds, "cv_scoring": cv_scoring}
    settings |= {"cv_rule": cv_rule, "dl_block": dl_block}
    if selection is None and ring == "auto":
        selection = select_features(
            features, manifest, is_train, combined_ring=ring, random_state=random_state,
            fuse_stage=fuse_stage, **settings,
        )  # fmt: skip
    if selection is not None:
        blocks, ring = selection.combined_blocks, selection.ring
        prefit: list[BlockParameters] | None = selection.block_parameters()
        chosen_automatically = selection.ring_chosen_automatically
        # The stacking refits the signatures as they were selected (older: deep features).
        settings |= {k: v for k, v in selection.settings.items() if k in settings}
        settings["dl_block"] = selection.settings.get("dl_block", "features")
    else:
        blocks, ring = _own_blocks(features, ring, fuse_stage)
        prefit, chosen_automatically = None, False
    dl_choice = str(settings.pop("dl_block"))
    cohort = assemble_cohort(features, manifest, is_train, blocks, dl_choice)
    train_blocks = {name: block.loc[cohort.train] for name, block in cohort.blocks.items()}
    model = FusionModel(
        variance=variance,
        random_state=random_state,
        block_parameters=prefit,
        fusion=fusion,
        prespecified=[CLINICAL_ROI] if CLINICAL_ROI in blocks else [],
        **settings,
    ).fit(train_blocks, cohort.y)
    model.params_.metadata.update({"ring": ring, "ring_chosen_automatically": chosen_automatically})
    return model, _scores_table(cohort, score(cohort.blocks, model.params_), model.cutoff_)


def _own_blocks(
    features: pd.DataFrame, ring: str, fuse_stage: bool
) -> tuple[list[str], str | None]:
    """The blocks a fit without a selection fuses (GTV, the ring, deep features when the table
    has them, the clinical block with ``fuse_stage``) and the ring (None for a GTV-only table)."""
    fused_ring = ring if has_roi(features, ring) else None
    blocks = [GTV_ROI, *([fused_ring] if fused_ring else [])]
    blocks += [DL_ROI] if has_roi(features, DL_ROI) else []
    return blocks + ([CLINICAL_ROI] if fuse_stage else []), fused_ring


def _scores_table(cohort: Any, scored: dict[str, np.ndarray], cutoff: float) -> pd.DataFrame:
    """``patient_id, split, time_days, event, risk, risk_group, signature_<block>...``."""
    patients, outcomes = cohort.patients, cohort.outcomes
    table = pd.DataFrame(
        {
            "patient_id": patients,
            SPLIT_COLUMN: cohort.split_column(),
            "time_days": outcomes.loc[patients, "time_days"].astype(float).to_numpy(),
            "event": outcomes.loc[patients, "event"].astype(int).to_numpy(),
            "risk": scored["risk"],
        }
    )
    table["risk_group"] = np.where(table["risk"] > cutoff, "high", "low")
    for key, values in scored.items():
        if key.startswith("signature_"):
            table[key] = values
    return table


def bundle_provenance(
    features: pd.DataFrame,
    blocks: Sequence[str],
    train_ids: Sequence[str],
    radiomics_params: Mapping[str, Any],
) -> dict[str, dict[str, Any]]:
    """Each used block's training provenance (:func:`~lungsurv.core.provenance.
    training_provenance`). The radiomics blocks must have been extracted with the parameters the
    bundle ships (:class:`~lungsurv.core.provenance.ProvenanceError` otherwise: serving would
    compute other features than the model was fitted on). A table without provenance columns
    (written by an older version, or a hand-made one) gives none, with a warning."""
    if not set(PROVENANCE_COLUMNS) <= set(features.columns):
        logger.warning(
            "the feature table carries no provenance columns: the bundle records none, and "
            "serving cannot check that it computes the features as they were computed here"
        )
        return {}
    training = features[features["patient_id"].astype(str).isin(set(map(str, train_ids)))]
    shipped = params_digest(radiomics_params) if any(map(is_radiomics_roi, blocks)) else ""
    record: dict[str, dict[str, Any]] = {}
    for block in blocks:
        record[block] = training_provenance(training[training["roi"] == block])
        if is_radiomics_roi(block) and record[block]["params_digest"] != shipped:
            raise ProvenanceError(
                f"the {block} features were extracted with parameters of digest "
                f"{record[block]['params_digest']}, but the bundle would ship parameters of digest "
                f"{shipped}: pass PCA-fuse the radiomics parameters the features were made with"
            )
    return record


def write_bundle(
    model: FusionModel,
    folder: Path,
    *,
    scores: pd.DataFrame,
    geometry: pd.DataFrame,
    selection: Selection,
    radiomics_params: Mapping[str, Any],
    network_dir: Path | None = None,
    features: pd.DataFrame | None = None,
    harmonizers: Mapping[str, Harmonizer] | None = None,
) -> Path:
    """The model bundle serving loads: the fitted model with the training patients' GTV-volume
    and slice-thickness ranges, risk quantiles and (given the ``features`` table) every used
    feature's training quantiles (serving flags inputs outside them), the radiomics parameters,
    the selection settings, the network when the model fuses deep features, and the centers'
    feature corrections (``harmonizers``, from
    :func:`~lungsurv.stages.harmonization.harmonize_features`) for the features it uses. A
    model with the clinical block needs the ``features`` table with its rows
    (:func:`~lungsurv.stages.selection.with_clinical_block`)."""
    train_ids = list(scores.loc[scores[SPLIT_COLUMN] == TRAIN, "patient_id"])  # the fitted rows
    model.params_.metadata["training_ranges"] = training_ranges(geometry, train_ids)
    trained = scores[SPLIT_COLUMN] == TRAIN
    model.params_.metadata["training_risk"] = training_risk(scores.loc[trained, "risk"].to_numpy())
    if features is not None:  # every used feature's training quantiles, mean and SD
        used = [b.name for b in model.params_.blocks if b.features]
        blocks = feature_blocks(features, used, patients=train_ids)
        model.params_.metadata["training_features"] = training_features(blocks, model.params_)
        # Every fused block, used or not: the record describes the data the model saw.
        # The clinical block comes from the manifest: no extraction to record.
        fused = [b for b in selection.combined_blocks if has_roi(features, b) and b != CLINICAL_ROI]
        provenance = bundle_provenance(features, fused, train_ids, radiomics_params)
        if provenance:
            model.params_.metadata["provenance"] = provenance
    if harmonizers:  # serving maps a patient of a known center as the training did
        model.params_.metadata["harmonization"] = harmonization_document(harmonizers, model.params_)
    return save_bundle(
        model.params_,
        folder,
        radiomics_params=radiomics_params,
        selection_settings=selection.settings,
        network_dir=network_dir if DL_ROI in selection.combined_blocks else None,
    )
