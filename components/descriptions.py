"""What every pipeline parameter and every component input and output means, written once.

KFP 2 reads a function's Google-style docstring (``Args:``, and ``Returns:`` for the return
value ``Output``) into the compiled spec, where the KFP UI shows it beside each field.
:func:`documented` appends that section from :data:`DESCRIPTIONS`, so a name that crosses a
step boundary (``seed``, ``manifest``, ``features``) says the same thing on every step and on
the pipeline; a step where a name means something narrower overrides it by keyword. List and
dict parameters give a JSON example, since the UI takes their values as JSON.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, TypeVar

Function = TypeVar("Function", bound=Callable[..., Any])

DESCRIPTIONS: dict[str, str] = {
    # The cohort.
    "cohort_uri": "The cohort manifest, CSV or Parquet: a path or s3://bucket/key "
    "(columns: docs/cohort.md). Required.",
    "cohort_digest": "A digest of the manifest and of every file it names (sizes, times, ETags): "
    "the cohort step's cache key, so unchanged data reuses every later step's outputs.",
    "shard_size": "Patients per shard; each shard is one convert -> rings -> radiomics chain.",
    "shard_index": "Which shard of the manifest this step converts (from 0).",
    "train_centers": 'Centers whose patients form the training cohort, as JSON, e.g. ["MAASTRO"] '
    "(the paper's); the other centers are the test cohort. Empty: split_column or test_fraction.",
    "split_column": "A manifest column holding train/test per patient; used when train_centers "
    "is empty.",
    "test_fraction": "With neither train_centers nor split_column: the share of patients drawn "
    "(seeded, stratified by event) as the test cohort.",
    "seed": "The seed of every random choice (split, CV folds, bootstrap, network): a rerun with "
    "the same seed gives the same result.",
    "manifest": "The validated manifest with its train/test split (Parquet); every later step "
    "reads the split from it.",
    "rejected": "Manifest rows refused by validation, with the reason (Parquet).",
    # Imaging.
    "crop_margin_mm": "Margin kept around the GTV when the CT is cropped before resampling, mm.",
    "mask_interpolation": "How the GTV mask is resampled to 1 mm: volume (keeps the volume), "
    "linear (thresholded at 0.5) or nearest.",
    "ring_distances_mm": "Peritumoral ring widths in mm, as JSON, e.g. [3, 6, 9] (the paper's).",
    "clip_rings_to_lungs": "Clip the rings to the lungs when the RTSTRUCT outlines them.",
    "clip_to_lungs": "Clip the rings to the lungs when the RTSTRUCT outlines them.",
    "workers": "Patients processed in parallel processes inside a step.",
    "volumes": "Per patient: the 1 mm CT crop, the GTV and the lungs (NIfTI) and the scan's "
    "HU statistics.",
    "geometry": "Per patient: spacing, slice thickness, GTV volume, placement and scan "
    "statistics (Parquet).",
    "geometries": "Every shard's geometry table.",
    "rings": "Per patient: one NIfTI mask per peritumoral ring.",
    "ring_table": "Per patient and ring: its volume and whether it was clipped (Parquet).",
    "ring_tables": "Every shard's ring table.",
    "failures": "Patients this step could not process: patient_id, stage, error_type, message "
    "(Parquet); the others went on.",
    "convert_failures": "Every shard's convert failures.",
    "ring_failures": "Every shard's segment-rings failures.",
    "radiomics_failures": "Every shard's radiomics failures.",
    # Radiomics.
    "radiomics_params_uri": "A PyRadiomics parameter YAML (path or s3:// URI); empty for the "
    "paper's packaged file (original, wavelet, LoG 1-5 mm, bin width 25: 1316 features).",
    "params_uri": "A PyRadiomics parameter YAML (path or s3:// URI); empty for the paper's "
    "packaged file.",
    "radiomics_normalize_scale": "normalizeScale of the CT normalisation; > 0 overrides the "
    "parameter file's.",
    "normalize_scale": "normalizeScale of the CT normalisation; > 0 overrides the parameter "
    "file's.",
    "features": "Radiomics features, one row per patient and ROI (gtv, ring_<d>mm), plus the "
    "deep features' rows when given (Parquet).",
    "feature_tables": "Every shard's radiomics table.",
    "summary": "A Markdown page for the KFP UI.",
    # Deep learning.
    "dl_input_size": "Network input edge in voxels (the paper: 64).",
    "input_size": "Network input edge in voxels.",
    "dl_max_epochs": "Most training epochs (the paper: 100).",
    "max_epochs": "Most training epochs.",
    "dl_batch_size": "Training batch size (the paper: 32).",
    "batch_size": "Training batch size.",
    "dl_learning_rate": "Adam learning rate (the paper: 1e-4).",
    "learning_rate": "Adam learning rate.",
    "dl_patience": "Epochs without a better validation loss before training stops.",
    "patience": "Epochs without a better validation loss before training stops.",
    "dl_units_per_stage": "Residual units per stage of the 3D SE-ResNet.",
    "units_per_stage": "Residual units per stage.",
    "dl_channels": "Widths of the network's stages as JSON, e.g. [64, 128, 256, 512] (the "
    "paper's); the last is the number of deep features.",
    "channels": "Widths of the network's stages as JSON, e.g. [64, 128, 256, 512].",
    "dl_head": "Widths of the fully connected head as JSON, e.g. [512, 256, 128] (the paper's).",
    "head": "Widths of the fully connected head as JSON, e.g. [512, 256, 128].",
    "dl_se_reduction": "Squeeze-and-excitation reduction ratio.",
    "se_reduction": "Squeeze-and-excitation reduction ratio.",
    "dl_crop": "Network input framing: bbox (the GTV's bounding box, the paper's) or fixed (a "
    "cube of dl_field_of_view_mm around it).",
    "crop": "Network input framing: bbox or fixed.",
    "dl_field_of_view_mm": "Edge of the fixed crop, mm.",
    "field_of_view_mm": "Edge of the fixed crop, mm.",
    "dl_intensity": "Network input intensities: zscore (the paper's) or window (HU window).",
    "intensity": "Network input intensities: zscore or window.",
    "se_ablation": "Also train the network without SE blocks and report both (the paper's "
    "ablation).",
    "dl_checkpoint_dir": "Where training checkpoints go, so a retried step resumes; empty: the "
    "mounted checkpoint volume (dl_checkpoint_pvc) when there is one, else none.",
    "checkpoint_dir": "Where training checkpoints go; empty: the mounted checkpoint volume when "
    "there is one, else none.",
    "dl_checkpoint_pvc": "The PersistentVolumeClaim mounted on the training pod for its "
    "checkpoints (manifests/ creates lungsurv-checkpoints).",
    "gpu_node_selector": "Node selector of the training pod as JSON, e.g. "
    '{"nvidia.com/gpu.present": "true"}.',
    "gpu_toleration": 'Toleration of the training pod as JSON, e.g. {"key": "nvidia.com/gpu", '
    '"operator": "Exists", "effect": "NoSchedule"}.',
    "model": "The trained network's weights and configuration.",
    "deep_features": "The network's deep features of every patient, in the radiomics table's "
    "schema (ROI dl; Parquet).",
    "curves": "The training curves and the SE ablation as an HTML page.",
    "network": "train-3D-SE-ResNet's model, when deep features are fused.",
    # Selection, fusion, evaluation.
    "combined_ring": "The ring the combined model fuses, e.g. ring_6mm (the paper's), or auto "
    "(chosen by cross-validation on the training cohort).",
    "robustness_perturbations": "Perturbed versions (noise at the scan's own level, a rotation "
    "about z, a sub-voxel shift, the contour grown or shrunk by 1 mm) of each sampled training "
    "patient, from which every feature's ICC is computed; 0 (the paper's) turns it off.",
    "robustness_min_icc": "Features whose ICC(1,1) over the perturbations is below this are "
    "dropped before selection (0.75: good reliability, Koo and Li 2016).",
    "robustness_patients": "Training patients perturbed (a seeded sample; 0: all of them).",
    "n_perturbations": "Perturbed versions per patient; 0 turns the stage off.",
    "min_icc": "Features below this ICC are dropped.",
    "max_patients": "Training patients perturbed (a seeded sample; 0: all).",
    "icc": "Every feature's ICC per ROI over the perturbations (roi, feature, icc, patients, "
    "versions; Parquet; empty when the stage is off).",
    "negative_controls": "Also run the radiomics recipe on negative controls (the CT's values "
    "shuffled within the ROIs; the ROI moved elsewhere in the lungs) and require the model to "
    "beat them to be deployed; off in the paper's settings.",
    "control_margin": "How much higher than each negative control's the combined model's test "
    "C-index must be for the model to be deployed.",
    "enabled": "Whether the step runs (off: it writes empty tables).",
    "controls": "Each negative control's C-index per cohort (Parquet; empty when off).",
    "harmonize": "none (the paper's), center (each center's features mapped onto the training "
    "center's mean and SD) or quantile (onto the training center's quantiles), before selection "
    "and fusion.",
    "univariate_alpha": "Univariate Cox p-value a feature must beat (the paper: 0.05).",
    "lasso_folds": "Cross-validation folds of LASSO-Cox (the paper: 10).",
    "lasso_scoring": "LASSO-Cox CV criterion: deviance (glmnet's) or c_index.",
    "lasso_rule": "LASSO-Cox penalty rule: min (glmnet's lambda.min) or 1se.",
    "dl_block": "What the DL signature selects from: features (the network's pooled deep "
    "features, the paper's) or risk (the network's own Cox output).",
    "fuse_stage": "Whether the combined model fuses the overall stage (the manifest's "
    "overall_stage, a pre-specified Cox covariate) with the imaging blocks; the paper's model "
    "is imaging only. Served predictions then need the patient's overall_stage.",
    "selection": "Every signature's selected features, coefficients and scaling (Parquet, "
    "with a JSON of the settings).",
    "signature_scores": "Every patient's score under each signature and the TNM baseline "
    "(Parquet).",
    "pca_variance": "Share of PCA variance the combined model keeps (the paper: 0.95); 0 "
    "chooses it by 5-fold CV on the training cohort.",
    "variance": "Share of PCA variance kept; 0 chooses it by CV.",
    "fusion": "pca (the paper's), signatures (a Cox model on the blocks' signature scores) or "
    "stacked (that Cox model fitted on out-of-fold signature scores of the training cohort).",
    "bundle": "The model bundle that serving loads (parameters, training ranges, radiomics "
    "settings, the network when fused).",
    "scores": "Every patient's combined risk, risk group and per-block signatures (Parquet).",
    "loadings": "The PCA loadings (Parquet), the paper's Figure 5.",
    "n_bootstrap": "Bootstrap resamples for the confidence intervals (the paper: 1000).",
    "tables": "Every evaluation table (Parquet).",
    "report": "The evaluation report, an HTML page: warnings first, then every table and figure.",
    "metrics": "Headline numbers for the KFP UI's metrics view.",
    # Deployment.
    "deploy": "Deploy the model behind KServe when its test C-index reaches deploy_min_c_index.",
    "deploy_min_c_index": "The test C-index the model must reach to be deployed.",
    "model_name": "The InferenceService's name.",
    "serving_namespace": "Namespace of the InferenceService.",
    "namespace": "Namespace of the InferenceService.",
    "models_uri": "Where bundles are uploaded for serving, s3://bucket/prefix.",
    "serving_image": "The serving container image.",
    "serving_service_account": "Service account with read access to models_uri.",
    "service_account": "Service account with read access to models_uri.",
    "serving_min_replicas": "Fewest serving replicas.",
    "min_replicas": "Fewest serving replicas.",
    "serving_max_replicas": "Most serving replicas.",
    "max_replicas": "Most serving replicas.",
    "timeout_s": "Seconds to wait for the InferenceService to become ready.",
    "s3_secret_name": "Kubernetes Secret with S3_ENDPOINT and the AWS_* credentials for s3:// "
    "inputs (optional).",
}


def documented(**overrides: str) -> Callable[[Function], Function]:
    """Append Google-style ``Args:`` (the inputs) and ``Returns:`` (the ``Output[...]``
    artifacts, and ``Output``, the return value, from ``returns=``) sections to the function's
    docstring from :data:`DESCRIPTIONS`, for KFP to put into the compiled spec (KFP 2.17 reads
    output descriptions from the ``Returns:`` section only). A name with no description is a
    ``KeyError`` naming it, so nothing goes undocumented."""
    from kfp.dsl.types.type_annotations import is_artifact_wrapped_in_Output

    def decorate(function: Function) -> Function:
        texts = dict(overrides)
        returns = texts.pop("returns", None)
        parameters = inspect.signature(function).parameters
        unknown = [n for n in parameters if n not in texts and n not in DESCRIPTIONS]
        if unknown:
            raise KeyError(f"{function.__name__}: no description for {unknown}")
        summary = inspect.getdoc(function)
        if not summary:
            raise ValueError(f"{function.__name__} needs a docstring to document")
        described = {n: texts.get(n) or DESCRIPTIONS[n] for n in parameters}
        outputs = [n for n, p in parameters.items() if is_artifact_wrapped_in_Output(p.annotation)]
        lines = [summary, "", "Args:"]
        lines += [f"    {n}: {text}" for n, text in described.items() if n not in outputs]
        if outputs or returns:
            lines += ["", "Returns:"]
            lines += [f"    {n}: {described[n]}" for n in outputs]
            lines += [f"    Output: {returns}"] if returns else []
        function.__doc__ = "\n".join(lines)
        return function

    return decorate
