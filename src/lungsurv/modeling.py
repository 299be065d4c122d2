"""From the cohort's feature table to a fitted combined model, without touching the test cohort.

:func:`split_cohort` marks the training patients (the paper trains on one center and tests on
the others); :func:`fit_combined` fits the :class:`~lungsurv.fusion.FusionModel` on the training
rows only and scores every patient. Everything fitted (scalers, filters, LASSO, PCA, Cox, cutoff)
sees training rows only; the tests prove it by perturbing the test rows.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sksurv.util import Surv

from lungsurv.fusion import FusionModel, feature_blocks, score

DEFAULT_TRAIN_CENTERS: tuple[str, ...] = ("MAASTRO",)


def split_cohort(
    manifest: pd.DataFrame,
    *,
    train_centers: Sequence[str] = DEFAULT_TRAIN_CENTERS,
    split_column: str = "",
    test_fraction: float = 0.0,
    seed: int = 0,
) -> pd.Series:
    """A boolean Series (index: patient_id), True for training patients.

    Precedence: ``split_column`` (values ``train``/``test``) when given; else a seeded split
    stratified by event when ``test_fraction`` > 0; else ``train_centers``.
    """
    ids = manifest["patient_id"].astype(str)
    if split_column:
        if split_column not in manifest.columns:
            raise ValueError(f"split column {split_column!r} is not in the manifest")
        values = manifest[split_column].astype(str).str.lower()
        bad = sorted(set(values) - {"train", "test"})
        if bad:
            raise ValueError(f"split column {split_column!r} holds {bad}; expected train/test")
        is_train = values == "train"
    elif test_fraction > 0:
        if not 0 < test_fraction < 1:
            raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
        from sklearn.model_selection import train_test_split

        train, _ = train_test_split(
            np.arange(len(manifest)),
            test_size=test_fraction,
            random_state=seed,
            stratify=manifest["event"].astype(int),
        )
        is_train = pd.Series(np.isin(np.arange(len(manifest)), train))
    else:
        known = set(manifest["center"].astype(str))
        missing = sorted(set(train_centers) - known)
        if missing:
            raise ValueError(
                f"training center(s) {missing} not in the cohort (it has {sorted(known)})"
            )
        is_train = manifest["center"].astype(str).isin(list(train_centers))
    result = pd.Series(np.asarray(is_train, dtype=bool), index=ids.to_numpy(), name="is_train")
    if not result.any() or result.all():
        raise ValueError(
            f"the split leaves {int(result.sum())} training and {int((~result).sum())} test "
            "patient(s); both must be non-empty"
        )
    return result


def ring_rois(features: pd.DataFrame) -> list[str]:
    """The ring ROIs of a feature table, by distance (``ring_3mm`` before ``ring_12mm``)."""
    rings = {str(r) for r in features["roi"].unique() if str(r).startswith("ring_")}
    return sorted(rings, key=lambda r: float(r.removeprefix("ring_").removesuffix("mm")))


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
    extra_blocks: dict[str, pd.DataFrame] | None = None,
) -> _Cohort:
    """Patients with a row for every ROI and extra block (the others are named in a warning),
    their wide blocks, and the survival target of the training patients."""
    outcomes = manifest.set_index(manifest["patient_id"].astype(str))[["time_days", "event"]]
    complete = set(outcomes.index)
    for roi in rois:
        complete &= set(features.loc[features["roi"] == roi, "patient_id"].astype(str))
    for block in (extra_blocks or {}).values():
        complete &= set(block.index.astype(str))
    dropped = sorted(set(outcomes.index) - complete)
    if dropped:
        warnings.warn(
            f"{len(dropped)} patient(s) without every feature block are left out: {dropped[:5]}",
            stacklevel=3,
        )
    patients = [p for p in outcomes.index if p in complete]
    train = [p for p in patients if is_train.get(p, False)]
    blocks = feature_blocks(features, list(rois), patients=patients)
    for name, block in (extra_blocks or {}).items():
        blocks[name] = block.loc[patients]
    y = Surv.from_arrays(
        outcomes.loc[train, "event"].astype(bool).to_numpy(),
        outcomes.loc[train, "time_days"].astype(float).to_numpy(),
    )
    return _Cohort(outcomes, patients, train, blocks, y)


def fit_combined(
    features: pd.DataFrame,
    manifest: pd.DataFrame,
    is_train: pd.Series,
    *,
    ring: str = "ring_6mm",
    extra_blocks: dict[str, pd.DataFrame] | None = None,
    variance: float = 0.95,
    alpha: float = 0.05,
    n_folds: int = 10,
    random_state: int = 0,
) -> tuple[FusionModel, pd.DataFrame]:
    """Fit the combined model on the training patients; return it and every patient's scores.

    Patients lacking a row for the GTV or ``ring`` (failed upstream) are left out, and listed in
    a warning. The scores table has ``patient_id, split, time_days, event, risk, risk_group`` and
    one ``signature_<block>`` column per block. ``ring="auto"`` picks the ring whose signature
    has the highest training C-index (:func:`choose_ring`), recorded in the model's metadata.
    """
    chosen_automatically = ring == "auto"
    if chosen_automatically:
        rings = ring_rois(features)
        if not rings:
            raise ValueError("ring='auto' but the feature table has no ring ROI")
        _, signature_scores = fit_signatures(
            features,
            manifest,
            is_train,
            rings=rings,
            alpha=alpha,
            n_folds=n_folds,
            random_state=random_state,
        )
        ring = choose_ring(signature_scores, manifest, rings)
    cohort = _assemble(features, manifest, is_train, ["gtv", ring], extra_blocks)
    patients, outcomes = cohort.patients, cohort.outcomes
    train_blocks = {name: block.loc[cohort.train] for name, block in cohort.blocks.items()}
    model = FusionModel(
        variance=variance, alpha=alpha, n_folds=n_folds, random_state=random_state
    ).fit(train_blocks, cohort.y)
    model.params_.metadata.update({"ring": ring, "ring_chosen_automatically": chosen_automatically})
    scored = score(cohort.blocks, model.params_)
    table = pd.DataFrame(
        {
            "patient_id": patients,
            "split": cohort.split_column(),
            "time_days": outcomes.loc[patients, "time_days"].astype(float).to_numpy(),
            "event": outcomes.loc[patients, "event"].astype(int).to_numpy(),
            "risk": scored["risk"],
        }
    )
    table["risk_group"] = np.where(table["risk"] > model.cutoff_, "high", "low")
    for key, values in scored.items():
        if key.startswith("signature_"):
            table[key] = values
    return model, table


def signature_name(rois: Sequence[str]) -> str:
    """The paper's names: ``Rad`` (GTV), ``Rad_6mm`` (a ring), ``Rad+Rad_6mm``, ``DL``."""
    parts = []
    for roi in rois:
        if roi == "gtv":
            parts.append("Rad")
        elif roi.startswith("ring_"):
            parts.append("Rad_" + roi.removeprefix("ring_"))
        else:
            parts.append(roi.upper() if roi == "dl" else roi)
    return "+".join(parts)


def fit_signatures(
    features: pd.DataFrame,
    manifest: pd.DataFrame,
    is_train: pd.Series,
    *,
    rings: Sequence[str] = ("ring_3mm", "ring_6mm", "ring_9mm"),
    alpha: float = 0.05,
    n_folds: int = 10,
    random_state: int = 0,
) -> tuple[dict[str, Any], pd.DataFrame]:
    """The paper's radiomics signatures, each fitted on the training patients only: ``Rad``,
    ``Rad_<d>mm`` per ring and ``Rad+Rad_<d>mm`` (GTV and ring features in one signature).

    Returns the fitted :class:`~lungsurv.selection.CoxSignature` objects by name and a table of
    every patient's signature scores (``patient_id``, ``split``, one column per signature).
    """
    from lungsurv.selection import CoxSignature

    cohort = _assemble(features, manifest, is_train, ["gtv", *rings])
    combos: list[list[str]] = [["gtv"]] + [[r] for r in rings] + [["gtv", r] for r in rings]
    fitted: dict[str, Any] = {}
    table = pd.DataFrame({"patient_id": cohort.patients, "split": cohort.split_column()})
    for combo in combos:
        joined = pd.concat([cohort.blocks[r].add_prefix(f"{r}:") for r in combo], axis=1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            signature = CoxSignature(alpha=alpha, n_folds=n_folds, random_state=random_state)
            signature.fit(joined.loc[cohort.train], cohort.y)
        name = signature_name(combo)
        fitted[name] = signature
        table[name] = signature.predict(joined)
    return fitted, table


def choose_ring(
    signature_scores: pd.DataFrame, manifest: pd.DataFrame, rings: Sequence[str]
) -> str:
    """The ring whose signature has the highest training C-index (ties: the smaller distance)."""
    from lungsurv.evaluation import c_index

    outcomes = manifest.set_index(manifest["patient_id"].astype(str))
    train = signature_scores[signature_scores["split"] == "train"]
    time = outcomes.loc[train["patient_id"], "time_days"].to_numpy(float)
    event = outcomes.loc[train["patient_id"], "event"].to_numpy(bool)
    scores = {}
    for ring in rings:
        column = signature_name([ring])
        risk = train[column].to_numpy()
        scores[ring] = 0.5 if np.ptp(risk) == 0 else c_index(time, event, risk)
    return max(rings, key=lambda r: (round(scores[r], 12), -rings.index(r)))
