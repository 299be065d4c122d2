"""The convert component: one shard of patients to 1 mm NIfTI volumes."""

# No `from __future__ import annotations`: KFP reads the real annotation objects.
from kfp import dsl
from kfp.dsl import Dataset, Input, Output

from components.descriptions import documented
from components.images import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
@documented()
def convert_shard(
    manifest: Input[Dataset],
    shard_index: str,
    shard_size: int,
    crop_margin_mm: float,
    mask_interpolation: str,
    workers: int,
    volumes: Output[Dataset],
    geometry: Output[Dataset],
    failures: Output[Dataset],
):
    """Convert the patients of shard ``shard_index``; failures are recorded, not raised."""
    from pathlib import Path

    import pandas as pd

    from lungsurv.cohort.manifest import shard_frame
    from lungsurv.core.logs import configure_logging
    from lungsurv.core.tables import write_parquet
    from lungsurv.imaging.convert import ConvertSettings
    from lungsurv.stages.convert import convert_cohort

    configure_logging()

    rows = shard_frame(pd.read_parquet(manifest.path), int(shard_index), shard_size)
    settings = ConvertSettings(crop_margin_mm=crop_margin_mm, mask_interpolation=mask_interpolation)
    table, failed = convert_cohort(rows, Path(volumes.path), settings, workers=workers)
    write_parquet(table, geometry.path)
    write_parquet(failed, failures.path)
    volumes.metadata.update({"patients": len(table), "layout": "<patient_id>/image.nii.gz"})
    geometry.metadata.update({"patients": len(table), "format": "parquet"})
    failures.metadata.update({"patients": len(failed), "format": "parquet"})
