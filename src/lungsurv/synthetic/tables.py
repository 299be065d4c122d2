"""Synthetic feature tables with a known survival model, for measuring feature selection.

:func:`weak_signal_table` draws what a radiomics table of a real NSCLC cohort looks like to the
selection stage: many features in correlated families (a filter or a feature class measures one
property many ways), a few weakly prognostic families, and a true log-hazard whose C-index is
about 0.62, as on NSCLC-Radiomics (Lung1), where published radiomics signatures reach 0.58-0.65.
"""

from __future__ import annotations

import numpy as np

#: Features per correlated family, and their correlation with the family's latent factor squared.
FAMILY_SIZE = 10
FAMILY_SHARED_VARIANCE = 0.6


def weak_signal_table(
    seed: int,
    *,
    n: int = 300,
    p: int = 300,
    informative: int = 6,
    effect: float = 0.13,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(features ``(n, p)``, time in days, event, true log-hazard).

    The ``p`` features come in families of :data:`FAMILY_SIZE` sharing a latent factor (within a
    family the correlation is :data:`FAMILY_SHARED_VARIANCE`); the latent factors of the first
    ``informative`` families carry the hazard, each with ``effect`` x sqrt(2) per standard
    deviation. Exponential survival (median about 480 days at the mean risk), uniform censoring
    between 300 and 3000 days (about 80 % deaths).
    """
    if p % FAMILY_SIZE or p < FAMILY_SIZE:
        raise ValueError(f"p must be a positive multiple of {FAMILY_SIZE}, got {p}")
    if not 0 <= informative <= p // FAMILY_SIZE:
        raise ValueError(f"informative must be in [0, {p // FAMILY_SIZE}], got {informative}")
    rng = np.random.default_rng(seed)
    latent = rng.standard_normal((n, p // FAMILY_SIZE))
    shared = np.sqrt(FAMILY_SHARED_VARIANCE)
    own = np.sqrt(1.0 - FAMILY_SHARED_VARIANCE)
    features = np.repeat(latent, FAMILY_SIZE, axis=1) * shared + rng.standard_normal((n, p)) * own
    log_hazard = latent[:, :informative].sum(axis=1) * effect * np.sqrt(2.0)
    event_time = rng.exponential(700.0 * np.exp(-log_hazard))
    censor = rng.uniform(300.0, 3000.0, n)
    time = np.maximum(np.minimum(event_time, censor), 1.0)
    return features, time, event_time <= censor, log_hazard
