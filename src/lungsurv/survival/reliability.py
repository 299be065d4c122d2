"""Whether a new patient lies within what a model was trained on: feature z-scores, the risk's
place in the training risks, survival that vanishes.

A bundle records its training patients' risks (:func:`training_risk`, 21 quantiles) and, per
used feature, the training mean and standard deviation it standardises with and the training
quantiles (:func:`training_features`: minimum, 1 %, median, 99 %, maximum). A served prediction
is ``reliable`` only when every used feature lies within the training patients' range (for a
bundle without the quantiles: within :data:`MAX_FEATURE_Z` training standard deviations of the
mean), the risk within the training range, the survival
above :data:`MIN_SURVIVAL`, and the image and GTV raised no range, plausibility or placement
warning; otherwise the reasons say why.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from lungsurv.survival.fusion import ModelParameters

#: A feature this many training standard deviations from the training mean is out of range.
MAX_FEATURE_Z = 4.0
#: Predicted survival below this is reported as such: beyond what training data support.
MIN_SURVIVAL = 1e-6
#: The training risks' quantiles a bundle stores (0, 5, ..., 100 %).
RISK_QUANTILE_LEVELS = tuple(np.linspace(0.0, 1.0, 21).round(2))
#: Each used feature's training quantiles a bundle stores: minimum, 1 %, median, 99 %, maximum.
FEATURE_QUANTILE_LEVELS = (0.0, 0.01, 0.5, 0.99, 1.0)


def training_features(
    blocks: Mapping[str, pd.DataFrame], params: ModelParameters
) -> dict[str, dict[str, list[float]]]:
    """Every used feature's training distribution (``block:feature`` -> ``quantiles`` at
    :data:`FEATURE_QUANTILE_LEVELS`, ``mean``, ``sd``), from the training rows ``blocks``."""
    found: dict[str, dict[str, list[float]]] = {}
    for block in params.blocks:
        for name in block.features:
            values = blocks[block.name][name].to_numpy(dtype=float)
            values = values[np.isfinite(values)]
            if not values.size:
                continue
            found[f"{block.name}:{name}"] = {
                "quantiles": [float(v) for v in np.quantile(values, FEATURE_QUANTILE_LEVELS)],
                "mean": [float(values.mean())],
                "sd": [float(values.std(ddof=1)) if values.size > 1 else 0.0],
            }
    return found


def training_risk(risk: np.ndarray) -> dict[str, list[float]]:
    """The training patients' risk distribution, as the bundle stores it."""
    values = np.asarray(risk, dtype=float)
    values = values[np.isfinite(values)]
    if not values.size:
        return {}
    return {
        "levels": [float(q) for q in RISK_QUANTILE_LEVELS],
        "quantiles": [float(v) for v in np.quantile(values, RISK_QUANTILE_LEVELS)],
    }


def risk_percentile(risk: float, distribution: Mapping[str, Sequence[float]]) -> float | None:
    """Where ``risk`` lies among the training risks (0-100, interpolated), or None."""
    if not distribution:
        return None
    quantiles = np.asarray(distribution["quantiles"], dtype=float)
    levels = np.asarray(distribution["levels"], dtype=float)
    if np.ptp(quantiles) == 0:
        return 50.0
    return float(100 * np.interp(risk, quantiles, levels))


def feature_z_scores(blocks: Mapping[str, pd.DataFrame], params: ModelParameters) -> dict:
    """Every used feature of the first row, in training standard deviations from the training
    mean, keyed ``block:feature``."""
    scores: dict[str, float] = {}
    for block in params.blocks:
        if not block.features:
            continue
        values = blocks[block.name][block.features].to_numpy(dtype=float)[0]
        z = (values - block.mean) / np.where(block.scale > 0, block.scale, 1.0)
        scores.update(
            {f"{block.name}:{f}": float(v) for f, v in zip(block.features, z, strict=True)}
        )
    return scores


def _feature_values(blocks: Mapping[str, pd.DataFrame], params: ModelParameters) -> dict:
    return {
        f"{block.name}:{name}": float(blocks[block.name][name].to_numpy(dtype=float)[0])
        for block in params.blocks
        for name in block.features
    }


def assess(
    *,
    risk: float,
    survival: Mapping[str, float],
    blocks: Mapping[str, pd.DataFrame],
    params: ModelParameters,
    warnings: Sequence[str] = (),
) -> dict[str, Any]:
    """``reliable`` and its reasons for one scored patient; ``warnings`` are the converter's
    range and plausibility warnings that make a prediction unreliable."""
    reasons = list(warnings)
    z = feature_z_scores(blocks, params)
    ranges = params.metadata.get("training_features", {})
    if ranges:
        # The training patients' own range: a training patient is never out of it, however
        # heavy-tailed a feature (a maximum reaches 4 SDs in a cohort of a hundred).
        values = _feature_values(blocks, params)
        outside = {
            k: round(z[k], 2)
            for k, v in values.items()
            if k in ranges and not ranges[k]["quantiles"][0] <= v <= ranges[k]["quantiles"][-1]
        }
        if outside:
            worst = max(outside, key=lambda k: abs(outside[k]))
            reasons.append(
                f"{len(outside)} of {len(z)} features are outside the training patients' range "
                f"(most: {worst} at {outside[worst]:+.1f} training SDs from the mean)"
            )
    else:  # a bundle without the training quantiles: the standardisation's mean and SD
        outside = {k: round(v, 2) for k, v in z.items() if not abs(v) <= MAX_FEATURE_Z}
        if outside:
            worst = max(
                outside, key=lambda k: abs(outside[k]) if np.isfinite(outside[k]) else np.inf
            )
            reasons.append(
                f"{len(outside)} of {len(z)} features are more than {MAX_FEATURE_Z:g} training "
                f"SDs from the training mean (most: {worst} at {outside[worst]:+.1f} SD)"
            )
    distribution = params.metadata.get("training_risk", {})
    percentile = risk_percentile(risk, distribution)
    if distribution:
        low, high = distribution["quantiles"][0], distribution["quantiles"][-1]
        slack = 1e-9 * max(1.0, abs(low), abs(high))  # serving equals the pipeline to 1e-9
        if not low - slack <= risk <= high + slack:
            reasons.append(f"risk {risk:.2f} is outside the training risks {low:.2f} to {high:.2f}")
    tiny = [h for h, s in survival.items() if s < MIN_SURVIVAL]
    if tiny:
        reasons.append(f"predicted survival below {MIN_SURVIVAL:g} at {', '.join(tiny)}")
    return {
        "reliable": not reasons,
        "reasons": reasons,
        "risk_percentile": percentile,
        "out_of_range_features": outside,
    }
