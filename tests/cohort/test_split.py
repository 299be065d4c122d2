"""The train/test split: decided once by the cohort step, written into the manifest, read back."""

from __future__ import annotations

import pandas as pd
import pytest

from lungsurv.cohort.split import split_cohort, training_mask, with_split
from lungsurv.core.layout import SPLIT_COLUMN


@pytest.fixture
def manifest() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "patient_id": [f"P{i}" for i in range(12)],
            "center": ["A"] * 6 + ["B"] * 6,
            "event": [1, 0] * 6,
            "time_days": range(100, 1300, 100),
            "x_split": ["train", "test"] * 6,
        }
    )


@pytest.mark.parametrize(
    "params",
    [
        {"train_centers": ["A"]},
        {"split_column": "x_split"},
        {"test_fraction": 0.25, "seed": 3},
    ],
)
def test_the_written_split_reads_back_as_computed(manifest: pd.DataFrame, params: dict) -> None:
    written = with_split(manifest, **params)
    assert set(written[SPLIT_COLUMN]) == {"train", "test"}
    pd.testing.assert_series_equal(training_mask(written), split_cohort(manifest, **params))
    assert SPLIT_COLUMN not in manifest.columns  # the input is left as it was


def test_a_manifest_without_the_split_is_refused(manifest: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match="no 'split' column"):
        training_mask(manifest)
    with pytest.raises(ValueError, match="holds"):
        training_mask(manifest.assign(split="validation"))
