"""The select-features component: the paper's signatures and a TNM baseline, on training rows."""

# No `from __future__ import annotations`: KFP reads the real annotation objects.
from typing import Optional

from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Output

from components.descriptions import documented
from components.images import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
@documented(
    metrics="Each signature's number of features and the empty signatures.",
    deep_features="The network's deep features, a block of their own (optional).",
)
def select_features(
    manifest: Input[Dataset],
    features: Input[Dataset],
    combined_ring: str,
    seed: int,
    univariate_alpha: float,
    lasso_folds: int,
    lasso_scoring: str,
    lasso_rule: str,
    harmonize: str,
    dl_block: str,
    fuse_stage: bool,
    selection: Output[Dataset],
    signature_scores: Output[Dataset],
    metrics: Output[Metrics],
    deep_features: Optional[Input[Dataset]] = None,  # noqa: UP045 (KFP parses Optional)
):
    """z-score, univariate Cox, LASSO-Cox per signature (after harmonising the centers' features
    when ``harmonize`` is "center" or "quantile"); selected features and every score.
    The metrics count each signature's features and the empty signatures (a loud warning)."""
    from pathlib import Path

    import pandas as pd

    from lungsurv.cohort.split import training_mask
    from lungsurv.core.logs import configure_logging
    from lungsurv.core.tables import write_metrics, write_parquet
    from lungsurv.stages.harmonization import harmonize_features
    from lungsurv.stages.selection import select_features as select

    configure_logging()

    cohort, table = pd.read_parquet(manifest.path), pd.read_parquet(features.path)
    if deep_features is not None:  # one more block, same schema
        table = pd.concat([table, pd.read_parquet(deep_features.path)], ignore_index=True)
    is_train = training_mask(cohort)
    table, _ = harmonize_features(table, cohort, is_train, method=harmonize)
    result = select(
        table,
        cohort,
        is_train,
        combined_ring=combined_ring,
        alpha=univariate_alpha,
        n_folds=lasso_folds,
        cv_scoring=lasso_scoring,
        cv_rule=lasso_rule,
        random_state=seed,
        dl_block=dl_block,
        fuse_stage=fuse_stage,
    )
    result.save(Path(selection.path))
    write_parquet(result.scores, signature_scores.path)
    empty = sorted(set(result.signature_blocks) - set(result.table["signature"]))
    selection.metadata.update(
        {"ring": result.ring, "combined_blocks": result.combined_blocks, "empty_signatures": empty}
    )
    counts = result.table["signature"].value_counts().items()
    write_metrics(
        metrics, {"empty_signatures": len(empty)} | {f"selected_{n}": int(c) for n, c in counts}
    )
