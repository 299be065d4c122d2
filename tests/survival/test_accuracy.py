"""Brier score, integrated Brier score and calibration measures on cohorts with a known truth."""

from __future__ import annotations

import numpy as np
import pytest

from lungsurv.survival.accuracy import (
    calibration_intercept,
    calibration_measures,
    calibration_slope,
    prediction_error,
)

HORIZONS = (365, 730, 1095)
#: Exponential baseline: S0(t) = exp(-t / SCALE) at eta = 0.
SCALE = 900.0


def _cohort(n: int, seed: int, *, censored: bool = True):
    rng = np.random.default_rng(seed)
    eta = rng.normal(0.0, 1.0, n)
    event_time = rng.exponential(SCALE * np.exp(-eta))
    censor = rng.uniform(300, 3000, n) if censored else np.full(n, np.inf)
    time = np.maximum(np.minimum(event_time, censor), 1.0)
    return time, event_time <= censor, eta


def _true_survival(eta: np.ndarray, *, hazard_scale: float = 1.0):
    def survival(rows: np.ndarray, times: np.ndarray) -> np.ndarray:
        times = np.asarray(times, float)
        return np.exp(-hazard_scale * times[None, :] / SCALE * np.exp(eta[rows])[:, None])

    return survival


def test_without_censoring_the_brier_score_is_the_mean_squared_error() -> None:
    time, event, eta = _cohort(300, 1, censored=False)
    survival = _true_survival(eta)
    table = prediction_error(
        train_time=time,
        train_event=event,
        time=time,
        event=event,
        survival=survival,
        horizons=HORIZONS,
        n_resamples=0,
    )
    brier = table[table["measure"] == "brier"].set_index("horizon_days")["estimate"]
    for horizon in HORIZONS:
        predicted = survival(np.arange(time.size), np.array([horizon]))[:, 0]
        expected = np.mean(((time > horizon).astype(float) - predicted) ** 2)
        assert brier[horizon] == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("seed", [2, 3])
def test_the_true_model_beats_the_null_model_and_intervals_hold_the_estimate(seed: int) -> None:
    train_time, train_event, _ = _cohort(400, seed)
    time, event, eta = _cohort(250, seed + 100)
    table = prediction_error(
        train_time=train_time,
        train_event=train_event,
        time=time,
        event=event,
        survival=_true_survival(eta),
        horizons=HORIZONS,
        n_resamples=60,
        seed=seed,
    )
    assert list(table["measure"]) == ["brier"] * 3 + ["ibs"]
    assert (table["estimate"] < table["null_model"]).all()
    assert ((table["low"] <= table["estimate"]) & (table["estimate"] <= table["high"])).all()
    ibs = table[table["measure"] == "ibs"]["estimate"].iloc[0]
    assert 0.05 < ibs < 0.25


def test_a_horizon_beyond_follow_up_is_nan_not_an_error() -> None:
    time, event, eta = _cohort(200, 4)
    short = np.minimum(time, 500.0)
    table = prediction_error(
        train_time=time,
        train_event=event,
        time=short,
        event=event & (time <= 500),
        survival=_true_survival(eta),
        horizons=HORIZONS,
        n_resamples=5,
    )
    brier = table[table["measure"] == "brier"]
    assert np.isfinite(brier["estimate"].iloc[0])
    assert brier["estimate"].iloc[1:].isna().all()


@pytest.mark.parametrize(("spread", "slope"), [(1.0, 1.0), (2.0, 0.5), (0.5, 2.0)])
def test_the_calibration_slope_measures_how_far_risks_spread(spread: float, slope: float) -> None:
    time, event, eta = _cohort(2000, 5)
    assert calibration_slope(time=time, event=event, risk=spread * eta) == pytest.approx(
        slope, rel=0.1
    )


@pytest.mark.parametrize("hazard_scale", [1.0, 2.0, 0.5])
def test_the_calibration_intercept_is_log_observed_over_expected(hazard_scale: float) -> None:
    time, event, eta = _cohort(2000, 6)
    survival = _true_survival(eta, hazard_scale=hazard_scale)
    horizon = 730.0
    rows = np.arange(time.size)
    hazard = -np.log(np.diag(survival(rows, np.minimum(time, horizon))))
    intercept = calibration_intercept(
        time=time, event=event, cumulative_hazard=hazard, horizon=horizon
    )
    assert intercept == pytest.approx(-np.log(hazard_scale), abs=0.08)


def test_calibration_measures_are_seeded_and_bracket_the_estimates() -> None:
    time, event, eta = _cohort(300, 7)
    kwargs = dict(
        time=time,
        event=event,
        risk=eta,
        survival=_true_survival(eta),
        horizons=HORIZONS,
        n_resamples=50,
        seed=3,
    )
    first, second = calibration_measures(**kwargs), calibration_measures(**kwargs)
    assert first.equals(second)
    assert list(first["measure"]) == ["slope", "intercept", "intercept", "intercept"]
    assert ((first["low"] <= first["estimate"]) & (first["estimate"] <= first["high"])).all()
    assert first["low"].iloc[0] < 1.0 < first["high"].iloc[0]
    assert (first["low"].iloc[1:] < 0.0).all() and (first["high"].iloc[1:] > 0.0).all()
