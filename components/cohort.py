"""The cohort components: fingerprint the cohort's data, validate the manifest, cut it into shards.

``fingerprint_cohort`` is never cached (the data behind a URI can change); it returns a digest
as a parameter, and ``prepare_cohort`` is cached on it: unchanged data gives the same cache key,
hence the same manifest artifact, hence cache hits in every later step.
"""

# No `from __future__ import annotations`: KFP reads the real annotation objects.
from kfp import dsl
from kfp.dsl import Dataset, Output

from components.descriptions import documented
from components.images import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
@documented(returns="The digest of the manifest and of every file it names.")
def fingerprint_cohort(cohort_uri: str) -> str:
    """Digest the cohort without reading an image: the manifest's bytes, and each named file's
    size and time (or S3 ETag)."""
    import logging

    from lungsurv.cohort.manifest import manifest_digest
    from lungsurv.core.logs import configure_logging

    configure_logging()
    digest = manifest_digest(cohort_uri)
    logging.getLogger("lungsurv.components.cohort").info("cohort digest %s", digest[:16])
    return digest


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
@documented(returns="The shard indices, for the shard loop.")
def prepare_cohort(
    cohort_uri: str,
    cohort_digest: str,
    shard_size: int,
    train_centers: list,
    split_column: str,
    test_fraction: float,
    seed: int,
    manifest: Output[Dataset],
    rejected: Output[Dataset],
) -> list:
    """Validate the manifest at ``cohort_uri``; write the valid rows, with the train/test split
    that every later step reads, and the rejected patients."""
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
    manifest.metadata.update(
        {"patients": len(valid), "train": train, "format": "parquet", "digest": cohort_digest}
    )
    rejected.metadata.update({"patients": len(report.rejected_ids), "format": "parquet"})
    return [str(i) for i in range(shard_count(len(report.valid), shard_size))]
