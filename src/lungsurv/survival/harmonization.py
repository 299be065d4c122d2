"""Multi-center feature harmonisation: every center's features put on the training centers' scale.

Scanners differ in noise, slice thickness and reconstruction, and many radiomics features shift
with them: a model trained on one center then ranks the patients of another by their scanner as
much as by their tumour. :class:`CenterHarmonizer` is the location/scale model of ComBat
(Johnson et al. 2007; Fortin et al. 2018 for radiomics) with a reference batch (Zhang et al.
2018): per feature, the values of each center are standardised with that center's own mean and
standard deviation and mapped onto the reference (training) patients' mean and standard
deviation. With one training center its features are left exactly as they are, so the model is
fitted on the values the center measured; a test center only needs its own patients' features,
never their outcomes. Empirical-Bayes pooling of the per-feature estimates (ComBat's second step)
is left out: with tens of patients per center it changes little, and it would tie one feature's
correction to every other feature's.

The fitted corrections are affine maps (``slope * x + intercept`` per center and feature); the
model bundle stores those of the features it uses (:meth:`CenterHarmonizer.to_document`) and
serving applies them with :func:`harmonize_row`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

logger = logging.getLogger(__name__)

#: What the ``harmonize`` pipeline parameter takes: the paper's ``"none"``, ``"center"``
#: (:class:`CenterHarmonizer`, location/scale) or ``"quantile"`` (:class:`QuantileHarmonizer`).
HARMONIZATIONS = ("none", "center", "quantile")


class CenterHarmonizer(BaseEstimator):
    """Reference-batch location/scale harmonisation of features by center.

    ``min_patients``: a center with fewer patients is left as it is (its mean and SD would be
    noise) and named in ``skipped_`` and a warning. Fitted: ``slope_`` and ``intercept_``
    (DataFrames, one row per harmonised center, one column per feature), ``reference_``
    (the reference centers), ``skipped_``.
    """

    def __init__(self, *, min_patients: int = 10) -> None:
        self.min_patients = min_patients

    def fit(self, X: pd.DataFrame, centers: pd.Series, *, reference: pd.Series) -> CenterHarmonizer:
        """``centers``: each row's center; ``reference``: True for the rows whose distribution
        the others are mapped onto (the training patients)."""
        split = _split_centers(X, centers, reference, self.min_patients)
        reference_values = split.values[split.reference]
        ref_mean, ref_sd = reference_values.mean(), reference_values.std(ddof=1)
        slopes, intercepts = {}, {}
        for center in split.unchanged:  # the one training center: exactly unchanged
            slopes[center] = pd.Series(1.0, index=X.columns)
            intercepts[center] = pd.Series(0.0, index=X.columns)
        for center, rows in split.mapped.items():
            mean, sd = rows.mean(), rows.std(ddof=1)
            usable = (sd > 0) & np.isfinite(sd) & (ref_sd > 0)
            slope = (ref_sd / sd).where(usable, 1.0)
            slopes[center] = slope
            intercepts[center] = ref_mean - slope * mean
        self.slope_ = pd.DataFrame(slopes).T.sort_index().reindex(columns=X.columns)
        self.intercept_ = pd.DataFrame(intercepts).T.sort_index().reindex(columns=X.columns)
        self.reference_ = split.reference_centers
        self.skipped_ = split.skipped
        return self

    def transform(self, X: pd.DataFrame, centers: pd.Series) -> pd.DataFrame:
        """Rows of a harmonised center mapped onto the reference; the others unchanged."""
        check_is_fitted(self, "slope_")
        missing = sorted(set(X.columns) - set(self.slope_.columns))
        if missing:
            raise ValueError(f"columns the harmoniser was not fitted on: {missing[:5]}")
        centers = _aligned(X, centers, "centers").astype(str)
        out = X.astype(float).copy()
        for center in self.slope_.index.intersection(pd.Index(centers.unique())):
            rows = centers == center
            out.loc[rows] = (
                out.loc[rows] * self.slope_.loc[center, X.columns]
                + self.intercept_.loc[center, X.columns]
            )
        return out

    def to_document(self, features: list[str]) -> dict[str, Any]:
        """The corrections of ``features`` as JSON-ready data for the model bundle."""
        check_is_fitted(self, "slope_")
        return {
            "kind": "affine",
            "reference_centers": list(self.reference_),
            "centers": {
                str(center): {
                    "slope": [float(v) for v in self.slope_.loc[center, features]],
                    "intercept": [float(v) for v in self.intercept_.loc[center, features]],
                }
                for center in self.slope_.index
            },
            "features": list(features),
        }


class QuantileHarmonizer(BaseEstimator):
    """Reference-batch quantile mapping of features by center.

    Where a scanner distorts a feature non-linearly (a texture feature that saturates with
    noise, say), matching the mean and SD (:class:`CenterHarmonizer`) leaves the shape of the
    distribution apart. Here, per feature, each center's values go through that center's
    empirical quantile function onto the reference (training) patients' quantiles at the same
    probabilities: ``n_quantiles`` knots from 0 to 1, linear between them, clamped at the ends
    (a center's own patients never fall outside them; a later patient of that center that does
    gets the reference's extreme value). The map is monotone, so within a center the patients'
    order is kept for every feature. Tied knots (a feature with few distinct values) are merged
    with the mean of their targets. With one training center its features are left exactly as
    they are. Fitted: ``source_`` and ``target_`` (dicts center -> DataFrame, one row per knot,
    one column per feature), ``reference_``, ``skipped_``.
    """

    def __init__(self, *, min_patients: int = 10, n_quantiles: int = 21) -> None:
        self.min_patients = min_patients
        self.n_quantiles = n_quantiles

    def fit(
        self, X: pd.DataFrame, centers: pd.Series, *, reference: pd.Series
    ) -> QuantileHarmonizer:
        """As :meth:`CenterHarmonizer.fit`."""
        if self.n_quantiles < 2:
            raise ValueError(f"n_quantiles must be >= 2, got {self.n_quantiles}")
        split = _split_centers(X, centers, reference, self.min_patients)
        probabilities = np.linspace(0.0, 1.0, self.n_quantiles)
        target = split.values[split.reference].quantile(probabilities)
        sources = {center: rows.quantile(probabilities) for center, rows in split.mapped.items()}
        targets = dict.fromkeys(sources, target)
        self.source_ = sources
        self.target_ = targets
        self.reference_ = split.reference_centers
        self.skipped_ = split.skipped
        self.columns_ = list(X.columns)
        return self

    def transform(self, X: pd.DataFrame, centers: pd.Series) -> pd.DataFrame:
        """Rows of a harmonised center mapped onto the reference; the others unchanged."""
        check_is_fitted(self, "source_")
        missing = sorted(set(X.columns) - set(self.columns_))
        if missing:
            raise ValueError(f"columns the harmoniser was not fitted on: {missing[:5]}")
        centers = _aligned(X, centers, "centers").astype(str)
        out = X.astype(float).copy()
        for center in [c for c in self.source_ if c in set(centers)]:
            rows = (centers == center).to_numpy()
            for column in X.columns:
                out.loc[rows, column] = quantile_map(
                    out.loc[rows, column].to_numpy(),
                    self.source_[center][column].to_numpy(),
                    self.target_[center][column].to_numpy(),
                )
        return out

    def to_document(self, features: list[str]) -> dict[str, Any]:
        """The maps of ``features`` as JSON-ready data for the model bundle."""
        check_is_fitted(self, "source_")
        return {
            "kind": "quantile",
            "reference_centers": list(self.reference_),
            "centers": {
                str(center): {
                    "source": [[float(v) for v in self.source_[center][f]] for f in features],
                    "target": [[float(v) for v in self.target_[center][f]] for f in features],
                }
                for center in self.source_
            },
            "features": list(features),
        }


def quantile_map(values: np.ndarray, source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """``values`` through the piecewise-linear map from ``source`` knots to ``target`` knots
    (clamped at the ends; tied source knots merged, their targets averaged; NaN stays NaN). A
    feature constant in the center (one knot) maps to the reference's median."""
    values = np.asarray(values, dtype=float)
    source, target = np.asarray(source, dtype=float), np.asarray(target, dtype=float)
    usable = np.isfinite(source) & np.isfinite(target)
    if not usable.any():
        return values.copy()
    knots, inverse = np.unique(source[usable], return_inverse=True)
    averaged = np.bincount(inverse, weights=target[usable]) / np.bincount(inverse)
    if knots.size == 1:
        mapped = np.full(values.shape, float(np.median(target[usable])))
    else:
        mapped = np.interp(values, knots, averaged)
    return np.where(np.isnan(values), np.nan, mapped)


@dataclass
class _CenterSplit:
    """A feature table's rows by center, as both harmonisers fit them."""

    values: pd.DataFrame
    reference: pd.Series
    reference_centers: list[str]
    #: The one training center when it is the whole reference: left exactly as it is.
    unchanged: list[str]
    #: Each center to map onto the reference, with its rows.
    mapped: dict[str, pd.DataFrame]
    skipped: list[str]


def _split_centers(
    X: pd.DataFrame, centers: pd.Series, reference: pd.Series, min_patients: int
) -> _CenterSplit:
    """Check the arguments and sort the centers: unchanged, mapped, or skipped (fewer than
    ``min_patients`` patients; named in a warning)."""
    if min_patients < 2:
        raise ValueError(f"min_patients must be >= 2, got {min_patients}")
    centers, reference = _aligned(X, centers, "centers"), _aligned(X, reference, "reference")
    reference = reference.astype(bool)
    if not reference.any():
        raise ValueError("harmonisation needs reference (training) rows; none were given")
    values = X.astype(float)
    ref_centers = sorted(set(centers[reference].astype(str)))
    unchanged, mapped, skipped = [], {}, []
    for center, rows in values.groupby(centers.astype(str).to_numpy()):
        if len(ref_centers) == 1 and center == ref_centers[0] and reference[rows.index].all():
            unchanged.append(center)
        elif len(rows) < min_patients:
            skipped.append(center)
        else:
            mapped[center] = rows
    if skipped:
        logger.warning(
            "harmonisation: center(s) %s have fewer than %d patients and are left as they are",
            skipped,
            min_patients,
        )
    return _CenterSplit(values, reference, ref_centers, unchanged, mapped, skipped)


def _aligned(X: pd.DataFrame, values: pd.Series, what: str) -> pd.Series:
    if not isinstance(values, pd.Series):
        raise ValueError(f"{what} must be a pandas Series indexed like X, got {type(values)}")
    missing = X.index.difference(values.index)
    if len(missing):
        raise ValueError(f"{what} has no value for {len(missing)} row(s): {list(missing[:5])}")
    return values.loc[X.index]


def harmonize_row(
    blocks: Mapping[str, pd.DataFrame], document: Mapping[str, Any], center: str | None
) -> tuple[dict[str, pd.DataFrame], list[str]]:
    """One served patient's blocks with its center's corrections from the bundle's
    ``harmonization`` document (block -> :meth:`CenterHarmonizer.to_document` or
    :meth:`QuantileHarmonizer.to_document`; a document without ``kind`` is affine); returns the
    blocks and the reasons the result cannot be trusted (no center given, or one the model was
    not harmonised for: its features stay on its own scanner's scale)."""
    if not document:
        return dict(blocks), []
    known = sorted({c for block in document.values() for c in block["centers"]})
    if center is None or center not in known:
        given = "no center was given" if center is None else "the request's center is unknown"
        return dict(blocks), [
            f"harmonisation: {given}; the model corrects the features of the centers {known}, "
            "and this patient's are left on its scanner's own scale"
        ]
    out = dict(blocks)
    for name, block_document in document.items():
        if name not in out or center not in block_document["centers"]:
            continue
        features = block_document["features"]
        correction = block_document["centers"][center]
        frame = out[name].copy()
        present = [f for f in features if f in frame.columns]
        index = [features.index(f) for f in present]
        if block_document.get("kind", "affine") == "quantile":
            for feature, i in zip(present, index, strict=True):
                frame[feature] = quantile_map(
                    frame[feature].to_numpy(dtype=float),
                    np.asarray(correction["source"][i], dtype=float),
                    np.asarray(correction["target"][i], dtype=float),
                )
        else:
            slope = np.asarray(correction["slope"], dtype=float)[index]
            intercept = np.asarray(correction["intercept"], dtype=float)[index]
            frame[present] = frame[present].astype(float) * slope + intercept
        out[name] = frame
    return out, []
