"""The default of every pipeline parameter that steers the science, read from the library.

Each value comes from the object that owns it (:class:`~lungsurv.imaging.convert.ConvertSettings`,
:class:`~lungsurv.deep.config.TrainConfig`, the keyword defaults of the stage functions), so the
pipeline's signature, the CLI and the parameter files cannot drift from the library: they read
:data:`PIPELINE_DEFAULTS`, and a test compares all of them. The paper's settings are these
defaults; ``params/demo.yaml`` lists only what the demo changes.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from lungsurv.cohort.split import DEFAULT_TRAIN_CENTERS, split_cohort
from lungsurv.core.parallel import map_patients
from lungsurv.deep.config import TrainConfig
from lungsurv.imaging.convert import ConvertSettings
from lungsurv.imaging.rings import DEFAULT_DISTANCES_MM
from lungsurv.radiomics.params import load_params, resolve_params
from lungsurv.stages.evaluation import evaluate_models
from lungsurv.stages.fusion import fit_combined
from lungsurv.stages.harmonization import harmonize_features
from lungsurv.stages.rings import segment_cohort
from lungsurv.stages.robustness import RobustnessSettings
from lungsurv.stages.selection import select_features

#: The pipeline's seed (the paper's article number): splits, folds, bootstraps, network weights.
DEFAULT_SEED = 20251669
#: Patients per shard of the convert -> rings -> radiomics loop.
DEFAULT_SHARD_SIZE = 8


def keyword_default(function: Callable[..., Any], name: str) -> Any:
    """The default of ``function``'s keyword argument ``name``."""
    default = inspect.signature(function).parameters[name].default
    if default is inspect.Parameter.empty:
        raise ValueError(f"{function.__qualname__}({name}) has no default")
    return default


_CONVERT = ConvertSettings()
_TRAIN = TrainConfig()
_ROBUSTNESS = RobustnessSettings()

PIPELINE_DEFAULTS: dict[str, Any] = {
    "shard_size": DEFAULT_SHARD_SIZE,
    "crop_margin_mm": _CONVERT.crop_margin_mm,
    "mask_interpolation": _CONVERT.mask_interpolation,
    "ring_distances_mm": list(DEFAULT_DISTANCES_MM),
    "clip_rings_to_lungs": keyword_default(segment_cohort, "clip_to_lungs"),
    "radiomics_params_uri": keyword_default(resolve_params, "params_uri"),
    # The packaged file's own value, passed on explicitly (0 would keep a custom file's).
    "radiomics_normalize_scale": float(load_params()["setting"]["normalizeScale"]),
    "workers": keyword_default(map_patients, "workers"),
    "combined_ring": keyword_default(select_features, "combined_ring"),
    "train_centers": list(DEFAULT_TRAIN_CENTERS),
    "split_column": keyword_default(split_cohort, "split_column"),
    "test_fraction": keyword_default(split_cohort, "test_fraction"),
    "seed": DEFAULT_SEED,
    "robustness_perturbations": _ROBUSTNESS.n_perturbations,
    "robustness_min_icc": _ROBUSTNESS.min_icc,
    "robustness_patients": _ROBUSTNESS.max_patients,
    # The paper has no negative controls: off unless asked for.
    "negative_controls": False,
    "control_margin": keyword_default(evaluate_models, "control_margin"),
    "harmonize": keyword_default(harmonize_features, "method"),
    "pca_variance": keyword_default(fit_combined, "variance"),
    "fusion": keyword_default(fit_combined, "fusion"),
    "univariate_alpha": keyword_default(select_features, "alpha"),
    "lasso_folds": keyword_default(select_features, "n_folds"),
    "lasso_scoring": keyword_default(select_features, "cv_scoring"),
    "lasso_rule": keyword_default(select_features, "cv_rule"),
    "dl_block": keyword_default(select_features, "dl_block"),
    "fuse_stage": keyword_default(select_features, "fuse_stage"),
    "n_bootstrap": keyword_default(evaluate_models, "n_resamples"),
    "dl_input_size": _TRAIN.input_size,
    "dl_max_epochs": _TRAIN.max_epochs,
    "dl_batch_size": _TRAIN.batch_size,
    "dl_learning_rate": _TRAIN.learning_rate,
    "dl_patience": _TRAIN.patience,
    "dl_units_per_stage": _TRAIN.units_per_stage,
    "dl_channels": list(_TRAIN.channels),
    "dl_head": list(_TRAIN.head),
    "dl_se_reduction": _TRAIN.se_reduction,
    "dl_crop": _TRAIN.crop,
    "dl_field_of_view_mm": _TRAIN.field_of_view_mm,
    "dl_intensity": _TRAIN.intensity,
    "se_ablation": False,  # train_cohort(ablation=False); read here without importing torch
    "dl_checkpoint_dir": "",
}
