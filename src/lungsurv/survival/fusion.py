"""PCA-fuse: the paper's combined model, and the self-describing bundle that serving loads.

For each feature block (GTV radiomics, the chosen ring's radiomics, deep features) a
:class:`~lungsurv.survival.selection.CoxSignature` selects features on the training cohort. The
selected, standardised features of all blocks are concatenated; PCA keeps the fewest components
that reach 95 % cumulative variance; a Cox model (Efron ties) on the components is the combined
model, with Breslow's baseline survival; the risk cutoff is the median training risk.

Scoring goes through one numpy function, :func:`score`, both for a freshly fitted model and for a
bundle loaded from disk, so a loaded bundle reproduces the stored risks exactly.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, clone
from sklearn.utils.validation import check_is_fitted

from lungsurv.core.layout import NON_FEATURE_COLUMNS
from lungsurv.survival.cox import survival_arrays
from lungsurv.survival.metrics import c_index
from lungsurv.survival.selection import CoxSignature, assign_folds

logger = logging.getLogger(__name__)


def feature_blocks(
    features: pd.DataFrame, rois: Sequence[str], *, patients: Sequence[str] | None = None
) -> dict[str, pd.DataFrame]:
    """Wide blocks (rows: patients, columns: features) from the long radiomics table."""
    blocks = {}
    for roi in rois:
        block = features[features["roi"] == roi].set_index("patient_id")
        block = block.drop(columns=[c for c in NON_FEATURE_COLUMNS if c in block.columns])
        # A table holding several kinds of block (radiomics and deep features) leaves the other
        # kinds' columns empty in each block's rows.
        block = block.loc[:, block.notna().any(axis=0)] if len(block) else block
        if patients is not None:
            missing = sorted(set(patients) - set(block.index))
            if missing:
                raise ValueError(
                    f"block {roi!r} has no row for {len(missing)} patient(s): {missing[:5]}"
                )
            block = block.loc[list(patients)]
        blocks[roi] = block
    return blocks


@dataclass
class BlockParameters:
    """What scoring needs from one block: its selected features and how to standardise them."""

    name: str
    features: list[str]
    mean: np.ndarray
    scale: np.ndarray
    signature_coef: np.ndarray


@dataclass
class ModelParameters:
    """Everything :func:`score` needs; what the bundle stores."""

    blocks: list[BlockParameters]
    pca_mean: np.ndarray
    pca_components: np.ndarray
    explained_variance_ratio: np.ndarray
    cox_coef: np.ndarray
    baseline_times: np.ndarray
    baseline_survival: np.ndarray
    cutoff: float
    metadata: dict[str, Any] = field(default_factory=dict)


def standardised_block(block: pd.DataFrame, params: BlockParameters) -> np.ndarray:
    missing = [f for f in params.features if f not in block.columns]
    if missing:
        raise ValueError(f"block {params.name!r} lacks feature(s) {missing[:5]}")
    values = block[params.features].to_numpy(dtype=float)
    return (values - params.mean) / params.scale


def score(blocks: Mapping[str, pd.DataFrame], params: ModelParameters) -> dict[str, np.ndarray]:
    """Risk, per-block signatures and components for the rows of ``blocks``."""
    standardised = [standardised_block(blocks[b.name], b) for b in params.blocks]
    n_rows = len(next(iter(blocks.values()))) if blocks else 0
    joined = np.concatenate(standardised, axis=1) if standardised else np.zeros((n_rows, 0))
    matrix = np.asarray(params.pca_components, dtype=float)
    if matrix.size == 0:
        matrix = np.zeros((0, joined.shape[1]))
    components = (joined - params.pca_mean) @ matrix.T
    risk = components @ params.cox_coef
    signatures = {
        b.name: z @ b.signature_coef for b, z in zip(params.blocks, standardised, strict=True)
    }
    return {
        "risk": risk,
        "components": components,
        **{f"signature_{k}": v for k, v in signatures.items()},
    }


def survival_at(risk: np.ndarray, times: Sequence[float], params: ModelParameters) -> np.ndarray:
    """Predicted survival S(t | x) = S0(t) ** exp(risk), rows: patients, columns: ``times``."""
    index = np.searchsorted(params.baseline_times, np.asarray(times, dtype=float), side="right") - 1
    s0 = np.where(index >= 0, params.baseline_survival[np.maximum(index, 0)], 1.0)
    return s0[None, :] ** np.exp(risk)[:, None]


#: How :class:`FusionModel` combines the blocks: the paper's PCA over the selected features;
#: one covariate per block, its signature's score (a Cox model on the signatures); or the same
#: signature covariates with the Cox model fitted on out-of-fold signature scores (stacking).
FUSIONS: tuple[str, ...] = ("pca", "signatures", "stacked")
#: ``variance=0``: the share of PCA variance kept is chosen among these by cross-validation.
VARIANCE_CANDIDATES: tuple[float, ...] = (0.7, 0.8, 0.9, 0.95, 1.0)
VARIANCE_CV_FOLDS = 5
#: ``fusion="stacked"``: folds of the training rows whose held-out signature scores fit the Cox
#: model.
STACKING_FOLDS = 5


class FusionModel(BaseEstimator):
    """Per-block Cox signatures, PCA over their selected features, Cox on the components.

    ``fusion="signatures"`` replaces the PCA by the blocks' signature scores (each block's
    selected features with its LASSO coefficients): the Cox model then has one coefficient per
    block instead of one per component, which overfits far less on a small training cohort;
    it is stored in the same form (each "component" a signature), so scoring and serving do not
    change.

    ``fusion="stacked"`` keeps those covariates but fits their Cox weights on *out-of-fold*
    signature scores (stacked generalisation, Wolpert 1992): every block's signature is refitted
    (z-score, univariate filter, LASSO-Cox) on all folds but one of the training rows and scores
    the held-out fold. In-sample scores reward the block that overfits its training patients
    most (deep features learnt from these very outcomes); held-out scores weigh each block by
    how well it ranks patients it has not seen. The final signatures are still the ones fitted
    on all training rows; the Breslow baseline is fitted on their weighted sum.

    ``fit(blocks, y)`` takes a mapping of block name to a DataFrame (rows in the same patient
    order as ``y``). ``block_parameters``: signatures already selected on the same training rows
    (select-features' output); fusion then uses their features as they are instead of selecting
    again. Fitted attributes: ``signatures_`` (empty with ``block_parameters``), ``params_``
    (:class:`ModelParameters`), ``n_components_``, ``cutoff_``. ``prespecified``: blocks of
    pre-specified covariates (the clinical block's overall stage), fitted and refitted as a
    plain Cox model on all their features (``CoxSignature(select=False)``), never screened.
    """

    def __init__(
        self,
        *,
        variance: float = 0.95,
        alpha: float = 0.05,
        n_folds: int = 10,
        random_state: int = 0,
        block_parameters: Sequence[BlockParameters] | None = None,
        fusion: str = "pca",
        cv_scoring: str = "deviance",
        cv_rule: str = "min",
        prespecified: Sequence[str] = (),
    ) -> None:
        self.prespecified = prespecified
        self.fusion = fusion
        self.cv_scoring = cv_scoring
        self.cv_rule = cv_rule
        self.variance = variance
        self.alpha = alpha
        self.n_folds = n_folds
        self.random_state = random_state
        self.block_parameters = block_parameters

    def fit(self, blocks: Mapping[str, pd.DataFrame], y: np.ndarray) -> FusionModel:
        from sklearn.decomposition import PCA

        if not (self.variance == 0 or 0 < self.variance <= 1):
            raise ValueError(f"variance must be 0 (chosen by CV) or in (0, 1], got {self.variance}")
        if self.fusion not in FUSIONS:
            raise ValueError(f"fusion must be one of {FUSIONS}, got {self.fusion!r}")
        survival_arrays(y)
        parameters = self._block_parameters(blocks, y)
        n_selected = sum(len(p.features) for p in parameters)
        if n_selected == 0:
            warnings.warn(
                "no block selected any feature: the combined model is the null model "
                "(risk 0 for everyone, baseline survival only)",
                stacklevel=2,
            )
            self.params_ = _null_model(parameters, y)
            self.ridge_alpha_ = 0.0
            self.n_components_ = 0
            self.cutoff_ = 0.0
            return self
        variance = self.variance or self._choose_variance(blocks, y)
        joined = np.concatenate([standardised_block(blocks[p.name], p) for p in parameters], axis=1)
        if self.fusion in ("signatures", "stacked"):
            mean, axes, explained = np.zeros(joined.shape[1]), _signature_axes(parameters), None
        else:
            n_components: float | int = variance if variance < 1 else None  # type: ignore[assignment]
            pca = PCA(n_components=n_components, svd_solver="full").fit(joined)
            mean, axes, explained = pca.mean_, pca.components_, pca.explained_variance_ratio_
        components = (joined - mean) @ axes.T
        if self.fusion == "stacked":
            held_out = self._out_of_fold_signatures(blocks, y, parameters)
            cox, self.ridge_alpha_ = _fit_cox(held_out, y)
            baseline = _breslow(components @ cox.coef_, y)
        else:
            cox, self.ridge_alpha_ = _fit_cox(components, y)
            baseline = cox.baseline_survival_
        self.n_components_ = int(axes.shape[0])
        params = ModelParameters(
            blocks=parameters,
            pca_mean=mean,
            pca_components=axes,
            # Signature axes explain no PCA variance: 0, and metadata["fusion"] says why.
            explained_variance_ratio=explained if explained is not None else np.zeros(len(axes)),
            cox_coef=np.asarray(cox.coef_, dtype=float),
            baseline_times=np.asarray(baseline.x, dtype=float),
            baseline_survival=np.asarray(baseline.y, dtype=float),
            cutoff=0.0,
        )
        params.metadata["fusion"] = self.fusion
        if self.fusion == "stacked":
            params.metadata["stacking_c_index"] = self.stacking_c_index_
        if self.fusion == "pca":
            params.metadata["pca_variance"] = float(variance)
        if not self.variance and self.fusion == "pca":
            params.metadata["pca_variance_cv"] = self.variance_cv_
        if self.ridge_alpha_:
            params.metadata["cox_ridge_alpha"] = self.ridge_alpha_
        params.cutoff = float(np.median(score(blocks, params)["risk"]))
        self.params_ = params
        self.cutoff_ = params.cutoff
        return self

    def _choose_variance(self, blocks: Mapping[str, pd.DataFrame], y: np.ndarray) -> float:
        """The candidate share of variance with the best mean validation C-index over folds
        of the training rows (assigned from the patient ids, stratified by event); each fold
        refits everything the model fits (without ``block_parameters``, the signatures too).
        Ties go to the smaller share (fewer components)."""
        self.variance_cv_: dict[str, float] = {}
        if self.fusion != "pca":
            return 1.0
        event, time = survival_arrays(y)
        n_folds = min(VARIANCE_CV_FOLDS, int(event.sum()), len(event) // 2)
        if n_folds < 2:
            logger.warning(
                "%d training patients with %d deaths: too few to choose the PCA variance by "
                "cross-validation; the paper's 0.95 is kept",
                len(event),
                int(event.sum()),
            )
            return 0.95
        keys = [str(k) for k in next(iter(blocks.values())).index]
        folds = assign_folds(keys, event, n_folds, seed=self.random_state)
        for candidate in VARIANCE_CANDIDATES:
            scores = []
            for fold in range(n_folds):
                fit, held = folds != fold, folds == fold
                if held.sum() < 2 or not event[held].any() or not event[fit].any():
                    continue
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    model = clone(self).set_params(variance=candidate)
                    model.fit({n: b.loc[fit] for n, b in blocks.items()}, y[fit])
                    risk = model.predict({n: b.loc[held] for n, b in blocks.items()})
                scores.append(c_index(time=time[held], event=event[held], risk=risk))
            self.variance_cv_[f"{candidate:g}"] = float(np.mean(scores)) if scores else np.nan
        best = max(VARIANCE_CANDIDATES, key=lambda c: np.nan_to_num(self.variance_cv_[f"{c:g}"]))
        logger.info(
            "PCA variance chosen by %d-fold CV: %g (mean validation C-index %s)",
            n_folds,
            best,
            ", ".join(f"{k}: {v:.3f}" for k, v in self.variance_cv_.items()),
        )
        return float(best)

    def _signature(self, block: str, *, refuse_outcome_functions: bool = True) -> CoxSignature:
        return CoxSignature(
            select=block not in self.prespecified,
            alpha=self.alpha,
            n_folds=self.n_folds,
            cv_scoring=self.cv_scoring,
            cv_rule=self.cv_rule,
            random_state=self.random_state,
            refuse_outcome_functions=refuse_outcome_functions,
        )

    def _out_of_fold_signatures(
        self,
        blocks: Mapping[str, pd.DataFrame],
        y: np.ndarray,
        parameters: Sequence[BlockParameters],
    ) -> np.ndarray:
        """Rows: training patients; columns: the blocks with a signature, each patient scored by
        the block's signature refitted without the patient's fold (folds from the patient ids,
        seeded, stratified by event). Sets ``stacking_c_index_``: each block's held-out
        C-index."""
        event, time = survival_arrays(y)
        used = [p.name for p in parameters if p.features]
        n_folds = min(STACKING_FOLDS, int(event.sum()), len(event) // 2)
        if n_folds < 2:
            raise ValueError(
                f"fusion='stacked' needs at least 2 folds of training patients with deaths; "
                f"{len(event)} patients with {int(event.sum())} deaths give {n_folds}"
            )
        keys = [str(k) for k in blocks[used[0]].index]
        folds = assign_folds(keys, event, n_folds, seed=self.random_state)
        held_out = np.zeros((len(event), len(used)))
        for fold in range(n_folds):
            fit, held = folds != fold, folds == fold
            for column, name in enumerate(used):
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    # Outcome functions were refused on all training rows already; on a fold's
                    # subset a noise feature may order every pair by chance.
                    signature = self._signature(name, refuse_outcome_functions=False)
                    signature.fit(blocks[name].loc[fit], y[fit])
                held_out[held, column] = signature.predict(blocks[name].loc[held])
            logger.info(
                "stacked fusion: fold %d/%d refitted %d signature(s)", fold + 1, n_folds, len(used)
            )
        self.stacking_c_index_ = {
            name: float(c_index(time=time, event=event, risk=held_out[:, column]))
            if np.ptp(held_out[:, column]) > 0
            else 0.5
            for column, name in enumerate(used)
        }
        logger.info(
            "stacked fusion: held-out C-index per block %s",
            ", ".join(f"{k} {v:.3f}" for k, v in self.stacking_c_index_.items()),
        )
        return held_out

    def _block_parameters(
        self, blocks: Mapping[str, pd.DataFrame], y: np.ndarray
    ) -> list[BlockParameters]:
        """The given signatures, or each block's own signature fitted here (``signatures_``)."""
        self.signatures_: dict[str, CoxSignature] = {}
        if self.block_parameters is not None:
            parameters = list(self.block_parameters)
            missing = [p.name for p in parameters if p.name not in blocks]
            if missing:
                raise ValueError(f"block_parameters name block(s) {missing} not given to fit")
            return parameters
        parameters = []
        for name, block in blocks.items():
            signature = self._signature(name).fit(block, y)
            self.signatures_[name] = signature
            chosen = signature.selected_
            parameters.append(
                BlockParameters(
                    name=name,
                    features=[str(block.columns[i]) for i in chosen],
                    mean=signature.scaler_.mean_[chosen],
                    scale=signature.scaler_.scale_[chosen],
                    signature_coef=np.asarray(signature.coef_, dtype=float),
                )
            )
        return parameters

    def predict(self, blocks: Mapping[str, pd.DataFrame]) -> np.ndarray:
        """The combined risk (Cox linear predictor on the components)."""
        check_is_fitted(self, "params_")
        return score(blocks, self.params_)["risk"]

    def score(self, blocks: Mapping[str, pd.DataFrame], y: np.ndarray) -> float:
        """Harrell's C-index of the combined risk on ``(blocks, y)``."""
        event, time = survival_arrays(y)
        return c_index(time=time, event=event, risk=self.predict(blocks))

    def loadings(self) -> pd.DataFrame:
        """PCA loadings (rows: ``block:feature``, columns: PC1..PCk), the paper's Figure 5."""
        check_is_fitted(self, "params_")
        return loadings_frame(self.params_)


def _signature_axes(parameters: Sequence[BlockParameters]) -> np.ndarray:
    """One row per block with features: its signature's coefficients on its own features."""
    widths = [len(p.features) for p in parameters]
    axes = np.zeros((sum(w > 0 for w in widths), sum(widths)))
    row, start = 0, 0
    for parameter, width in zip(parameters, widths, strict=True):
        if width:
            axes[row, start : start + width] = np.asarray(parameter.signature_coef, float)
            row += 1
        start += width
    return axes


def loadings_frame(params: ModelParameters) -> pd.DataFrame:
    """PCA loadings of a fitted or loaded model (rows: ``block:feature``, columns: PCs)."""
    rows = [f"{b.name}:{f}" for b in params.blocks for f in b.features]
    components = np.asarray(params.pca_components, dtype=float)
    components = components.reshape(-1, len(rows)) if rows else np.zeros((0, 0))
    columns = [f"PC{i + 1}" for i in range(components.shape[0])]
    return pd.DataFrame(components.T, index=rows, columns=columns)


#: Ridge penalties tried, in order, when the plain Cox fit on the components does not converge.
RIDGE_ALPHAS: tuple[float, ...] = (0.0, 1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0)


def _fit_cox(components: np.ndarray, y: np.ndarray) -> tuple[Any, float]:
    """The paper's (unpenalised) Cox model on the components. With few patients and many
    components the likelihood can be monotone (a perfect split) and Newton's method diverges;
    then the smallest ridge penalty that converges is used, with a warning naming it."""
    from sksurv.linear_model import CoxPHSurvivalAnalysis

    for alpha in RIDGE_ALPHAS:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                cox = CoxPHSurvivalAnalysis(ties="efron", alpha=alpha).fit(components, y)
        except (ValueError, ArithmeticError, np.linalg.LinAlgError):
            continue
        if np.all(np.isfinite(cox.coef_)):
            if alpha:
                warnings.warn(
                    f"the Cox model on {components.shape[1]} components did not converge "
                    f"unpenalised ({len(y)} patients); fitted with ridge penalty {alpha:g}",
                    stacklevel=3,
                )
            return cox, alpha
    raise ValueError(
        f"the Cox model on {components.shape[1]} components did not converge even with a "
        f"ridge penalty of {RIDGE_ALPHAS[-1]:g}"
    )


def _breslow(risk: np.ndarray, y: np.ndarray) -> Any:
    """Breslow's baseline survival (a step function with ``x``, ``y``) for fixed linear
    predictors ``risk`` of the training rows."""
    from sksurv.linear_model.coxph import BreslowEstimator

    event, time = survival_arrays(y)
    return BreslowEstimator().fit(np.asarray(risk, float), event, time).baseline_survival_


def _null_model(blocks: list[BlockParameters], y: np.ndarray) -> ModelParameters:
    """No covariate: Breslow's baseline is the Nelson-Aalen estimate, every risk is 0."""
    event, time = survival_arrays(y)
    times = np.unique(time)
    deaths = np.array([np.sum(event & (time == t)) for t in times], dtype=float)
    at_risk = np.array([np.sum(time >= t) for t in times], dtype=float)
    survival = np.exp(-np.cumsum(deaths / at_risk))
    return ModelParameters(
        blocks=blocks,
        pca_mean=np.zeros(0),
        pca_components=np.zeros((0, 0)),
        explained_variance_ratio=np.zeros(0),
        cox_coef=np.zeros(0),
        baseline_times=times,
        baseline_survival=survival,
        cutoff=0.0,
    )


def contributions(
    blocks: Mapping[str, pd.DataFrame], params: ModelParameters
) -> dict[str, np.ndarray]:
    """Each block's additive share of the risk: the risk is ``(z - pca_mean) @ V.T @ beta``, a
    sum over standardised features; the shares of all blocks add up to the risk."""

    if np.asarray(params.cox_coef).size == 0:
        return {b.name: np.zeros(len(next(iter(blocks.values())))) for b in params.blocks}
    weights = np.asarray(params.pca_components, float).T @ np.asarray(params.cox_coef, float)
    shares: dict[str, np.ndarray] = {}
    start = 0
    for block in params.blocks:
        stop = start + len(block.features)
        z = standardised_block(blocks[block.name], block) - params.pca_mean[start:stop]
        shares[block.name] = z @ weights[start:stop]
        start = stop
    return shares
