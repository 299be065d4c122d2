"""The robustness component: perturbed training patients, each feature's ICC, the unrobust ones
dropped (off unless robustness_perturbations > 0)."""

# No `from __future__ import annotations`: KFP reads the real annotation objects.
from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Output

from components.descriptions import documented
from components.images import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
@documented(
    features="The gathered radiomics table (Parquet).",
    robust_features="The same table with each ROI's features below the ICC threshold emptied "
    "in that ROI's rows (the table as it was when the stage is off; Parquet).",
    metrics="Patients perturbed and features kept per ROI.",
)
def assess_robustness(
    manifest: Input[Dataset],
    volumes: Input[list[Dataset]],
    features: Input[Dataset],
    n_perturbations: int,
    min_icc: float,
    max_patients: int,
    clip_rings_to_lungs: bool,
    params_uri: str,
    normalize_scale: float,
    seed: int,
    workers: int,
    robust_features: Output[Dataset],
    icc: Output[Dataset],
    failures: Output[Dataset],
    metrics: Output[Metrics],
):
    """Perturb up to ``max_patients`` training patients ``n_perturbations`` times, compute every
    feature's ICC per ROI, and drop those below ``min_icc`` before selection."""
    from pathlib import Path

    import pandas as pd

    from lungsurv.cohort.split import training_mask
    from lungsurv.core.logs import configure_logging
    from lungsurv.core.tables import write_metrics, write_parquet
    from lungsurv.radiomics.params import resolve_params
    from lungsurv.stages.robustness import RobustnessSettings, assess_robustness, robustness_metrics

    configure_logging()
    cohort, table = pd.read_parquet(manifest.path), pd.read_parquet(features.path)
    is_train = training_mask(cohort)
    settings = RobustnessSettings(
        n_perturbations=n_perturbations, min_icc=min_icc, max_patients=max_patients,
        clip_rings_to_lungs=clip_rings_to_lungs, seed=seed,
    )  # fmt: skip
    result = assess_robustness(
        [Path(v.path) for v in volumes], table, list(is_train.index[is_train]),
        resolve_params(params_uri, normalize_scale) if n_perturbations else {}, settings,
        workers=workers,
    )  # fmt: skip
    write_parquet(result.features, robust_features.path)
    write_parquet(result.icc, icc.path)
    write_parquet(result.failures, failures.path)
    write_metrics(metrics, robustness_metrics(result, settings))
