"""Center harmonisation (location/scale and quantile mapping): test centers mapped onto the training
center, which stays as it is."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lungsurv.survival.harmonization import (
    CenterHarmonizer,
    QuantileHarmonizer,
    harmonize_row,
    quantile_map,
)

HARMONIZERS = [CenterHarmonizer, QuantileHarmonizer]


@pytest.fixture()
def shifted() -> tuple[pd.DataFrame, pd.Series, pd.Series, pd.Series]:
    """Three centers measuring one latent value per patient, each with its own offset and gain."""
    rng = np.random.default_rng(3)
    centers = pd.Series(["A"] * 60 + ["B"] * 40 + ["C"] * 30, name="center")
    latent = pd.Series(rng.standard_normal(len(centers)))
    gain = centers.map({"A": 1.0, "B": 2.5, "C": 0.4})
    offset = centers.map({"A": 0.0, "B": 30.0, "C": -7.0})
    X = pd.DataFrame({"f0": gain * latent + offset, "f1": -gain * latent + 2 * offset})
    X.index = centers.index = latent.index = [f"P{i}" for i in range(len(centers))]
    return X, centers, centers == "A", latent


@pytest.mark.parametrize("harmonizer_class", HARMONIZERS)
def test_the_training_center_is_left_exactly_as_it_is(shifted, harmonizer_class) -> None:
    X, centers, is_train, _ = shifted
    out = harmonizer_class().fit(X, centers, reference=is_train).transform(X, centers)
    pd.testing.assert_frame_equal(out[is_train], X[is_train].astype(float))


@pytest.mark.parametrize("center", ["B", "C"])
def test_a_test_center_gets_the_training_centers_mean_and_sd(shifted, center: str) -> None:
    X, centers, is_train, latent = shifted
    out = CenterHarmonizer().fit(X, centers, reference=is_train).transform(X, centers)
    rows = centers == center
    np.testing.assert_allclose(out[rows].mean(), X[is_train].mean(), atol=1e-9)
    np.testing.assert_allclose(out[rows].std(), X[is_train].std(), rtol=1e-9)
    # Before, the pooled ranking mixed the centers' offsets; after, it follows the latent value.
    pooled_before = X["f0"].corr(latent, method="spearman")
    pooled_after = out["f0"].corr(latent, method="spearman")
    assert pooled_after > 0.99 > pooled_before


@pytest.mark.parametrize("harmonizer_class", HARMONIZERS)
def test_a_small_center_is_left_alone_and_named(shifted, caplog, harmonizer_class) -> None:
    X, centers, is_train, _ = shifted
    harmonizer = harmonizer_class(min_patients=35).fit(X, centers, reference=is_train)
    assert harmonizer.skipped_ == ["C"] and "C" in caplog.text
    out = harmonizer.transform(X, centers)
    pd.testing.assert_frame_equal(out[centers == "C"], X[centers == "C"].astype(float))


def test_the_outcome_is_never_needed_and_the_test_center_alone_sets_its_map(shifted) -> None:
    X, centers, is_train, _ = shifted
    harmonizer = CenterHarmonizer().fit(X, centers, reference=is_train)
    moved = X.copy()
    moved.loc[centers == "C"] += 100.0  # another center's values do not change B's map
    again = CenterHarmonizer().fit(moved, centers, reference=is_train)
    pd.testing.assert_series_equal(harmonizer.slope_.loc["B"], again.slope_.loc["B"])
    pd.testing.assert_series_equal(harmonizer.intercept_.loc["B"], again.intercept_.loc["B"])


@pytest.mark.parametrize(
    ("harmonizer_class", "kwargs", "message"),
    [
        (CenterHarmonizer, {"min_patients": 1}, "min_patients"),
        (CenterHarmonizer, {}, "reference"),
        (QuantileHarmonizer, {"min_patients": 1}, "min_patients"),
        (QuantileHarmonizer, {"n_quantiles": 1}, "n_quantiles"),
        (QuantileHarmonizer, {}, "reference"),
    ],
)
def test_invalid_arguments_are_named(shifted, harmonizer_class, kwargs, message) -> None:
    X, centers, _, _ = shifted
    with pytest.raises(ValueError, match=message):
        harmonizer_class(**kwargs).fit(X, centers, reference=pd.Series(False, index=X.index))


@pytest.mark.parametrize("harmonizer_class", HARMONIZERS)
def test_a_served_row_gets_the_same_values_as_the_cohort(shifted, harmonizer_class) -> None:
    X, centers, is_train, _ = shifted
    harmonizer = harmonizer_class().fit(X, centers, reference=is_train)
    cohort = harmonizer.transform(X, centers)
    document = {"gtv": harmonizer.to_document(["f1", "f0"])}
    for patient in X.index[centers == "B"][:8]:
        served, reasons = harmonize_row({"gtv": X.loc[[patient]]}, document, "B")
        assert reasons == []
        np.testing.assert_allclose(served["gtv"].loc[patient], cohort.loc[patient], rtol=1e-12)


@pytest.mark.parametrize("harmonizer_class", HARMONIZERS)
@pytest.mark.parametrize("center", [None, "Z"])
def test_a_served_row_without_a_known_center_is_flagged(shifted, center, harmonizer_class) -> None:
    X, centers, is_train, _ = shifted
    harmonizer = harmonizer_class().fit(X, centers, reference=is_train)
    document = {"gtv": harmonizer.to_document(["f0"])}
    served, reasons = harmonize_row({"gtv": X.iloc[:1]}, document, center)
    assert len(reasons) == 1 and "harmonisation" in reasons[0] and "Z" not in reasons[0]
    pd.testing.assert_frame_equal(served["gtv"], X.iloc[:1])


def test_quantile_mapping_undoes_a_non_linear_scanner_distortion(shifted) -> None:
    X, centers, is_train, latent = shifted
    # Center B saturates the feature (a texture feature in noise); C squashes it exponentially.
    distorted = X.copy()
    distorted.loc[centers == "B", "f0"] = np.tanh(latent[centers == "B"]) * 5.0
    distorted.loc[centers == "C", "f0"] = np.exp(latent[centers == "C"])
    quantile = QuantileHarmonizer().fit(distorted, centers, reference=is_train)
    out = quantile.transform(distorted, centers)
    for center in ("B", "C"):
        rows = centers == center
        # Monotone within the center: its patients keep their order.
        assert out.loc[rows, "f0"].corr(distorted.loc[rows, "f0"], method="spearman") == 1.0
        # Onto the reference distribution: its quartiles are the training center's (the test
        # centers are other samples of the same latent law, so up to sampling error).
        np.testing.assert_allclose(
            out.loc[rows, "f0"].quantile([0.25, 0.5, 0.75]),
            X.loc[is_train, "f0"].quantile([0.25, 0.5, 0.75]),
            atol=0.35,
        )
    # Pooled, the values follow the latent value across centers, better than location/scale.
    affine = CenterHarmonizer().fit(distorted, centers, reference=is_train)
    pooled_affine = affine.transform(distorted, centers)["f0"].corr(latent, method="pearson")
    pooled_quantile = out["f0"].corr(latent, method="pearson")
    assert pooled_quantile > pooled_affine


@pytest.mark.parametrize(
    ("values", "source", "target", "expected"),
    [
        ([0.5, 1.5], [0.0, 1.0, 2.0], [10.0, 20.0, 40.0], [15.0, 30.0]),  # linear between knots
        ([-5.0, 9.0], [0.0, 1.0, 2.0], [10.0, 20.0, 40.0], [10.0, 40.0]),  # clamped at the ends
        ([1.0, 2.0], [0.0, 1.0, 1.0, 2.0], [0.0, 10.0, 20.0, 30.0], [15.0, 30.0]),  # tied knots
        ([3.0, 7.0], [3.0, 3.0, 3.0], [1.0, 2.0, 6.0], [2.0, 2.0]),  # constant: the median
        ([np.nan, 1.0], [0.0, 2.0], [0.0, 4.0], [np.nan, 2.0]),  # NaN stays NaN
    ],
)
def test_quantile_map(values, source, target, expected) -> None:
    got = quantile_map(np.array(values), np.array(source), np.array(target))
    np.testing.assert_allclose(got, expected, equal_nan=True)
