"""The evaluate component: the paper's tables and figures as a report for the KFP UI."""

# No `from __future__ import annotations`: KFP reads the real annotation objects.
from typing import Optional

from kfp import dsl
from kfp.dsl import HTML, Dataset, Input, Markdown, Metrics, Model, Output

from components.descriptions import documented
from components.images import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
@documented(
    returns="The combined model's test C-index (0 when undefined or for the null model); it "
    "gates deployment.",
    metrics="C-indices, test AUCs, hazard ratio, the oracle's C-index and the warnings' count.",
)
def evaluate(
    cohort_uri: str,
    manifest: Input[Dataset],
    bundle: Input[Model],
    scores: Input[Dataset],
    signature_scores: Input[Dataset],
    selection: Input[Dataset],
    n_bootstrap: int,
    seed: int,
    control_margin: float,
    tables: Output[Dataset],
    report: Output[HTML],
    summary: Output[Markdown],
    metrics: Output[Metrics],
    network: Optional[Input[Model]] = None,  # noqa: UP045 (KFP parses Optional)
    icc: Optional[Input[Dataset]] = None,  # noqa: UP045
    controls: Optional[Input[Dataset]] = None,  # noqa: UP045
) -> float:
    """C-index, AUC, DeLong, calibration, risk groups and subgroups; HTML, Markdown, metrics;
    ``network`` (train-3D-SE-ResNet's) adds its training to the trust checks. Returns the
    combined model's test C-index (0 when undefined or for the null model), which gates
    deployment."""
    from pathlib import Path

    import pandas as pd

    from lungsurv.core.layout import HISTORY_FILE
    from lungsurv.core.logs import configure_logging
    from lungsurv.core.tables import write_metrics
    from lungsurv.reports.html import evaluation_html
    from lungsurv.reports.markdown import evaluation_markdown
    from lungsurv.stages.evaluation import evaluate_models, write_tables
    from lungsurv.stages.selection import SELECTED_FILE
    from lungsurv.stages.trust import is_null_model
    from lungsurv.survival.bundle import load_bundle
    from lungsurv.synthetic.export import oracle_c_index_for

    configure_logging()

    combined = pd.read_parquet(scores.path)
    result = evaluate_models(
        combined,
        pd.read_parquet(signature_scores.path),
        load_bundle(Path(bundle.path)),
        manifest=pd.read_parquet(manifest.path),
        selected=pd.read_parquet(Path(selection.path) / SELECTED_FILE),
        n_resamples=n_bootstrap,
        seed=seed,
        oracle_c_index=oracle_c_index_for(cohort_uri, combined),
        training_history=pd.read_parquet(Path(network.path) / HISTORY_FILE) if network else None,
        icc=pd.read_parquet(icc.path) if icc is not None else None,
        controls=pd.read_parquet(controls.path) if controls is not None else None,
        control_margin=control_margin,
    )
    write_tables(result, Path(tables.path))
    report.path += ".html"  # a browser opens the downloaded file as a page
    Path(report.path).write_text(evaluation_html(result))
    Path(summary.path).write_text(evaluation_markdown(result))
    write_metrics(metrics, result.metrics)
    if is_null_model(result.params) or result.metrics.get("control_shortfalls"):
        return 0.0  # never deployed: the null model, or one no better than its controls
    return float(result.metrics.get("test_combined_c_index", 0.0))
