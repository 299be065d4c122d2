"""The PCA-fuse component: PCA over the selected features and the combined Cox model."""

# No `from __future__ import annotations`: KFP reads the real annotation objects.
from typing import Optional

from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Model, Output

from components.descriptions import documented
from components.images import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
@documented(
    metrics="Components kept and features used by the combined model.",
    deep_features="The network's deep features, fused when the selection uses them (optional).",
)
def pca_fuse(
    manifest: Input[Dataset],
    features: Input[Dataset],
    selection: Input[Dataset],
    signature_scores: Input[Dataset],
    geometry: Input[Dataset],
    variance: float,
    fusion: str,
    harmonize: str,
    seed: int,
    radiomics_params_uri: str,
    radiomics_normalize_scale: float,
    bundle: Output[Model],
    scores: Output[Dataset],
    loadings: Output[Dataset],
    metrics: Output[Metrics],
    deep_features: Optional[Input[Dataset]] = None,  # noqa: UP045 (KFP parses Optional)
    network: Optional[Input[Model]] = None,  # noqa: UP045
):
    """Fit the combined model on the training rows; write the bundle (with the network when
    deep features are fused), every risk, the loadings."""
    from pathlib import Path

    import pandas as pd

    from lungsurv.cohort.split import training_mask
    from lungsurv.core.logs import configure_logging
    from lungsurv.core.tables import write_metrics, write_parquet
    from lungsurv.radiomics.params import resolve_params
    from lungsurv.stages.fusion import fit_combined, write_bundle
    from lungsurv.stages.harmonization import harmonize_features
    from lungsurv.stages.selection import Selection, with_clinical_block

    configure_logging()
    cohort, table = pd.read_parquet(manifest.path), pd.read_parquet(features.path)
    if deep_features is not None:
        table = pd.concat([table, pd.read_parquet(deep_features.path)], ignore_index=True)
    is_train = training_mask(cohort)
    table, harmonizers = harmonize_features(table, cohort, is_train, method=harmonize)
    chosen = Selection.load(Path(selection.path), pd.read_parquet(signature_scores.path))
    table = with_clinical_block(table, cohort, chosen.combined_blocks)  # fuse_stage's block
    model, risks = fit_combined(
        table, cohort, is_train, selection=chosen, variance=variance, fusion=fusion,
        random_state=seed,
    )  # fmt: skip
    write_bundle(
        model, Path(bundle.path), scores=risks, geometry=pd.read_parquet(geometry.path),
        selection=chosen,
        radiomics_params=resolve_params(radiomics_params_uri, radiomics_normalize_scale),
        network_dir=Path(network.path) if network is not None else None, features=table,
        harmonizers=harmonizers,
    )  # fmt: skip
    write_parquet(risks, scores.path)
    write_parquet(model.loadings().reset_index(names="feature"), loadings.path)
    used = sum(len(b.features) for b in model.params_.blocks)
    write_metrics(metrics, {"pca_components": model.n_components_, "selected_features": used})
    bundle.metadata.update(model.params_.metadata | {"components": model.n_components_})
