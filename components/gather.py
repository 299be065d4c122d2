"""The gather component: the shards' tables, collected into one Parquet table each."""

# No `from __future__ import annotations`: KFP reads the real annotation objects.
from kfp import dsl
from kfp.dsl import Dataset, Input, Markdown, Output

from components.images import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE)
def gather_imaging(
    rejected: Input[Dataset],
    geometries: Input[list[Dataset]],
    ring_tables: Input[list[Dataset]],
    convert_failures: Input[list[Dataset]],
    ring_failures: Input[list[Dataset]],
    geometry: Output[Dataset],
    rings: Output[Dataset],
    failures: Output[Dataset],
    summary: Output[Markdown],
):
    """One geometry table, one ring table, one failures table and a summary for the KFP UI."""
    from lungsurv.reporting import imaging_summary_markdown
    from lungsurv.tables import concat_tables, write_parquet

    geometry_table = concat_tables([a.path for a in geometries])
    ring_table = concat_tables([a.path for a in ring_tables])
    failure_paths = [rejected.path] + [a.path for a in convert_failures + ring_failures]
    failure_table = concat_tables(failure_paths)
    write_parquet(geometry_table, geometry.path)
    write_parquet(ring_table, rings.path)
    write_parquet(failure_table, failures.path)
    with open(summary.path, "w") as handle:
        handle.write(imaging_summary_markdown(geometry_table, ring_table, failure_table))
    geometry.metadata.update({"patients": len(geometry_table), "format": "parquet"})
    rings.metadata.update({"rows": len(ring_table), "format": "parquet"})
    failures.metadata.update({"patients": len(failure_table), "format": "parquet"})
