"""The ICC against pingouin and hand-computed cases, and the filter that drops unrobust
features from their ROI's rows only."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lungsurv.radiomics.robustness import (
    drop_unrobust,
    icc_table,
    intraclass_correlation,
    robust_features,
)


@pytest.mark.parametrize(("kind", "pingouin_type"), [("1,1", "ICC(1,1)"), ("3,1", "ICC(C,1)")])
@pytest.mark.parametrize("noise", [0.2, 1.0, 3.0])
def test_icc_equals_pingouin(kind: str, pingouin_type: str, noise: float) -> None:
    pingouin = pytest.importorskip("pingouin")
    rng = np.random.default_rng(int(noise * 10))
    n, k = 15, 4
    # Each patient's true value, a rater offset (which ICC(3,1) ignores) and noise.
    values = rng.normal(0, 1, (n, 1)) + np.linspace(0, 0.5, k) + rng.normal(0, noise, (n, k))
    long = pd.DataFrame(
        {
            "patient": np.repeat(np.arange(n), k),
            "version": np.tile(np.arange(k), n),
            "value": values.ravel(),
        }
    )
    reference = pingouin.intraclass_corr(long, targets="patient", raters="version", ratings="value")
    expected = float(reference.set_index("Type").loc[pingouin_type, "ICC"])
    assert intraclass_correlation(values[:, :, None], kind)[0] == pytest.approx(expected, abs=1e-12)


def test_icc_hand_cases() -> None:
    patients = np.array([1.0, 5.0, 9.0, 2.0])[:, None, None]
    identical = np.repeat(patients, 3, axis=1)  # every version equal: perfect agreement
    assert intraclass_correlation(identical)[0] == pytest.approx(1.0)
    # One patient per row, versions differing only by a constant per version: ICC(3,1) sees
    # perfect consistency, ICC(1,1) (absolute agreement) less.
    shifted = identical + np.array([0.0, 3.0, 6.0])[None, :, None]
    assert intraclass_correlation(shifted, "3,1")[0] == pytest.approx(1.0)
    assert intraclass_correlation(shifted, "1,1")[0] < 0.7
    # A 2 x 2 case by hand: MSR = 2 * ((2 - 4.5)^2 + (7 - 4.5)^2) = 25, MSW = (1 + 1 + 1 + 1) / 2
    # = 2, ICC(1,1) = (25 - 2) / (25 + 2).
    two = np.array([[1.0, 3.0], [6.0, 8.0]])[:, :, None]
    assert intraclass_correlation(two)[0] == pytest.approx(23 / 27)
    assert np.isnan(intraclass_correlation(np.ones((4, 3, 1)))[0])


@pytest.mark.parametrize(
    ("shape", "kind", "message"),
    [((4, 3), "1,1", "patients, versions, features"), ((1, 3, 2), "1,1", ">= 2 patients"),
     ((4, 3, 2), "2,1", "kind must be one of")],
)  # fmt: skip
def test_icc_refuses_what_it_cannot_compute(shape: tuple, kind: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        intraclass_correlation(np.zeros(shape), kind)


def _versions() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    truth = rng.normal(0, 1, 12)
    for version in range(3):
        for p, value in enumerate(truth):
            for roi in ("gtv", "ring_6mm"):
                rows.append(
                    {
                        "patient_id": f"P{p}",
                        "roi": roi,
                        "version": version,
                        "stable": value + rng.normal(0, 0.05),
                        "fragile": rng.normal(0, 1),
                    }
                )
    return pd.DataFrame(rows)


def test_icc_table_and_robust_features() -> None:
    table = icc_table(_versions())
    assert set(table["roi"]) == {"gtv", "ring_6mm"}
    assert (table["patients"] == 12).all() and (table["versions"] == 3).all()
    icc = table.set_index(["roi", "feature"])["icc"]
    assert icc["gtv", "stable"] > 0.95 and icc["gtv", "fragile"] < 0.5
    assert robust_features(table, 0.75) == {"gtv": {"stable"}, "ring_6mm": {"stable"}}
    # A patient without every version is left out of the ICC.
    partial = _versions()
    partial = partial[~((partial["patient_id"] == "P0") & (partial["version"] == 2))]
    assert set(icc_table(partial).query("roi == 'gtv'")["patients"]) == {11}


def test_drop_unrobust_empties_only_the_assessed_rois_features() -> None:
    features = pd.DataFrame(
        {
            "patient_id": ["A", "A", "A", "B", "B", "B"],
            "roi": ["gtv", "ring_6mm", "dl", "gtv", "ring_6mm", "dl"],
            "n_voxels": [10, 20, 10, 11, 21, 11],
            "stable": [1.0, 2.0, np.nan, 3.0, 4.0, np.nan],
            "fragile": [5.0, 6.0, np.nan, 7.0, 8.0, np.nan],
            "dl_000": [np.nan, np.nan, 0.1, np.nan, np.nan, 0.2],
        }
    )
    icc = pd.DataFrame(
        {
            "roi": ["gtv", "gtv", "ring_6mm", "ring_6mm"],
            "feature": ["stable", "fragile", "stable", "fragile"],
            "icc": [0.9, 0.3, 0.6, 0.8],
        }
    )
    filtered, dropped = drop_unrobust(features, icc, 0.75)
    assert dropped == {"gtv": 1, "ring_6mm": 1}
    gtv = filtered[filtered["roi"] == "gtv"]
    ring = filtered[filtered["roi"] == "ring_6mm"]
    assert gtv["fragile"].isna().all() and gtv["stable"].notna().all()
    assert ring["stable"].isna().all() and ring["fragile"].notna().all()
    pd.testing.assert_frame_equal(
        filtered[filtered["roi"] == "dl"], features[features["roi"] == "dl"]
    )
    with pytest.raises(ValueError, match="min_icc must be in"):
        drop_unrobust(features, icc, 1.5)
