"""The contract between stages: every file name, ROI name and constant that crosses a boundary.

A stage writes what the next one reads; both take the names from here, so a name is typed once.
Converted volumes (convert -> rings, radiomics, training, serving) live in one folder per patient
(``<patient_id>/image.nii.gz``, ``gtv.nii.gz``, ``lungs.nii.gz``, ``qa.png``); rings beside them
as ``ring_<d>mm.nii.gz``. Feature tables are long: one row per (patient, ROI) with the
:data:`ID_COLUMNS` first; the ROI names are :data:`GTV_ROI`, :func:`ring_name` and
:data:`DL_ROI`. A model bundle is a folder with :data:`BUNDLE_FILE`, the radiomics parameter
file and, when the model fuses deep features, the network in :data:`NETWORK_DIR`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

#: The RTSTRUCT ROI taken as the tumour when a manifest row names none (NSCLC-Radiomics' name).
DEFAULT_ROI = "GTV-1"

# One folder per converted patient.
IMAGE_FILE = "image.nii.gz"
GTV_FILE = "gtv.nii.gz"
LUNGS_FILE = "lungs.nii.gz"
QA_FILE = "qa.png"
#: The whole scan's intensity statistics (HU mean and standard deviation before the crop), which
#: PyRadiomics' ``normalize`` would take from the whole CT it is given.
CT_STATISTICS_FILE = "ct_statistics.json"
#: Per-stage tables beside the patients' folders (the CLI's outputs).
GEOMETRY_FILE = "geometry.parquet"
FAILURES_FILE = "failures.parquet"
RINGS_FILE = "rings.parquet"

# ROI names in the feature tables and block names in the models.
GTV_ROI = "gtv"
DL_ROI = "dl"
#: The network's own risk (its Cox output), a column of the ``dl`` rows beside the deep features.
DL_RISK_FEATURE = "dl_risk"
#: The clinical block (``fuse_stage``): pre-specified covariates from the manifest, not images.
CLINICAL_ROI = "clinical"
#: The clinical block's one covariate: the overall stage as an ordinal number (I 1 ... IV 5).
STAGE_FEATURE = "overall_stage"
RING_PREFIX = "ring_"
_RING = re.compile(r"ring_(\d+(?:\.\d+)?)mm")
#: The manifest column the cohort step writes (``train``/``test``) and every later step reads.
SPLIT_COLUMN = "split"
TRAIN, TEST = "train", "test"
#: The columns that identify a feature row; every other column is a feature.
ID_COLUMNS: tuple[str, ...] = ("patient_id", "roi", "n_voxels")
#: How each feature row was made (:mod:`lungsurv.core.provenance`): the engine's version, a
#: digest of the effective parameters, content digests of the image and the ROI's mask, and this
#: package's version. Text columns after the ids; never features.
PROVENANCE_COLUMNS: tuple[str, ...] = (
    "engine_version",
    "params_digest",
    "image_digest",
    "mask_digest",
    "lungsurv_version",
)
#: Every column of a feature table that is not a feature.
NON_FEATURE_COLUMNS: tuple[str, ...] = ID_COLUMNS + PROVENANCE_COLUMNS

# The trained network (train-3D-SE-ResNet -> PCA-fuse -> bundle -> serving).
WEIGHTS_FILE = "model.pt"
CONFIG_FILE = "config.json"
NETWORK_FILES: tuple[str, ...] = (WEIGHTS_FILE, CONFIG_FILE)
#: The per-epoch losses and validation C-index beside the weights (evaluate's trust checks).
HISTORY_FILE = "history.parquet"

# The model bundle (PCA-fuse -> evaluate, deploy, serving).
BUNDLE_FILE = "model.json"
NETWORK_DIR = "network"
RADIOMICS_PARAMS_FILE = "radiomics_params.yaml"

#: A patient id names the patient's folder in every stage's output: 1 to 64 letters, digits,
#: ``-``, ``_`` or ``.``, not starting with ``.`` (so never ``.``, ``..`` or a hidden name).
PATIENT_ID_PATTERN = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}")
#: Names a patient id may not take: the files the stages write beside the patients' folders.
RESERVED_NAMES = frozenset(n.lower() for n in (GEOMETRY_FILE, FAILURES_FILE, RINGS_FILE))

#: Survival horizons of the evaluation and of every prediction: 1, 2 and 3 years, in days.
HORIZONS_DAYS: tuple[int, ...] = (365, 730, 1095)


def ring_name(distance_mm: float) -> str:
    """The ROI name of a ring: ``ring_3mm``, ``ring_6mm``, ``ring_2.5mm``."""
    return f"{RING_PREFIX}{distance_mm:g}mm"


def ring_file(distance_mm: float) -> str:
    """The file a ring's mask is written to: ``ring_3mm.nii.gz``."""
    return f"{ring_name(distance_mm)}.nii.gz"


def is_ring(roi: str) -> bool:
    """Whether ``roi`` names a peritumoral ring (``ring_<d>mm``)."""
    return _RING.fullmatch(str(roi)) is not None


def ring_distance(roi: str) -> float:
    """The distance of a ring from its ROI name or file name (``ring_6mm``, ``ring_6mm.nii.gz``)."""
    name = str(roi).removesuffix(".nii.gz")
    match = _RING.fullmatch(name)
    if match is None:
        raise ValueError(f"{roi!r} is not a ring name (expected ring_<distance>mm)")
    return float(match.group(1))


def ring_rois(rois: Iterable[str]) -> list[str]:
    """The ring ROIs among ``rois``, once each, by distance (``ring_3mm`` before ``ring_12mm``)."""
    return sorted({str(r) for r in rois if is_ring(str(r))}, key=ring_distance)


def feature_columns(columns: Iterable[str]) -> list[str]:
    """The feature columns of a feature table (all but :data:`NON_FEATURE_COLUMNS`), in order."""
    return [str(c) for c in columns if c not in NON_FEATURE_COLUMNS]


def is_radiomics_roi(roi: str) -> bool:
    """Whether ``roi`` is a block of radiomics features (the GTV or a ring), not deep features."""
    return roi == GTV_ROI or is_ring(roi)


def patient_id_problem(patient_id: str) -> str | None:
    """Why ``patient_id`` cannot name a folder, or None when it can."""
    if not PATIENT_ID_PATTERN.fullmatch(patient_id):
        return "a patient id must be 1-64 letters, digits, '-', '_' or '.', not starting with '.'"
    if patient_id.lower() in RESERVED_NAMES:
        return f"a patient id may not be one of the stages' file names {sorted(RESERVED_NAMES)}"
    return None
