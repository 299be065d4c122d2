"""The fit-model component: select-features and PCA-fuse on the training cohort."""

# No `from __future__ import annotations`: KFP reads the real annotation objects.
from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Model, Output

from components.images import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE)
def fit_model(
    manifest: Input[Dataset],
    features: Input[Dataset],
    ring: str,
    train_centers: list,
    split_column: str,
    test_fraction: float,
    seed: int,
    variance: float,
    univariate_alpha: float,
    lasso_folds: int,
    bundle: Output[Model],
    scores: Output[Dataset],
    loadings: Output[Dataset],
    signature_scores: Output[Dataset],
    metrics: Output[Metrics],
):
    """Fit the combined model on the training patients; write the bundle and every risk."""
    from pathlib import Path

    import pandas as pd

    from lungsurv.evaluation import c_index
    from lungsurv.fusion import save_bundle
    from lungsurv.modeling import fit_combined, fit_signatures, ring_rois, split_cohort
    from lungsurv.tables import write_parquet

    cohort, table_of_features = pd.read_parquet(manifest.path), pd.read_parquet(features.path)
    is_train = split_cohort(
        cohort,
        train_centers=train_centers,
        split_column=split_column,
        test_fraction=test_fraction,
        seed=seed,
    )
    model, table = fit_combined(
        table_of_features,
        cohort,
        is_train,
        ring=ring,
        variance=variance,
        alpha=univariate_alpha,
        n_folds=lasso_folds,
        random_state=seed,
    )
    save_bundle(model.params_, Path(bundle.path))
    _, signatures = fit_signatures(
        table_of_features,
        cohort,
        is_train,
        rings=ring_rois(table_of_features),
        alpha=univariate_alpha,
        n_folds=lasso_folds,
        random_state=seed,
    )
    write_parquet(signatures, signature_scores.path)
    write_parquet(table, scores.path)
    write_parquet(model.loadings().reset_index(names="feature"), loadings.path)
    for split, rows in table.groupby("split"):
        if rows["event"].any() and rows["risk"].nunique() > 1:
            value = c_index(rows["time_days"], rows["event"], rows["risk"])
            metrics.log_metric(f"{split}_c_index", round(value, 4))
        metrics.log_metric(f"{split}_patients", len(rows))
    metrics.log_metric("pca_components", model.n_components_)
    bundle.metadata.update(model.params_.metadata | {"components": model.n_components_})
