"""Cox proportional-hazards helpers shared by the selectors: targets, univariate fits, likelihood.

:func:`univariate_cox` fits one Cox model per feature (Efron ties, Newton-Raphson, vectorised over
features) with Wald p-values; :func:`partial_log_likelihood` scores a linear predictor on held-out
rows (the cross-validated deviance of LASSO-Cox).
"""

from __future__ import annotations

import numpy as np
from scipy import stats


def survival_arrays(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(event as bool, time as float) from a scikit-survival structured array."""
    names = y.dtype.names
    if names is None or len(names) != 2:
        raise ValueError(
            "y must be a structured array of (event, time), e.g. sksurv.util.Surv.from_arrays"
        )
    event, time = y[names[0]].astype(bool), y[names[1]].astype(float)
    if np.any(~np.isfinite(time)) or np.any(time <= 0):
        raise ValueError("survival times must be finite and > 0")
    return event, time


def univariate_cox(
    X: np.ndarray, event: np.ndarray, time: np.ndarray, *, max_iter: int = 50, tol: float = 1e-9
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One Cox model per column of ``X`` (Efron ties), all fitted at once by Newton's method.

    Returns (coefficient, standard error, Wald p-value) per column; NaN for a column that is
    constant or holds NaN, or whose fit does not converge (monotone likelihood).
    """
    X = np.asarray(X, dtype=float)
    p = X.shape[1]
    usable = np.all(np.isfinite(X), axis=0) & (np.nanstd(X, axis=0) > 0)
    order = np.argsort(-time, kind="stable")
    Xs, es, ts = X[order][:, usable], event[order], time[order]
    Xs = Xs - Xs.mean(axis=0)  # centring does not change the fit and keeps exp() tame
    # Distinct event times, descending; the risk set of a time is every row with time >= it.
    event_times = np.unique(ts[es])[::-1]
    risk_end = np.searchsorted(-ts, -event_times, side="right")  # rows [0, risk_end) at risk
    tied = [np.nonzero(es & (ts == t))[0] for t in event_times]
    d = np.array([len(i) for i in tied])
    b = np.zeros(Xs.shape[1])
    information = np.ones_like(b)
    converged = np.zeros(Xs.shape[1], dtype=bool)
    for _ in range(max_iter):
        gradient, information = _efron_derivatives(Xs, b, risk_end, tied, d)
        step = np.where(information > 0, gradient / information, 0.0)
        step = np.clip(step, -1.0, 1.0)
        b = b + step
        converged = np.abs(step) < tol
        if converged.all():
            break
    _, information = _efron_derivatives(Xs, b, risk_end, tied, d)
    se = np.where(information > 0, 1 / np.sqrt(np.maximum(information, 1e-300)), np.nan)
    ok = converged & np.isfinite(se) & (np.abs(b) < 50)
    beta_full = np.full(p, np.nan)
    se_full = np.full(p, np.nan)
    beta_full[usable] = np.where(ok, b, np.nan)
    se_full[usable] = np.where(ok, se, np.nan)
    pvalues = 2 * stats.norm.sf(np.abs(beta_full / se_full))
    return beta_full, se_full, pvalues


def _efron_derivatives(
    X: np.ndarray, beta: np.ndarray, risk_end: np.ndarray, tied: list[np.ndarray], d: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Score and information of the Efron partial likelihood, per column (independent fits)."""
    weights = np.exp(X * beta)
    s0 = np.cumsum(weights, axis=0)
    s1 = np.cumsum(weights * X, axis=0)
    s2 = np.cumsum(weights * X * X, axis=0)
    gradient = np.zeros(X.shape[1])
    information = np.zeros(X.shape[1])
    for k, rows in enumerate(tied):
        end = risk_end[k] - 1
        w_d, x_d = weights[rows], X[rows]
        d0, d1, d2 = w_d.sum(axis=0), (w_d * x_d).sum(axis=0), (w_d * x_d * x_d).sum(axis=0)
        gradient += x_d.sum(axis=0)
        for ell in range(d[k]):
            f = ell / d[k]
            den = s0[end] - f * d0
            m1 = (s1[end] - f * d1) / den
            m2 = (s2[end] - f * d2) / den
            gradient -= m1
            information += m2 - m1 * m1
    return gradient, information


def partial_log_likelihood(event: np.ndarray, time: np.ndarray, eta: np.ndarray) -> np.ndarray:
    """Cox partial log-likelihood (Breslow ties) of linear predictors ``eta`` (n, k), per column."""
    eta = np.asarray(eta, dtype=float).reshape(len(time), -1)
    order = np.argsort(-time, kind="stable")
    eta_sorted, time_sorted, event_sorted = eta[order], time[order], event[order]
    log_cumulative = np.logaddexp.accumulate(eta_sorted, axis=0)
    # The risk set of a time is everyone followed at least as long, ties included.
    last_tied = np.searchsorted(-time_sorted, -time_sorted, side="right") - 1
    log_risk = log_cumulative[last_tied]
    return np.sum((eta_sorted - log_risk)[event_sorted], axis=0)
