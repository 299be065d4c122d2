"""Feature selection for survival (the paper's select-features stage), sklearn-shaped.

The paper's three steps, each fitted on the training cohort only:

1. z-score standardisation (:class:`sklearn.preprocessing.StandardScaler`);
2. :class:`UnivariateCoxSelector`: a Cox model per feature, keeping those with Wald p < 0.05;
3. :class:`LassoCoxSelector`: LASSO-Cox (scikit-survival's ``CoxnetSurvivalAnalysis`` with
   ``l1_ratio=1``), the penalty chosen by 10-fold cross-validation, keeping non-zero coefficients.
   The paper does not say which CV criterion; the default is glmnet's cross-validated partial
   likelihood at its minimum (``lambda.min``); ``scoring``/``rule`` choose others (measured in
   docs/stages/5-select-features.md).

Survival targets are scikit-survival structured arrays (``sksurv.util.Surv``).

Degenerate cases, each with a test:

* constant or all-NaN columns are never selected (their p-value is NaN); NaN elsewhere in a
  column is an error, since a Cox model cannot use it (impute before selecting);
* no feature passes the univariate filter: the selector keeps none, and a signature built on
  it predicts 0 for everyone (a C-index of 0.5), with a warning; nothing is silently promoted;
* fewer events than folds: the cross-validation uses as many folds as there are events (at least
  2), with a warning; with fewer than 2 events LASSO is skipped and every univariate survivor kept;
* tied times: Efron's method, as in lifelines (and the paper's R/Python tools).
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.feature_selection import SelectorMixin
from sklearn.utils.validation import check_is_fitted

from lungsurv.survival.cox import partial_log_likelihood, survival_arrays, univariate_cox
from lungsurv.survival.metrics import c_index


class UnivariateCoxSelector(SelectorMixin, BaseEstimator):
    """Keep the features whose univariate Cox Wald p-value is below ``alpha``.

    Fitted attributes: ``coef_``, ``se_``, ``pvalues_`` (one per input feature, NaN for constant
    or NaN columns), ``n_features_in_``.
    """

    def __init__(self, *, alpha: float = 0.05) -> None:
        self.alpha = alpha

    def fit(self, X: Any, y: np.ndarray) -> UnivariateCoxSelector:
        if not 0 < self.alpha <= 1:
            raise ValueError(f"alpha must be in (0, 1], got {self.alpha}")
        names = [str(c) for c in getattr(X, "columns", [])]
        X = np.asarray(X, dtype=float)
        event, time = survival_arrays(y)
        if X.ndim != 2 or len(X) != len(time):
            raise ValueError(f"X has shape {X.shape}, y has {len(time)} rows")
        refuse_missing(X, names, "X")
        self.n_features_in_ = X.shape[1]
        self.coef_, self.se_, self.pvalues_ = univariate_cox(X, event, time)
        if not np.any(self.pvalues_ < self.alpha):
            warnings.warn(
                f"no feature has a univariate Cox p-value below {self.alpha}", stacklevel=2
            )
        return self

    def _get_support_mask(self) -> np.ndarray:
        check_is_fitted(self, "pvalues_")
        with np.errstate(invalid="ignore"):
            return np.nan_to_num(self.pvalues_, nan=1.0) < self.alpha


class LassoCoxSelector(SelectorMixin, BaseEstimator):
    """LASSO-Cox (``CoxnetSurvivalAnalysis``, ``l1_ratio=1``) with the penalty chosen by k-fold
    cross-validated Harrell's C-index; keeps the features with non-zero coefficients.

    Folds are stratified by event. ``scoring``: ``"deviance"`` (default) is the cross-validated
    partial log-likelihood of Verweij and van Houwelingen (1993), glmnet's ``cv.glmnet`` default
    for Cox models; ``"c_index"`` is the mean validation Harrell's C-index. ``rule``: ``"min"``
    (default) takes the penalty with the best mean score, glmnet's ``lambda.min``; ``"1se"`` the
    largest penalty whose score is within one standard error of the best, glmnet's
    ``lambda.1se``, which keeps fewer noise features on strong signals but selects nothing in a
    quarter of the folds on weak ones like real Lung1's (``bench/lasso_defaults.py``, measured
    in docs/stages/5-select-features.md). Ties go to the larger,
    sparser penalty. Fitted attributes: ``alphas_``, ``cv_scores_`` (higher is better),
    ``cv_se_``, ``alpha_``, ``coef_``, ``n_splits_``, ``n_features_in_``.
    """

    def __init__(
        self,
        *,
        n_folds: int = 10,
        n_alphas: int = 50,
        alpha_min_ratio: float = 0.01,
        scoring: str = "deviance",
        rule: str = "min",
        random_state: int = 0,
    ) -> None:
        self.n_folds = n_folds
        self.n_alphas = n_alphas
        self.alpha_min_ratio = alpha_min_ratio
        self.scoring = scoring
        self.rule = rule
        self.random_state = random_state

    def fit(self, X: Any, y: np.ndarray) -> LassoCoxSelector:
        from sksurv.linear_model import CoxnetSurvivalAnalysis

        if self.n_folds < 2:
            raise ValueError(f"n_folds must be >= 2, got {self.n_folds}")
        if self.scoring not in CV_SCORINGS:
            raise ValueError(f"scoring must be one of {CV_SCORINGS}, got {self.scoring!r}")
        if self.rule not in CV_RULES:
            raise ValueError(f"rule must be one of {CV_RULES}, got {self.rule!r}")
        keys = _row_keys(X)
        X = np.asarray(X, dtype=float)
        event, _ = survival_arrays(y)
        self.n_features_in_ = X.shape[1]
        n_events = int(event.sum())
        if n_events < 2 or X.shape[1] == 0:
            warnings.warn(
                f"{n_events} event(s): LASSO-Cox skipped, every input feature kept", stacklevel=2
            )
            self.alphas_ = np.array([])
            self.cv_scores_ = np.array([])
            self.cv_se_ = np.array([])
            self.alpha_ = np.nan
            self.coef_ = np.ones(X.shape[1]) * np.nan
            self.n_splits_ = 0
            return self
        n_splits = max(2, min(self.n_folds, n_events))
        if n_splits < self.n_folds:
            warnings.warn(
                f"{n_events} events: {n_splits}-fold instead of {self.n_folds}-fold "
                "cross-validation",
                stacklevel=2,
            )
        path = CoxnetSurvivalAnalysis(
            l1_ratio=1.0, n_alphas=self.n_alphas, alpha_min_ratio=self.alpha_min_ratio
        ).fit(X, y)
        alphas = path.alphas_
        scores = np.full((n_splits, len(alphas)), np.nan)
        fold = assign_folds(keys, event, n_splits, seed=self.random_state)
        for k in range(n_splits):
            train, test = np.flatnonzero(fold != k), np.flatnonzero(fold == k)
            scores[k] = _fold_scores(X, y, train, test, alphas, self.scoring)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # an alpha no fold could score
            mean = np.nanmean(scores, axis=0)
            se = np.nanstd(scores, axis=0, ddof=1) / np.sqrt(np.sum(np.isfinite(scores), axis=0))
        best = _choose_penalty(mean, se, self.rule)
        self.alphas_, self.cv_scores_, self.cv_se_ = alphas, mean, se
        self.alpha_ = float(alphas[best])
        self.coef_ = _coefficients_at(path, self.alpha_)
        self.n_splits_ = n_splits
        return self

    def _get_support_mask(self) -> np.ndarray:
        check_is_fitted(self, "coef_")
        if np.all(np.isnan(self.coef_)):
            return np.ones(self.n_features_in_, dtype=bool)
        return self.coef_ != 0


def refuse_missing(values: np.ndarray, names: Sequence[str], what: str) -> None:
    """The one NaN policy of every layer: a column with some values missing is an error that
    names it (impute on the training rows, or drop it, before); an all-NaN column is a feature
    nobody could compute and is never selected."""
    partial = np.isnan(values).any(axis=0) & ~np.isnan(values).all(axis=0)
    if partial.any():
        columns = [str(names[i]) if len(names) else str(i) for i in np.flatnonzero(partial)]
        raise ValueError(
            f"{what} has missing values in {len(columns)} column(s): {columns[:8]}"
            f"{' ...' if len(columns) > 8 else ''}; impute them on the training rows or drop them"
        )


def outcome_functions(
    values: np.ndarray, y: np.ndarray, *, min_pairs: int = 100, chunk: int = 256
) -> np.ndarray:
    """Columns that are a function of the outcome (``time > 730``, the event flag, the time
    itself): among the comparable pairs where the column differs, it orders every pair the same
    way, as no image feature measured on 20 or more patients does. Indices of such columns."""
    event, time = survival_arrays(y)
    first, second = np.nonzero(event[:, None] & (time[:, None] < time[None, :]))
    flagged = []
    for start in range(0, values.shape[1], chunk):
        block = values[:, start : start + chunk]
        difference = block[first] - block[second]
        higher = np.sum(difference > 0, axis=0)
        lower = np.sum(difference < 0, axis=0)
        informative = higher + lower
        perfect = (informative >= min_pairs) & ((higher == 0) | (lower == 0))
        flagged.extend(start + np.flatnonzero(perfect))
    return np.asarray(flagged, dtype=int)


def _row_keys(X: Any) -> list[str]:
    """What identifies each row whatever the table's order: a DataFrame's index (patient ids),
    else the row's values."""
    if isinstance(X, pd.DataFrame):
        return [str(v) for v in X.index]
    return [np.asarray(row, dtype=float).tobytes().hex() for row in np.asarray(X)]


def assign_folds(keys: Sequence[str], event: np.ndarray, n_splits: int, *, seed: int) -> np.ndarray:
    """The cross-validation fold of each row, from a seeded hash of its key (a patient id):
    the same patients get the same folds whatever the order of the rows. Stratified by event:
    the events, then the censored rows, are dealt to the folds in turn in hash order."""
    rank = [hashlib.blake2b(f"{seed}:{k}".encode(), digest_size=8).digest() for k in keys]
    fold = np.empty(len(keys), dtype=int)
    dealt = 0
    for rows in (np.flatnonzero(event), np.flatnonzero(~np.asarray(event, bool))):
        rows = rows[np.argsort([rank[i] for i in rows], kind="stable")]
        fold[rows] = (dealt + np.arange(len(rows))) % n_splits
        dealt += len(rows)
    return fold


CV_SCORINGS: tuple[str, ...] = ("deviance", "c_index")
CV_RULES: tuple[str, ...] = ("1se", "min")


def _choose_penalty(mean: np.ndarray, se: np.ndarray, rule: str) -> int:
    """Index of the chosen penalty; ``alphas`` run from large (sparse) to small."""
    if not np.any(np.isfinite(mean)):
        return 0
    best = int(np.nanargmax(np.round(mean, 12)))  # the first, sparsest, on ties
    if rule == "min":
        return best
    threshold = mean[best] - np.nan_to_num(se[best])
    return int(np.flatnonzero(np.round(mean, 12) >= np.round(threshold, 12))[0])


def _fold_scores(
    X: np.ndarray,
    y: np.ndarray,
    train: np.ndarray,
    test: np.ndarray,
    alphas: np.ndarray,
    scoring: str,
) -> np.ndarray:
    from sksurv.linear_model import CoxnetSurvivalAnalysis
    from sksurv.metrics import concordance_index_censored

    event, time = survival_arrays(y[test])
    result = np.full(len(alphas), np.nan)
    if not event.any():
        return result
    try:
        model = CoxnetSurvivalAnalysis(l1_ratio=1.0, alphas=alphas).fit(X[train], y[train])
    except ArithmeticError:
        return result
    fitted = len(model.alphas_)
    if scoring == "deviance":
        # Verweij and van Houwelingen: l(beta_-k; all patients) - l(beta_-k; training folds).
        all_event, all_time = survival_arrays(y)
        train_event, train_time = survival_arrays(y[train])
        coef = model.coef_[:, :fitted]
        result[:fitted] = partial_log_likelihood(
            all_event, all_time, X @ coef
        ) - partial_log_likelihood(train_event, train_time, X[train] @ coef)
        return result
    for j in range(fitted):
        risk = X[test] @ model.coef_[:, j]
        if np.ptp(risk) == 0:
            result[j] = 0.5  # an empty model ranks no one
            continue
        result[j] = concordance_index_censored(event, time, risk)[0]
    return result


def _coefficients_at(path: Any, alpha: float) -> np.ndarray:
    index = int(np.argmin(np.abs(path.alphas_ - alpha)))
    return np.asarray(path.coef_[:, index], dtype=float)


class CoxSignature(BaseEstimator):
    """The paper's signature: z-score, univariate Cox filter, LASSO-Cox; the risk is the linear
    predictor of the selected (standardised) features with their LASSO coefficients.

    Fitted attributes: ``scaler_``, ``univariate_``, ``lasso_``, ``selected_`` (indices into
    the input columns), ``selected_features_`` (their names when X is a DataFrame), ``coef_``.
    With no feature selected the signature predicts 0 for every patient. Candidate features
    with missing values, and (``refuse_outcome_functions``) features that are a function of the
    outcome, are refused by name; deep features learnt from these very outcomes are exempt.

    ``select=False`` is for pre-specified covariates (the overall stage of a clinical block):
    nothing is screened or shrunk; every feature is kept with the coefficients of an
    unpenalised Cox model (Efron ties) on the z-scores. The univariate statistics are still
    fitted, for the selection table.
    """

    def __init__(
        self,
        *,
        alpha: float = 0.05,
        n_folds: int = 10,
        n_alphas: int = 50,
        cv_scoring: str = "deviance",
        cv_rule: str = "min",
        random_state: int = 0,
        refuse_outcome_functions: bool = True,
        select: bool = True,
    ) -> None:
        self.alpha = alpha
        self.select = select
        self.n_folds = n_folds
        self.n_alphas = n_alphas
        self.cv_scoring = cv_scoring
        self.cv_rule = cv_rule
        self.random_state = random_state
        self.refuse_outcome_functions = refuse_outcome_functions

    def fit(self, X: Any, y: np.ndarray) -> CoxSignature:
        from sklearn.preprocessing import StandardScaler

        names = list(getattr(X, "columns", []))
        values = np.asarray(X, dtype=float)
        self.n_features_in_ = values.shape[1]
        if names:
            self.feature_names_in_ = np.asarray(names, dtype=object)
        refuse_missing(values, names, "X")
        leaks = outcome_functions(values, y) if self.refuse_outcome_functions else np.array([])
        if leaks.size:
            leaked = [names[i] if names else str(i) for i in leaks]
            raise ValueError(
                f"{len(leaked)} candidate feature(s) are functions of the outcome (they order "
                f"every comparable pair the same way): {leaked[:8]}; remove them"
            )
        self.scaler_ = StandardScaler().fit(values)
        z = self.scaler_.transform(values)  # all-NaN columns stay NaN: never selected
        with warnings.catch_warnings():
            # Pre-specified covariates are kept whatever their p-value: no warning about it.
            warnings.simplefilter("default" if self.select else "ignore")
            self.univariate_ = UnivariateCoxSelector(alpha=self.alpha).fit(z, y)
        if not self.select:
            self.lasso_ = None
            return self._fit_prespecified(z, y, names)
        kept = np.flatnonzero(self.univariate_.get_support())
        self.lasso_ = LassoCoxSelector(
            n_folds=self.n_folds,
            n_alphas=self.n_alphas,
            scoring=self.cv_scoring,
            rule=self.cv_rule,
            random_state=self.random_state,
        )
        if kept.size:
            index = X.index if isinstance(X, pd.DataFrame) else None
            self.lasso_.fit(
                pd.DataFrame(z[:, kept], index=index) if index is not None else z[:, kept], y
            )
            coef = self.lasso_.coef_
            if np.all(np.isnan(coef)):
                coef = self.univariate_.coef_[kept]
            chosen = coef != 0
            self.selected_, self.coef_ = kept[chosen], coef[chosen]
        else:
            self.selected_, self.coef_ = np.array([], dtype=int), np.array([])
        self.selected_features_ = [names[i] for i in self.selected_] if names else []
        return self

    def _fit_prespecified(self, z: np.ndarray, y: np.ndarray, names: list[Any]) -> CoxSignature:
        from sksurv.linear_model import CoxPHSurvivalAnalysis

        usable = np.flatnonzero(np.isfinite(z).all(axis=0) & (np.ptp(z, axis=0) > 0))
        if usable.size < z.shape[1]:
            lacking = [
                names[i] if names else str(i) for i in np.setdiff1d(np.arange(z.shape[1]), usable)
            ]
            raise ValueError(
                f"pre-specified covariate(s) {lacking} are constant on the training rows"
            )
        cox = CoxPHSurvivalAnalysis(ties="efron").fit(z, y)
        self.selected_, self.coef_ = usable, np.asarray(cox.coef_, dtype=float)
        self.selected_features_ = [names[i] for i in self.selected_] if names else []
        return self

    def predict(self, X: Any) -> np.ndarray:
        """The signature's risk score (Cox linear predictor) for each row."""
        check_is_fitted(self, "coef_")
        values = np.asarray(X, dtype=float)
        if values.shape[1] != self.n_features_in_:
            raise ValueError(f"X has {values.shape[1]} features, expected {self.n_features_in_}")
        if not self.selected_.size:
            return np.zeros(len(values))
        z = self.scaler_.transform(values)[:, self.selected_]
        missing = np.isnan(z).any(axis=0)
        if missing.any():
            names = self.selected_features_ or [str(i) for i in self.selected_]
            raise ValueError(
                f"X has missing values in selected feature(s) "
                f"{[names[i] for i in np.flatnonzero(missing)][:8]}; a score needs them all"
            )
        return z @ self.coef_

    def score(self, X: Any, y: np.ndarray) -> float:
        """Harrell's C-index of the signature's risk on ``(X, y)``, as scikit-survival's
        estimators score."""
        event, time = survival_arrays(y)
        return c_index(time=time, event=event, risk=self.predict(X))
