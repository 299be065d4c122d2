"""The radiomics component: PyRadiomics features for one shard's GTVs and rings."""

# No `from __future__ import annotations`: KFP reads the real annotation objects.
from kfp import dsl
from kfp.dsl import Dataset, Input, Output

from components.descriptions import documented
from components.images import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
@documented()
def extract_radiomics(
    volumes: Input[Dataset],
    rings: Input[Dataset],
    params_uri: str,
    normalize_scale: float,
    workers: int,
    features: Output[Dataset],
    failures: Output[Dataset],
):
    """One row per (patient, ROI) with the parameter file's features (default: the paper's 1316).

    ``params_uri``: a PyRadiomics YAML (path or s3:// URI); empty for the paper's packaged file.
    ``normalize_scale`` > 0 overrides the file's ``normalizeScale``.
    """
    from pathlib import Path

    from lungsurv.core.layout import feature_columns
    from lungsurv.core.logs import configure_logging
    from lungsurv.core.tables import write_parquet
    from lungsurv.radiomics.params import resolve_params
    from lungsurv.stages.radiomics import extract_cohort

    configure_logging()

    params = resolve_params(params_uri, normalize_scale)
    table, failed = extract_cohort(Path(volumes.path), Path(rings.path), params, workers=workers)
    write_parquet(table, features.path)
    write_parquet(failed, failures.path)
    features.metadata.update({"rows": len(table), "features": len(feature_columns(table.columns))})
    failures.metadata.update({"rows": len(failed)})
