"""The prepare-cohort component: validate the manifest and cut it into shards."""

# No `from __future__ import annotations`: KFP reads the real annotation objects.
from kfp import dsl
from kfp.dsl import Dataset, Output

from components.images import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE)
def prepare_cohort(
    cohort_uri: str,
    shard_size: int,
    train_centers: list,
    split_column: str,
    test_fraction: float,
    seed: int,
    manifest: Output[Dataset],
    rejected: Output[Dataset],
) -> list:
    """Validate the manifest at ``cohort_uri``; write the valid rows, with the train/test split
    that every later step reads, and the rejected patients.

    Returns the shard indices for ``dsl.ParallelFor``.
    """
    import logging

    from lungsurv.cohort.manifest import load_manifest, shard_count
    from lungsurv.cohort.split import with_split
    from lungsurv.core.layout import SPLIT_COLUMN, TRAIN
    from lungsurv.core.logs import configure_logging
    from lungsurv.core.tables import write_parquet

    configure_logging()
    log = logging.getLogger("lungsurv.components.cohort")
    report = load_manifest(cohort_uri)
    for problem in report.problems:
        log.warning("rejected: %s", problem)
    if report.valid.empty:
        raise ValueError(f"no valid patient in {cohort_uri}: {len(report.problems)} problem(s)")
    valid = with_split(
        report.valid, train_centers=train_centers, split_column=split_column,
        test_fraction=test_fraction, seed=seed,
    )  # fmt: skip
    write_parquet(valid, manifest.path)
    write_parquet(report.failures(), rejected.path)
    train = int((valid[SPLIT_COLUMN] == TRAIN).sum())
    log.info("cohort: %d patient(s)", len(valid))
    log.info("split: %d train, %d test", train, len(valid) - train)
    manifest.metadata.update({"patients": len(valid), "train": train, "format": "parquet"})
    rejected.metadata.update({"patients": len(report.rejected_ids), "format": "parquet"})
    return [str(i) for i in range(shard_count(len(report.valid), shard_size))]
