"""The segment-rings component: peritumoral rings for one shard of converted patients."""

# No `from __future__ import annotations`: KFP reads the real annotation objects.
from kfp import dsl
from kfp.dsl import Dataset, Input, Output

from components.descriptions import documented
from components.images import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
@documented()
def segment_rings(
    volumes: Input[Dataset],
    ring_distances_mm: list,
    clip_to_lungs: bool,
    workers: int,
    rings: Output[Dataset],
    ring_table: Output[Dataset],
    failures: Output[Dataset],
):
    """Rings at ``ring_distances_mm`` around every GTV in ``volumes``."""
    from pathlib import Path

    from lungsurv.core.logs import configure_logging
    from lungsurv.core.tables import write_parquet
    from lungsurv.stages.rings import segment_cohort

    configure_logging()

    distances = [float(d) for d in ring_distances_mm]
    table, failed = segment_cohort(
        Path(volumes.path),
        Path(rings.path),
        distances,
        clip_to_lungs=clip_to_lungs,
        workers=workers,
    )
    write_parquet(table, ring_table.path)
    write_parquet(failed, failures.path)
    rings.metadata.update({"patients": int(table["patient_id"].nunique()), "distances": distances})
    ring_table.metadata.update({"rows": len(table), "format": "parquet"})
    failures.metadata.update({"patients": len(failed), "format": "parquet"})
