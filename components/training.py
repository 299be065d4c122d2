"""The train-3D-SE-ResNet component: the paper's network on a GPU node, and its deep features."""

# No `from __future__ import annotations`: KFP reads the real annotation objects.
from kfp import dsl
from kfp.dsl import HTML, Dataset, Input, Metrics, Model, Output

from components.descriptions import documented
from components.images import GPU_IMAGE


@dsl.component(base_image=GPU_IMAGE, install_kfp_package=False)
@documented()
def train_se_resnet(
    manifest: Input[Dataset],
    volumes: Input[list[Dataset]],
    seed: int,
    input_size: int,
    max_epochs: int,
    batch_size: int,
    learning_rate: float,
    patience: int,
    units_per_stage: int,
    channels: list,
    head: list,
    se_reduction: int,
    crop: str,
    field_of_view_mm: float,
    intensity: str,
    se_ablation: bool,
    checkpoint_dir: str,
    model: Output[Model],
    deep_features: Output[Dataset],
    failures: Output[Dataset],
    curves: Output[HTML],
    metrics: Output[Metrics],
):
    """Train on the training patients (Cox loss), write the weights and every patient's deep
    features (512 with the paper's network: the last width of ``channels``); with
    ``se_ablation`` also the network without SE, side by side."""
    from pathlib import Path

    import pandas as pd

    from lungsurv.cohort.split import training_mask
    from lungsurv.core.logs import configure_logging
    from lungsurv.core.tables import write_metrics, write_parquet
    from lungsurv.deep.config import TrainConfig
    from lungsurv.deep.train import save_model
    from lungsurv.reports.html import curves_html
    from lungsurv.stages.training import checkpoint_folder, train_cohort

    configure_logging()

    cohort = pd.read_parquet(manifest.path)
    is_train = training_mask(cohort)  # the cohort step's split
    config = TrainConfig(
        input_size=input_size, max_epochs=max_epochs, batch_size=batch_size,
        learning_rate=learning_rate, patience=patience, units_per_stage=units_per_stage,
        channels=tuple(channels), head=tuple(head), se_reduction=se_reduction, crop=crop,
        field_of_view_mm=field_of_view_mm, intensity=intensity, seed=seed,
    )  # fmt: skip
    key = [repr(config), str(se_ablation), manifest.uri, *(v.uri for v in volumes)]
    run = train_cohort(
        [Path(v.path) for v in volumes], cohort, is_train, config, ablation=se_ablation,
        checkpoint_dir=checkpoint_folder(checkpoint_dir, key),
    )  # fmt: skip
    save_model(run.result, Path(model.path))
    write_parquet(run.features, deep_features.path)
    write_parquet(run.failures, failures.path)
    curves.path += ".html"  # a browser opens the downloaded file as a page
    Path(curves.path).write_text(curves_html(run))
    c_index = {f"{r.cohort}_c_index_{r.model}": round(float(r.c_index), 4)
               for r in run.c_index_table().itertuples()}  # fmt: skip
    write_metrics(
        metrics,
        c_index | {"best_epoch": run.result.best_epoch, "parameters": run.result.parameters},
    )
