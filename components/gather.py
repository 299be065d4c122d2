"""The gather component: the shards' tables, collected into one Parquet table each."""

# No `from __future__ import annotations`: KFP reads the real annotation objects.
from kfp import dsl
from kfp.dsl import Dataset, Input, Markdown, Output

from components.descriptions import documented
from components.images import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
@documented(
    rings="Every patient's ring volumes (Parquet).",
    failures="Every failure of every step so far, with the rejected rows (Parquet).",
    geometry="Every patient's geometry (Parquet).",
    features="Every patient's radiomics features, one row per patient and ROI (Parquet).",
)
def gather_imaging(
    rejected: Input[Dataset],
    geometries: Input[list[Dataset]],
    ring_tables: Input[list[Dataset]],
    convert_failures: Input[list[Dataset]],
    ring_failures: Input[list[Dataset]],
    feature_tables: Input[list[Dataset]],
    radiomics_failures: Input[list[Dataset]],
    geometry: Output[Dataset],
    rings: Output[Dataset],
    features: Output[Dataset],
    failures: Output[Dataset],
    summary: Output[Markdown],
):
    """One table each for geometry, rings, radiomics features and failures; a summary page."""
    from lungsurv.core.logs import configure_logging
    from lungsurv.core.tables import concat_tables, write_parquet
    from lungsurv.reports.markdown import imaging_summary_markdown

    configure_logging()

    geometry_table = concat_tables([a.path for a in geometries])
    ring_table = concat_tables([a.path for a in ring_tables])
    feature_table = concat_tables([a.path for a in feature_tables])
    failure_paths = [rejected.path] + [
        a.path for a in convert_failures + ring_failures + radiomics_failures
    ]
    failure_table = concat_tables(failure_paths)
    write_parquet(geometry_table, geometry.path)
    write_parquet(ring_table, rings.path)
    write_parquet(feature_table, features.path)
    write_parquet(failure_table, failures.path)
    with open(summary.path, "w") as handle:
        handle.write(
            imaging_summary_markdown(geometry_table, ring_table, failure_table, feature_table)
        )
    features.metadata.update({"rows": len(feature_table), "format": "parquet"})
    geometry.metadata.update({"patients": len(geometry_table), "format": "parquet"})
    rings.metadata.update({"rows": len(ring_table), "format": "parquet"})
    failures.metadata.update({"patients": len(failure_table), "format": "parquet"})
