"""The negative-controls component: the radiomics recipe on shuffled and moved ROIs (off unless
negative_controls is true)."""

# No `from __future__ import annotations`: KFP reads the real annotation objects.
from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Output

from components.descriptions import documented
from components.images import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
@documented(metrics="Each control's test C-index.")
def negative_controls(
    manifest: Input[Dataset],
    volumes: Input[list[Dataset]],
    selection: Input[Dataset],
    enabled: bool,
    params_uri: str,
    normalize_scale: float,
    variance: float,
    fusion: str,
    harmonize: str,
    workers: int,
    controls: Output[Dataset],
    failures: Output[Dataset],
    metrics: Output[Metrics],
):
    """Extract the GTV's and the ring's features of every patient's shuffled and moved
    controls, and fit the radiomics recipe on each with the selection's settings."""
    from pathlib import Path

    import pandas as pd

    from lungsurv.cohort.split import training_mask
    from lungsurv.core.logs import configure_logging
    from lungsurv.core.tables import failures_frame, write_metrics, write_parquet
    from lungsurv.radiomics.params import resolve_params
    from lungsurv.stages.controls import CONTROL_COLUMNS, control_models, extract_controls
    from lungsurv.stages.selection import Selection

    configure_logging()
    table, failed = pd.DataFrame(columns=list(CONTROL_COLUMNS)), failures_frame([])
    if enabled:
        cohort, chosen = pd.read_parquet(manifest.path), Selection.load(Path(selection.path))
        settings = chosen.settings
        tables, failed = extract_controls(
            [Path(v.path) for v in volumes], chosen.ring,
            resolve_params(params_uri, normalize_scale),
            seed=int(settings.get("random_state", 0)), workers=workers,
        )  # fmt: skip
        table = control_models(
            tables, cohort, training_mask(cohort), ring=chosen.ring, settings=settings,
            fusion=fusion, variance=variance, harmonize=harmonize,
        )  # fmt: skip
    write_parquet(table, controls.path)
    write_parquet(failed, failures.path)
    test = table[table["cohort"] == "test"]
    write_metrics(
        metrics, {f"test_c_index_{r.control}": round(r.c_index, 4) for r in test.itertuples()}
    )
