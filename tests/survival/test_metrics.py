"""Survival statistics on the real NSCLC-Radiomics clinical table, against lifelines."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from lifelines import CoxPHFitter, KaplanMeierFitter
from lifelines.statistics import multivariate_logrank_test
from lifelines.utils import concordance_index

from lungsurv.survival.metrics import (
    bootstrap_c_index,
    c_index,
    hazard_ratio,
    kaplan_meier,
    logrank,
)


@pytest.fixture(scope="module")
def clinical(clinical_csv: Path) -> pd.DataFrame:
    table = pd.read_csv(clinical_csv, na_values="NA")
    table = table.dropna(subset=["Survival.time", "deadstatus.event", "Overall.Stage", "age"])
    return table[table["Survival.time"] > 0].reset_index(drop=True)


def test_kaplan_meier_by_stage_equals_lifelines(clinical: pd.DataFrame) -> None:
    for stage, rows in clinical.groupby("Overall.Stage"):
        ours = kaplan_meier(rows["Survival.time"], rows["deadstatus.event"])
        fitter = KaplanMeierFitter().fit(rows["Survival.time"], rows["deadstatus.event"])
        theirs = fitter.survival_function_at_times(ours["time"]).to_numpy()
        assert np.allclose(ours["survival"], theirs, atol=1e-12), stage


def test_logrank_by_stage_equals_lifelines(clinical: pd.DataFrame) -> None:
    statistic, p = logrank(
        clinical["Survival.time"], clinical["deadstatus.event"], clinical["Overall.Stage"]
    )
    reference = multivariate_logrank_test(
        clinical["Survival.time"], clinical["Overall.Stage"], clinical["deadstatus.event"]
    )
    assert statistic == pytest.approx(reference.test_statistic, rel=1e-8)
    assert p == pytest.approx(reference.p_value, rel=1e-6)
    print(
        f"NSCLC-Radiomics, {len(clinical)} patients: log-rank by overall stage "
        f"chi2={statistic:.2f}, p={p:.2g}"
    )


def test_hazard_ratio_equals_lifelines(clinical: pd.DataFrame) -> None:
    stage3 = clinical["Overall.Stage"].str.startswith("III").astype(float)
    estimate, p = hazard_ratio(clinical["Survival.time"], clinical["deadstatus.event"], stage3)
    frame = pd.DataFrame(
        {"x": stage3, "T": clinical["Survival.time"], "E": clinical["deadstatus.event"]}
    )
    fitted = CoxPHFitter().fit(frame, "T", "E")
    summary = fitted.summary.loc["x"]
    assert estimate.value == pytest.approx(summary["exp(coef)"], rel=1e-5)
    assert estimate.low == pytest.approx(summary["exp(coef) lower 95%"], rel=1e-5)
    assert estimate.high == pytest.approx(summary["exp(coef) upper 95%"], rel=1e-5)
    assert p == pytest.approx(summary["p"], rel=1e-4)


def test_c_index_two_implementations_agree(clinical: pd.DataFrame) -> None:
    risk = clinical["age"].to_numpy()
    ours = c_index(time=clinical["Survival.time"], event=clinical["deadstatus.event"], risk=risk)
    # lifelines scores concordance of predicted survival times: the negative risk.
    theirs = concordance_index(clinical["Survival.time"], -risk, clinical["deadstatus.event"])
    assert ours == pytest.approx(theirs, abs=1e-12)
    with pytest.raises(TypeError):  # sksurv's (event, time, estimate) order cannot slip in
        c_index(clinical["deadstatus.event"], clinical["Survival.time"], risk)  # type: ignore[misc]


def test_bootstrap_interval_contains_the_estimate_and_is_seeded(clinical: pd.DataFrame) -> None:
    args = {
        "time": clinical["Survival.time"],
        "event": clinical["deadstatus.event"],
        "risk": clinical["age"],
    }
    first = bootstrap_c_index(**args, n_resamples=200, seed=3)
    assert first.low <= first.value <= first.high
    assert first == bootstrap_c_index(**args, n_resamples=200, seed=3)
    assert first != bootstrap_c_index(**args, n_resamples=200, seed=4)


@pytest.mark.parametrize(
    ("kwargs", "message"), [({"n_resamples": 0}, "n_resamples"), ({"level": 1.5}, "1.5")]
)
def test_bootstrap_arguments_are_checked(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        bootstrap_c_index(
            time=np.array([1.0, 2.0]), event=np.array([1, 0]), risk=np.array([0.1, 0.2]), **kwargs
        )


def test_single_group_logrank_is_undefined() -> None:
    statistic, p = logrank(
        np.array([1.0, 2.0, 3.0]), np.array([1, 1, 0]), np.array(["a", "a", "a"])
    )
    assert np.isnan(statistic) and np.isnan(p)


def test_time_dependent_auc_without_censoring_is_the_pairwise_probability() -> None:
    from lungsurv.survival.metrics import time_dependent_auc

    rng = np.random.default_rng(2)
    time = rng.exponential(500, 80) + 1
    event = np.ones(80, bool)
    risk = -np.log(time) + rng.normal(0, 0.8, 80)
    table = time_dependent_auc(time, event, time, event, risk, [365, 730, 1e6])
    for row in table.itertuples():
        if row.time >= time.max():
            assert np.isnan(row.auc)
            continue
        cases, controls = risk[time <= row.time], risk[time > row.time]
        pairs = (cases[:, None] > controls[None, :]).mean()
        assert row.auc == pytest.approx(pairs, abs=1e-12)


def test_status_at_a_horizon() -> None:
    from lungsurv.survival.metrics import status_at

    known, died = status_at(np.array([100, 400, 200, 500]), np.array([1, 1, 0, 0]), 365)
    assert known.tolist() == [True, True, False, True]
    assert died.tolist() == [True, False, False, False]


def test_delong_matches_mann_whitney_and_is_calibrated() -> None:
    from scipy.stats import mannwhitneyu

    from lungsurv.survival.metrics import delong_test

    rng = np.random.default_rng(4)
    died = rng.random(200) < 0.4
    a = died * 1.0 + rng.normal(0, 1, 200)
    b = rng.normal(0, 1, 200)
    auc_a, auc_b, p = delong_test(died, a, b)
    u = mannwhitneyu(a[died], a[~died]).statistic
    assert auc_a == pytest.approx(u / (died.sum() * (~died).sum()), abs=1e-12)
    assert auc_a > auc_b and p < 0.01
    same = delong_test(died, a, a)
    assert same[2] == 1.0
    # Under the null (two noisy copies of one score) p-values are roughly uniform.
    pvalues = []
    for seed in range(200):
        r = np.random.default_rng(seed)
        base = died * 0.5 + r.normal(0, 1, 200)
        pvalues.append(
            delong_test(died, base + r.normal(0, 0.5, 200), base + r.normal(0, 0.5, 200))[2]
        )
    assert 0.02 < np.mean(np.array(pvalues) < 0.05) < 0.1
    with pytest.raises(ValueError, match="both cases and controls"):
        delong_test(np.ones(5, bool), a[:5], b[:5])


def test_calibration_of_a_true_model_is_close() -> None:
    from lungsurv.survival.metrics import calibration

    rng = np.random.default_rng(8)
    rate = np.exp(rng.normal(0, 0.7, 2000)) / 500
    time = rng.exponential(1 / rate)
    predicted = np.exp(-rate * 365)
    table = calibration(time, np.ones(2000, bool), predicted, 365, n_resamples=50, seed=1)
    assert len(table) == 4 and table["patients"].sum() == 2000
    # Observed KM within sampling error (n = 500 per group: SE about 0.022) of the truth.
    assert np.all(np.abs(table["predicted"] - table["observed"]) < 0.07)
    assert np.all(
        (table["observed_low"] <= table["observed"]) & (table["observed"] <= table["observed_high"])
    )


def test_calibration_of_constant_predictions_is_one_group() -> None:
    from lungsurv.survival.metrics import calibration

    rng = np.random.default_rng(2)
    time = rng.exponential(500, 40)
    table = calibration(time, np.ones(40, bool), np.full(40, 0.6), 365, n_resamples=20)
    assert table["group"].tolist() == [1] and table["patients"].tolist() == [40]


def test_a_log_rank_test_without_variance_is_nan_not_an_error() -> None:
    """Group B is censored before the first death: no comparison is possible at any death."""
    from lungsurv.survival.metrics import logrank

    statistic, p_value = logrank(
        np.array([5.0, 6.0, 1.0, 2.0]), np.array([1, 1, 0, 0]), np.array([1, 1, 0, 0])
    )
    assert np.isnan(statistic) and np.isnan(p_value)
