"""The train/test split, decided once by the cohort step and carried in the manifest.

The paper trains on one center and tests on the others; :func:`split_cohort` does that by
default, or follows a ``train``/``test`` column, or draws a seeded split stratified by event.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

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
        bad = sorted(set(values) - {"train", "test"})
        if bad:
            raise ValueError(f"split column {split_column!r} holds {bad}; expected train/test")
        is_train = values == "train"
    elif test_fraction > 0:
        if not 0 < test_fraction < 1:
            raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
        from sklearn.model_selection import train_test_split

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
