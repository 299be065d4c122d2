"""Survival statistics for the evaluate stage: discrimination, Kaplan-Meier, log-rank, HRs.

Built on scikit-survival; every function is checked against lifelines in the tests, on the real
NSCLC-Radiomics clinical table.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from lungsurv.survival.cox import univariate_cox


@dataclass(frozen=True)
class Estimate:
    """A point estimate with a confidence interval."""

    value: float
    low: float
    high: float

    def __str__(self) -> str:
        return f"{self.value:.3f} ({self.low:.3f}-{self.high:.3f})"


def c_index(*, time: np.ndarray, event: np.ndarray, risk: np.ndarray) -> float:
    """Harrell's C-index: the share of comparable pairs that ``risk`` orders correctly.

    Keyword-only: scikit-survival's ``concordance_index_censored`` takes ``(event, time,
    estimate)``, lifelines' ``concordance_index`` ``(time, -risk, event)``; passing either
    order positionally here would silently give another number."""
    from sksurv.metrics import concordance_index_censored

    event = np.asarray(event, dtype=bool)
    if not event.any():
        return float("nan")
    return float(concordance_index_censored(event, np.asarray(time, float), np.asarray(risk))[0])


def percentile_interval(values: Sequence[float], level: float = 0.95) -> tuple[float, float]:
    """The percentile interval of bootstrap draws (non-finite draws dropped); NaN with fewer
    than two draws."""
    finite = np.asarray(values, dtype=float)
    finite = finite[np.isfinite(finite)]
    if finite.size < 2:
        return float("nan"), float("nan")
    low, high = np.quantile(finite, [(1 - level) / 2, (1 + level) / 2])
    return float(low), float(high)


def bootstrap_c_index(
    *,
    time: np.ndarray,
    event: np.ndarray,
    risk: np.ndarray,
    n_resamples: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> Estimate:
    """Harrell's C-index with a percentile bootstrap interval (patients resampled)."""
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be >= 1, got {n_resamples}")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    time, event, risk = np.asarray(time, float), np.asarray(event, bool), np.asarray(risk, float)
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(n_resamples):
        rows = rng.integers(0, len(time), len(time))
        if event[rows].any():
            values.append(c_index(time=time[rows], event=event[rows], risk=risk[rows]))
    tail = (1 - level) / 2
    low, high = np.nanquantile(values, [tail, 1 - tail]) if values else (np.nan, np.nan)
    return Estimate(c_index(time=time, event=event, risk=risk), float(low), float(high))


def kaplan_meier(time: np.ndarray, event: np.ndarray) -> pd.DataFrame:
    """The Kaplan-Meier estimate at each distinct time: ``time, survival, at_risk, events``."""
    time, event = np.asarray(time, float), np.asarray(event, bool)
    times = np.unique(time)
    at_risk = np.array([np.sum(time >= t) for t in times])
    events = np.array([np.sum(event & (time == t)) for t in times])
    survival = np.cumprod(1 - events / at_risk)
    return pd.DataFrame({"time": times, "survival": survival, "at_risk": at_risk, "events": events})


def logrank(time: np.ndarray, event: np.ndarray, group: np.ndarray) -> tuple[float, float]:
    """The log-rank test across the groups of ``group``: (chi-square statistic, p-value)."""
    from sksurv.compare import compare_survival
    from sksurv.util import Surv

    group = np.asarray(group)
    if len(np.unique(group)) < 2:
        return float("nan"), float("nan")
    y = Surv.from_arrays(np.asarray(event, bool), np.asarray(time, float))
    try:
        statistic, p_value = compare_survival(y, group)
    except np.linalg.LinAlgError:  # no variance to test (e.g. every death in one group at once)
        return float("nan"), float("nan")
    return float(statistic), float(p_value)


def hazard_ratio(
    time: np.ndarray, event: np.ndarray, covariate: np.ndarray, *, level: float = 0.95
) -> tuple[Estimate, float]:
    """Cox hazard ratio per unit of ``covariate`` with its Wald interval, and the Wald p-value."""
    coef, se, p = univariate_cox(
        np.asarray(covariate, float).reshape(-1, 1),
        np.asarray(event, bool),
        np.asarray(time, float),
    )
    z = stats.norm.ppf(0.5 + level / 2)
    estimate = Estimate(
        float(np.exp(coef[0])),
        float(np.exp(coef[0] - z * se[0])),
        float(np.exp(coef[0] + z * se[0])),
    )
    return estimate, float(p[0])


def time_dependent_auc(
    train_time: np.ndarray,
    train_event: np.ndarray,
    test_time: np.ndarray,
    test_event: np.ndarray,
    risk: np.ndarray,
    times: Sequence[float],
) -> pd.DataFrame:
    """Cumulative/dynamic AUC at ``times`` (scikit-survival's ``cumulative_dynamic_auc``, with
    censoring weights from the training cohort): cases died by t, controls alive after t.

    A time outside the test cohort's follow-up gives NaN rather than an error. Test patients
    followed beyond the training cohort's last time are censored just before it: the censoring
    weights are not defined past it, and at every horizon before it they are controls either way.
    """
    from sksurv.metrics import cumulative_dynamic_auc
    from sksurv.util import Surv

    train = Surv.from_arrays(np.asarray(train_event, bool), np.asarray(train_time, float))
    test_time = np.asarray(test_time, float).copy()
    test_event = np.asarray(test_event, bool).copy()
    limit = float(np.max(train_time))
    beyond = test_time >= limit
    test_time[beyond] = np.nextafter(limit, 0.0)
    test_event[beyond] = False
    test = Surv.from_arrays(test_event, test_time)
    cases = [int(np.sum((test_time <= t) & test_event)) for t in times]
    scored = [
        float(t)
        for t, n in zip(times, cases, strict=True)
        if n and test_time.min() <= t < test_time.max() and t < limit
    ]
    auc = dict.fromkeys(scored, np.nan)
    if scored:  # one call for every horizon: the censoring weights are estimated once
        values = cumulative_dynamic_auc(train, test, np.asarray(risk, float), scored)[0]
        auc = dict(zip(scored, (float(v) for v in values), strict=True))
    return pd.DataFrame(
        {
            "time": [float(t) for t in times],
            "auc": [auc.get(float(t), np.nan) for t in times],
            "cases": cases,
        }
    )


def status_at(time: np.ndarray, event: np.ndarray, horizon: float) -> tuple[np.ndarray, np.ndarray]:
    """Binary status at ``horizon``: (known, died). Known means died by the horizon, or followed
    beyond it; a patient censored before the horizon has no known status and is left out."""
    time, event = np.asarray(time, float), np.asarray(event, bool)
    died = event & (time <= horizon)
    known = died | (time > horizon)
    return known, died


def _placements(cases: np.ndarray, controls: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """DeLong's structural components: per case and per control, the share of the other group
    it beats (ties count half)."""
    greater = (cases[:, None] > controls[None, :]).astype(float)
    greater += 0.5 * (cases[:, None] == controls[None, :])
    return greater.mean(axis=1), greater.mean(axis=0)


def delong_test(
    died: np.ndarray, score_a: np.ndarray, score_b: np.ndarray
) -> tuple[float, float, float]:
    """DeLong's test of two correlated ROC AUCs on the same patients.

    ``died``: the binary status (cases True). Returns (AUC of a, AUC of b, two-sided p-value).
    """
    died = np.asarray(died, bool)
    if died.all() or not died.any():
        raise ValueError("DeLong's test needs both cases and controls")
    scores = [np.asarray(s, float) for s in (score_a, score_b)]
    components = [_placements(s[died], s[~died]) for s in scores]
    aucs = np.array([v10.mean() for v10, _ in components])
    v10 = np.array([c[0] for c in components])
    v01 = np.array([c[1] for c in components])
    s10, s01 = np.cov(v10), np.cov(v01)
    variance = (s10[0, 0] + s10[1, 1] - 2 * s10[0, 1]) / died.sum() + (
        s01[0, 0] + s01[1, 1] - 2 * s01[0, 1]
    ) / (~died).sum()
    if variance <= 0:
        return float(aucs[0]), float(aucs[1]), 1.0
    z = (aucs[0] - aucs[1]) / np.sqrt(variance)
    return float(aucs[0]), float(aucs[1]), float(2 * stats.norm.sf(abs(z)))


def calibration(
    time: np.ndarray,
    event: np.ndarray,
    predicted_survival: np.ndarray,
    horizon: float,
    *,
    n_groups: int = 4,
    n_resamples: int = 1000,
    seed: int = 0,
) -> pd.DataFrame:
    """Predicted against Kaplan-Meier observed survival at ``horizon``, by quantile group of the
    predicted survival, with percentile bootstrap intervals of the observed value."""
    time, event = np.asarray(time, float), np.asarray(event, bool)
    predicted = np.asarray(predicted_survival, float)
    groups = np.asarray(pd.qcut(predicted, n_groups, labels=False, duplicates="drop"), float)
    groups = np.nan_to_num(groups, nan=0.0)  # constant predictions (a null model): one group
    rng = np.random.default_rng(seed)

    def observed(rows: np.ndarray) -> float:
        curve = kaplan_meier(time[rows], event[rows])
        before = curve[curve["time"] <= horizon]
        return float(before["survival"].iloc[-1]) if len(before) else 1.0

    result = []
    for group in sorted(np.unique(groups)):
        rows = np.flatnonzero(groups == group)
        draws = [observed(rng.choice(rows, len(rows))) for _ in range(n_resamples)]
        low, high = np.quantile(draws, [0.025, 0.975])
        result.append(
            {
                "group": int(group) + 1,
                "patients": len(rows),
                "predicted": float(predicted[rows].mean()),
                "observed": observed(rows),
                "observed_low": float(low),
                "observed_high": float(high),
            }
        )
    return pd.DataFrame(result)
