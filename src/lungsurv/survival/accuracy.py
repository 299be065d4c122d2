"""Prediction error and calibration of survival predictions, beyond the paper's discrimination.

* :func:`prediction_error`: the Brier score at each horizon and the integrated Brier score (IBS)
  up to the last horizon (scikit-survival's ``brier_score`` and ``integrated_brier_score``, with
  inverse-probability-of-censoring weights from the training cohort), beside the same scores of
  the null model (the training cohort's Kaplan-Meier curve for everyone), with percentile
  bootstrap intervals over the evaluated patients.
* :func:`calibration_measures`: the calibration slope (the Cox coefficient of the linear predictor
  refitted on the cohort; 1 is ideal, below 1 says the risks spread too widely, as an overfitted
  model's do) and the calibration intercept at each horizon (calibration-in-the-large,
  ``log(observed / expected deaths)`` with the expected count from the model's cumulative
  hazard up to the horizon, Crowson et al. 2016's Poisson intercept with the slope fixed at 1; 0
  is ideal, above 0 says the model predicts too few deaths), with percentile bootstrap intervals.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

from lungsurv.survival.cox import univariate_cox
from lungsurv.survival.metrics import percentile_interval

#: ``survival(rows, times)``: predicted S(t | x) of the patients ``rows`` (indices into the
#: evaluated cohort) at ``times``, shape (len(rows), len(times)).
SurvivalFunction = Callable[[np.ndarray, np.ndarray], np.ndarray]

#: Time points of the integrated Brier score's grid.
IBS_GRID_POINTS = 60

_COLUMNS = ["measure", "horizon_days", "estimate", "low", "high", "null_model"]


def _surv(event: np.ndarray, time: np.ndarray) -> np.ndarray:
    from sksurv.util import Surv

    return Surv.from_arrays(np.asarray(event, bool), np.asarray(time, float))


def _km_survival(time: np.ndarray, event: np.ndarray, at: np.ndarray) -> np.ndarray:
    from sksurv.nonparametric import kaplan_meier_estimator

    times, survival = kaplan_meier_estimator(np.asarray(event, bool), np.asarray(time, float))
    index = np.searchsorted(times, at, side="right") - 1
    return np.where(index >= 0, survival[np.maximum(index, 0)], 1.0)


def prediction_error(
    *,
    train_time: np.ndarray,
    train_event: np.ndarray,
    time: np.ndarray,
    event: np.ndarray,
    survival: SurvivalFunction,
    horizons: Sequence[float],
    n_resamples: int = 1000,
    seed: int = 0,
) -> pd.DataFrame:
    """Brier score at each horizon and the IBS up to the last horizon, for the cohort
    (``time``, ``event``) whose predicted survival ``survival`` gives; censoring weights from the
    training cohort. A horizon outside the cohort's follow-up has NaN. Columns: measure
    (``brier``/``ibs``), horizon_days, estimate, low, high, null_model."""
    from sksurv.metrics import brier_score, integrated_brier_score

    train = _surv(train_event, train_time)
    time, event = np.asarray(time, float).copy(), np.asarray(event, bool).copy()
    # IPCW weights are not defined past the training cohort's last time (as for the AUC).
    limit = float(np.max(train_time))
    beyond = time >= limit
    time[beyond], event[beyond] = np.nextafter(limit, 0.0), False
    horizons = np.asarray(horizons, float)
    rows = np.arange(len(time))
    null_curve = _km_survival(
        np.asarray(train_time, float), np.asarray(train_event, bool), horizons
    )

    def scores(sample: np.ndarray) -> tuple[np.ndarray, float, np.ndarray, float]:
        t, e = time[sample], event[sample]
        inside = (horizons >= t.min()) & (horizons < t.max()) & (horizons < limit)
        brier = np.full(horizons.size, np.nan)
        null = np.full(horizons.size, np.nan)
        if not inside.any() or t.min() >= horizons[inside].max():
            return brier, float("nan"), null, float("nan")
        test = _surv(e, t)
        at = horizons[inside]
        predicted = survival(sample, at)
        brier[inside] = brier_score(train, test, predicted, at)[1]
        null[inside] = brier_score(train, test, np.tile(null_curve[inside], (t.size, 1)), at)[1]
        grid = np.linspace(t.min(), min(at.max(), np.nextafter(t.max(), 0.0)), IBS_GRID_POINTS)
        if grid[-1] <= grid[0]:
            return brier, float("nan"), null, float("nan")
        ibs = float(integrated_brier_score(train, test, survival(sample, grid), grid))
        null_grid = np.tile(_km_survival(train_time, train_event, grid), (t.size, 1))
        ibs_null = float(integrated_brier_score(train, test, null_grid, grid))
        return brier, ibs, null, ibs_null

    brier, ibs, null, ibs_null = scores(rows)
    rng = np.random.default_rng(seed)
    draws = [scores(rng.choice(rows, rows.size)) for _ in range(n_resamples)]
    result = []
    for k, horizon in enumerate(horizons):
        low, high = (
            percentile_interval([d[0][k] for d in draws])
            if np.isfinite(brier[k])
            else (np.nan,) * 2
        )
        result.append(("brier", int(horizon), float(brier[k]), low, high, float(null[k])))
    low, high = percentile_interval([d[1] for d in draws]) if np.isfinite(ibs) else (np.nan, np.nan)
    result.append(("ibs", int(horizons.max()), ibs, low, high, ibs_null))
    return pd.DataFrame(result, columns=_COLUMNS)


def calibration_slope(*, time: np.ndarray, event: np.ndarray, risk: np.ndarray) -> float:
    """The Cox coefficient of the linear predictor ``risk`` refitted on this cohort (1: ideal);
    NaN when it cannot be fitted (a constant risk, no death)."""
    time, event = np.asarray(time, float), np.asarray(event, bool)
    if not event.any():
        return float("nan")
    coefficient, _, _ = univariate_cox(np.asarray(risk, float)[:, None], event, time)
    return float(coefficient[0])


def calibration_intercept(
    *, time: np.ndarray, event: np.ndarray, cumulative_hazard: np.ndarray, horizon: float
) -> float:
    """Calibration-in-the-large up to ``horizon``: ``log(observed / expected)`` deaths, where
    ``cumulative_hazard`` is each patient's predicted H(min(time, horizon) | x) (0: ideal)."""
    time, event = np.asarray(time, float), np.asarray(event, bool)
    observed = float(np.sum(event & (time <= horizon)))
    expected = float(np.sum(cumulative_hazard))
    if observed == 0 or expected <= 0:
        return float("nan")
    return float(np.log(observed / expected))


def calibration_measures(
    *,
    time: np.ndarray,
    event: np.ndarray,
    risk: np.ndarray,
    survival: SurvivalFunction,
    horizons: Sequence[float],
    n_resamples: int = 1000,
    seed: int = 0,
) -> pd.DataFrame:
    """The calibration slope and the intercept at each horizon, with percentile bootstrap
    intervals over the patients. Columns: measure (``slope``/``intercept``), horizon_days (the
    slope's: the whole follow-up, 0), estimate, low, high."""
    time, event = np.asarray(time, float), np.asarray(event, bool)
    risk = np.asarray(risk, float)
    rows = np.arange(time.size)
    # H(min(t_i, h) | x_i) = -log S(min(t_i, h) | x_i), once per patient and horizon.
    hazards = np.column_stack(
        [
            -np.log(np.clip(np.diag(survival(rows, np.minimum(time, h))), 1e-300, 1.0))
            for h in horizons
        ]
    ).reshape(time.size, len(horizons))

    def measures(sample: np.ndarray) -> list[float]:
        values = [calibration_slope(time=time[sample], event=event[sample], risk=risk[sample])]
        for k, horizon in enumerate(horizons):
            values.append(
                calibration_intercept(
                    time=time[sample],
                    event=event[sample],
                    cumulative_hazard=hazards[sample, k],
                    horizon=horizon,
                )
            )
        return values

    estimates = measures(rows)
    rng = np.random.default_rng(seed)
    draws = np.array([measures(rng.choice(rows, rows.size)) for _ in range(n_resamples)])
    labels = [("slope", 0)] + [("intercept", int(h)) for h in horizons]
    result = []
    for k, (measure, horizon) in enumerate(labels):
        low, high = (
            percentile_interval(list(draws[:, k]))
            if np.isfinite(estimates[k])
            else (np.nan, np.nan)
        )
        result.append((measure, horizon, estimates[k], low, high))
    return pd.DataFrame(result, columns=_COLUMNS[:5])
