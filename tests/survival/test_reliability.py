"""Whether a new patient lies within what the model was trained on."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lungsurv.survival.fusion import BlockParameters, ModelParameters
from lungsurv.survival.reliability import (
    assess,
    feature_z_scores,
    risk_percentile,
    training_risk,
)


def _params(distribution: dict) -> ModelParameters:
    block = BlockParameters(
        name="gtv",
        features=["a", "b"],
        mean=np.array([10.0, 0.0]),
        scale=np.array([2.0, 1.0]),
        signature_coef=np.ones(2),
    )
    return ModelParameters(
        blocks=[block],
        pca_mean=np.zeros(2),
        pca_components=np.eye(2),
        explained_variance_ratio=np.full(2, 0.5),
        cox_coef=np.ones(2),
        baseline_times=np.array([400.0]),
        baseline_survival=np.array([0.8]),
        cutoff=0.0,
        metadata={"training_risk": distribution},
    )


def test_the_training_risks_and_a_risks_place_among_them() -> None:
    risks = np.random.default_rng(0).normal(0, 1, 500)
    distribution = training_risk(risks)
    assert len(distribution["quantiles"]) == 21 and distribution["levels"][10] == 0.5
    assert risk_percentile(float(np.median(risks)), distribution) == pytest.approx(50, abs=1)
    assert risk_percentile(99.0, distribution) == 100.0
    assert risk_percentile(0.0, {}) is None


@pytest.mark.parametrize(
    ("values", "risk", "survival", "reason"),
    [
        ((11.0, 0.5), 0.1, 0.5, None),
        ((30.0, 0.5), 0.1, 0.5, "1 of 2 features are more than 4 training SDs"),
        ((11.0, 0.5), 9.0, 0.5, "risk 9.00 is outside the training risks"),
        ((11.0, 0.5), 0.1, 1e-9, "predicted survival below 1e-06 at 3y"),
    ],
)
def test_a_prediction_is_reliable_or_says_why_not(values, risk, survival, reason) -> None:
    params = _params(training_risk(np.linspace(-2, 2, 50)))
    blocks = {"gtv": pd.DataFrame([dict(zip("ab", values, strict=True))])}
    assert feature_z_scores(blocks, params)["gtv:a"] == pytest.approx((values[0] - 10) / 2)
    result = assess(risk=risk, survival={"3y": survival}, blocks=blocks, params=params)
    assert result["reliable"] is (reason is None)
    if reason:
        assert any(reason in r for r in result["reasons"]), result["reasons"]
    extra = assess(
        risk=risk, survival={"3y": survival}, blocks=blocks, params=params, warnings=["x"]
    )
    assert extra["reliable"] is False and extra["reasons"][0] == "x"


def test_each_used_features_training_distribution_is_kept_and_checked() -> None:
    from lungsurv.survival.reliability import FEATURE_QUANTILE_LEVELS, training_features

    rng = np.random.default_rng(1)
    training = {"gtv": pd.DataFrame({"a": rng.normal(10, 2, 300), "b": rng.normal(0, 1, 300)})}
    params = _params(training_risk(np.linspace(-2, 2, 50)))
    found = training_features(training, params)
    assert set(found) == {"gtv:a", "gtv:b"}
    quantiles = found["gtv:a"]["quantiles"]
    assert len(quantiles) == len(FEATURE_QUANTILE_LEVELS) and quantiles == sorted(quantiles)
    assert (
        quantiles[0] == training["gtv"]["a"].min() and quantiles[-1] == training["gtv"]["a"].max()
    )
    assert found["gtv:a"]["mean"][0] == pytest.approx(10, abs=0.3)
    params.metadata["training_features"] = found
    # Within 4 SDs but beyond every training patient's value: out of range, and said so.
    beyond = found["gtv:b"]["quantiles"][-1] + 0.01
    blocks = {"gtv": pd.DataFrame([{"a": 10.0, "b": beyond}])}
    assert abs(feature_z_scores(blocks, params)["gtv:b"]) < 4
    result = assess(risk=0.1, survival={"3y": 0.5}, blocks=blocks, params=params)
    assert result["reliable"] is False and "gtv:b" in result["out_of_range_features"]
    assert any("outside the training patients' range" in r for r in result["reasons"])
    inside = {"gtv": pd.DataFrame([{"a": 10.0, "b": 0.0}])}
    assert assess(risk=0.1, survival={"3y": 0.5}, blocks=inside, params=params)["reliable"]
    # A training patient's most extreme value is within the range, even 5 SDs from the mean.
    params.metadata["training_features"]["gtv:a"]["quantiles"][-1] = 20.5
    extreme = {"gtv": pd.DataFrame([{"a": 20.5, "b": 0.0}])}
    assert feature_z_scores(extreme, params)["gtv:a"] > 5
    assert assess(risk=0.1, survival={"3y": 0.5}, blocks=extreme, params=params)["reliable"]
