"""The train/test split, decided once by the cohort step and carried in the manifest.

The paper trains on one center and tests on the others; :func:`split_cohort` does that by
default, or follows a ``train``/``test`` column, or draws a seeded split stratified by event.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from lungsurv.core.layout import SPLIT_COLUMN, TEST, TRAIN

DEFAULT_TRAIN_CENTERS: tuple[str, ...] = ("MAASTRO",)


def split_cohort(
    manifest: pd.DataFrame,
    *,
    train_centers: Sequence[str] = DEFAULT_TRAIN_CENTERS,
    split_column: str = "",
    test_fraction: float = 0.0,
    seed: int = 0,
) -> pd.Series:
    """A boolean Series (index: patient_id), True for training patients.

    Precedence: ``split_column`` (values ``train``/``test``) when given; else a seeded split
    stratified by event when ``test_fraction`` > 0; else ``train_centers``.
    """
    ids = manifest["patient_id"].astype(str)
    if split_column:
        if split_column not in manifest.columns:
            raise ValueError(f"split column {split_column!r} is not in the manifest")
        values = manifest[split_column].astype(str).str.lower()
        bad = sorted(set(values) - {TRAIN, TEST})
        if bad:
            raise ValueError(f"split column {split_column!r} holds {bad}; expected train/test")
        is_train = values == TRAIN
    elif test_fraction > 0:
        if not 0 < test_fraction < 1:
            raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
        train, _ = train_test_split(
            np.arange(len(manifest)),
            test_size=test_fraction,
            random_state=seed,
            stratify=manifest["event"].astype(int),
        )
        is_train = pd.Series(np.isin(np.arange(len(manifest)), train))
    else:
        known = set(manifest["center"].astype(str))
        missing = sorted(set(train_centers) - known)
        if missing:
            raise ValueError(
                f"training center(s) {missing} not in the cohort (it has {sorted(known)})"
            )
        is_train = manifest["center"].astype(str).isin(list(train_centers))
    result = pd.Series(np.asarray(is_train, dtype=bool), index=ids.to_numpy(), name="is_train")
    if not result.any() or result.all():
        raise ValueError(
            f"the split leaves {int(result.sum())} training and {int((~result).sum())} test "
            "patient(s); both must be non-empty"
        )
    return result


def with_split(manifest: pd.DataFrame, **split_params: Any) -> pd.DataFrame:
    """``manifest`` with the :data:`~lungsurv.core.layout.SPLIT_COLUMN` (``train``/``test``)
    filled in by :func:`split_cohort`; the cohort step calls this once for the whole run."""
    is_train = split_cohort(manifest, **split_params)
    out = manifest.copy()
    out[SPLIT_COLUMN] = np.where(is_train.to_numpy(), TRAIN, TEST)
    return out


def training_mask(manifest: pd.DataFrame) -> pd.Series:
    """The split the cohort step wrote, as :func:`split_cohort` returns it (index: patient_id,
    True for training patients)."""
    if SPLIT_COLUMN not in manifest.columns:
        raise ValueError(
            f"the manifest has no {SPLIT_COLUMN!r} column: the cohort step (with_split) writes it"
        )
    values = manifest[SPLIT_COLUMN].astype(str)
    bad = sorted(set(values) - {TRAIN, TEST})
    if bad:
        raise ValueError(f"the {SPLIT_COLUMN!r} column holds {bad}; expected {TRAIN}/{TEST}")
    ids = manifest["patient_id"].astype(str).to_numpy()
    return pd.Series((values == TRAIN).to_numpy(), index=ids, name="is_train")
