"""Feature harmonisation across centers, before select-features and PCA-fuse (off by default).

:func:`harmonize_features` fits one :class:`~lungsurv.survival.harmonization.CenterHarmonizer`
per ROI block of the long feature table (GTV, each ring, the deep features) with the training
patients as the reference, and returns the table with every center mapped onto them. Both
select-features and PCA-fuse call it with the same inputs, so they see the same values; the
bundle keeps the corrections of the features the model uses (:func:`harmonization_document`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import pandas as pd

from lungsurv.core.layout import ID_COLUMNS
from lungsurv.survival.fusion import ModelParameters
from lungsurv.survival.harmonization import HARMONIZATIONS, CenterHarmonizer, QuantileHarmonizer

logger = logging.getLogger(__name__)

#: Either harmoniser: both fit on (values, centers, reference) and write a bundle document.
Harmonizer = CenterHarmonizer | QuantileHarmonizer


def harmonize_features(
    features: pd.DataFrame,
    manifest: pd.DataFrame,
    is_train: pd.Series,
    *,
    method: str = "none",
    min_patients: int = 10,
) -> tuple[pd.DataFrame, dict[str, Harmonizer]]:
    """The feature table with each block harmonised by center (``method="center"``: location
    and scale; ``"quantile"``: quantile mapping), and the fitted harmonisers by ROI; ``"none"``
    (the paper) returns the table as it is."""
    if method not in HARMONIZATIONS:
        raise ValueError(f"harmonize must be one of {HARMONIZATIONS}, got {method!r}")
    if method == "none":
        return features, {}
    if "center" not in manifest.columns:
        raise ValueError(f"harmonize={method!r} needs a 'center' column in the manifest")
    centers = manifest.set_index(manifest["patient_id"].astype(str))["center"].astype(str)
    out = features.copy()
    harmonizers: dict[str, Harmonizer] = {}
    estimator = CenterHarmonizer if method == "center" else QuantileHarmonizer
    for roi, rows in features.groupby("roi", sort=False):
        block = rows.set_index(rows["patient_id"].astype(str))
        columns = [
            c
            for c in block.columns
            if c not in ID_COLUMNS and pd.api.types.is_numeric_dtype(block[c])
        ]
        columns = [c for c in columns if block[c].notna().any()]
        values = block[columns]
        known = values.index.intersection(centers.index)
        harmonizer = estimator(min_patients=min_patients).fit(
            values.loc[known],
            centers.loc[known],
            reference=is_train.reindex(known).fillna(False).astype(bool),
        )
        harmonized = harmonizer.transform(values.loc[known], centers.loc[known])
        out.loc[rows.index[block.index.isin(known)], columns] = harmonized.to_numpy()
        harmonizers[str(roi)] = harmonizer
    logger.info(
        "harmonisation: %d block(s) mapped onto the training center(s) %s",
        len(harmonizers),
        next(iter(harmonizers.values())).reference_ if harmonizers else [],
    )
    return out, harmonizers


def harmonization_document(
    harmonizers: Mapping[str, Harmonizer], params: ModelParameters
) -> dict[str, Any]:
    """The corrections of every feature the model uses, by block, for the bundle's metadata."""
    return {
        block.name: harmonizers[block.name].to_document(list(block.features))
        for block in params.blocks
        if block.features and block.name in harmonizers
    }
