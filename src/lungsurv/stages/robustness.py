"""The robustness stage: which features survive a slightly different scan or contour.

Off unless asked for (``n_perturbations`` > 0; the paper has no such step). For up to
``max_patients`` training patients (a seeded sample; the test patients are never looked at),
each converted patient is perturbed ``n_perturbations`` times
(:mod:`lungsurv.imaging.perturbation`: noise at the image's own noise level, a rotation about z,
a sub-voxel shift, the contour grown or shrunk by 1 mm), its rings are made again around the
perturbed GTV with the rings stage's code, and every ROI's features are extracted with the
radiomics stage's code and parameters. With the original features (from the radiomics stage)
as one more version, each feature's ICC per ROI is computed
(:func:`lungsurv.radiomics.robustness.icc_table`), and features below ``min_icc`` are emptied
from their ROI's rows (:func:`~lungsurv.radiomics.robustness.drop_unrobust`), so select-features
and PCA-fuse never offer them.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from time import perf_counter
from typing import Any

import numpy as np
import pandas as pd
import SimpleITK as sitk

from lungsurv.core.errors import Failure
from lungsurv.core.layout import (
    GTV_FILE,
    GTV_ROI,
    IMAGE_FILE,
    LUNGS_FILE,
    NON_FEATURE_COLUMNS,
    is_ring,
    ring_distance,
    ring_name,
)
from lungsurv.core.logs import PatientProgress
from lungsurv.core.parallel import map_patients
from lungsurv.core.tables import failures_frame
from lungsurv.imaging.perturbation import draw_perturbations, estimate_noise_hu, perturb
from lungsurv.imaging.rings import make_rings
from lungsurv.radiomics.extract import extract_patient
from lungsurv.radiomics.robustness import drop_unrobust, icc_table
from lungsurv.stages.radiomics import ct_statistics

logger = logging.getLogger(__name__)

STAGE = "robustness"
#: The column numbering a patient's versions: 0 the original, 1..K the perturbations.
VERSION_COLUMN = "version"


@dataclass(frozen=True)
class RobustnessSettings:
    """What the robustness stage does (the pipeline's ``robustness_*`` parameters)."""

    #: Perturbed versions per patient; 0 turns the stage off.
    n_perturbations: int = 0
    #: Features whose ICC is below this are dropped (Koo and Li 2016: 0.75 is "good").
    min_icc: float = 0.75
    #: Training patients perturbed, a seeded sample (0: every training patient).
    max_patients: int = 30
    icc_kind: str = "1,1"
    max_rotation_deg: float = 10.0
    max_translation_mm: float = 0.5
    contour_mm: float = 1.0
    clip_rings_to_lungs: bool = False
    seed: int = 0

    def __post_init__(self) -> None:
        if self.n_perturbations < 0:
            raise ValueError(f"n_perturbations must be >= 0, got {self.n_perturbations}")
        if self.max_patients < 0 or self.max_patients == 1:
            raise ValueError(f"max_patients must be 0 or >= 2, got {self.max_patients}")
        if not 0.0 <= self.min_icc <= 1.0:
            raise ValueError(f"min_icc must be in [0, 1], got {self.min_icc}")


@dataclass
class RobustnessResult:
    """The stage's outputs: the filtered feature table, the ICC table, failures, counts."""

    features: pd.DataFrame
    icc: pd.DataFrame
    failures: pd.DataFrame
    dropped: dict[str, int]
    patients: int
    #: Wall-clock seconds per perturbed patient (all its versions), the stage's cost.
    seconds_per_patient: float = 0.0


def assess_robustness(
    volume_roots: Sequence[Path],
    features: pd.DataFrame,
    train_ids: Sequence[str],
    params: Mapping[str, Any],
    settings: RobustnessSettings,
    *,
    workers: int = 1,
) -> RobustnessResult:
    """Perturb the sampled training patients, compute every feature's ICC per ROI, and drop
    the features below ``settings.min_icc`` from the table (returned unchanged when off)."""
    empty = pd.DataFrame(columns=["roi", "feature", "icc", "patients", "versions", "kept"])
    if settings.n_perturbations == 0:
        return RobustnessResult(features, empty, failures_frame([]), {}, 0)
    folders = {p.name: p for root in volume_roots for p in Path(root).iterdir() if p.is_dir()}
    chosen = _sample(
        [p for p in sorted(map(str, train_ids)) if p in folders],
        settings.max_patients,
        settings.seed,
    )
    rois = sorted({str(r) for r in features["roi"] if r == GTV_ROI or is_ring(str(r))})
    distances = [ring_distance(r) for r in rois if is_ring(r)]
    jobs = [
        (folders[pid], distances, dict(params), settings, index) for index, pid in enumerate(chosen)
    ]
    progress = PatientProgress(STAGE, len(jobs), logger)

    def report(index: int, result: tuple[pd.DataFrame, list[Failure]], seconds: float) -> None:
        progress(chosen[index], seconds, result[1], completed=not result[1])

    started = perf_counter()
    results = map_patients(_perturb_one, jobs, workers=workers, on_result=report)
    seconds = (perf_counter() - started) / max(len(jobs), 1)
    perturbed = [frame for frame, failed in results if not failed]
    failures = [failure for _, found in results for failure in found]
    original = features[features["patient_id"].astype(str).isin(chosen)]
    original = original[original["roi"].isin(rois)].assign(**{VERSION_COLUMN: 0})
    versions = pd.concat([original, *perturbed], ignore_index=True)
    versions = versions.drop(
        columns=[c for c in NON_FEATURE_COLUMNS if c not in ("patient_id", "roi")]
    )
    icc = icc_table(versions, kind=settings.icc_kind, version_column=VERSION_COLUMN)
    filtered, dropped = drop_unrobust(features, icc, settings.min_icc)
    icc["kept"] = icc["icc"].fillna(-np.inf) >= settings.min_icc
    for roi, count in dropped.items():
        logger.info(
            "robustness: %s keeps %d of %d features (ICC >= %.2f over %d patients)",
            roi, int((icc["roi"] == roi).sum()) - count, int((icc["roi"] == roi).sum()),
            settings.min_icc, len(perturbed),
        )  # fmt: skip
    return RobustnessResult(
        filtered, icc, failures_frame(failures), dropped, len(perturbed), seconds
    )


def robustness_metrics(result: RobustnessResult, settings: RobustnessSettings) -> dict[str, Any]:
    """The stage's KFP metrics: patients perturbed, versions, features kept and dropped per
    ROI, seconds per patient."""
    metrics: dict[str, Any] = {
        "robustness_patients": result.patients,
        "robustness_perturbations": settings.n_perturbations,
        "robustness_seconds_per_patient": round(result.seconds_per_patient, 2),
    }
    assessed = result.icc.groupby("roi").size().to_dict() if len(result.icc) else {}
    for roi, total in assessed.items():
        metrics[f"robust_features_{roi}"] = int(total) - result.dropped.get(str(roi), 0)
        metrics[f"unrobust_features_{roi}"] = result.dropped.get(str(roi), 0)
    return metrics


def _sample(patients: list[str], max_patients: int, seed: int) -> list[str]:
    if max_patients == 0 or len(patients) <= max_patients:
        return patients
    rng = np.random.default_rng(seed)
    return sorted(rng.choice(patients, size=max_patients, replace=False).tolist())


def _perturb_one(
    job: tuple[Path, list[float], dict[str, Any], RobustnessSettings, int],
) -> tuple[pd.DataFrame, list[Failure]]:
    """One patient's perturbed versions, as long feature rows with their version number."""
    folder, distances, params, settings, index = job
    try:
        image = sitk.ReadImage(str(folder / IMAGE_FILE))
        gtv = sitk.ReadImage(str(folder / GTV_FILE))
        lungs_path = folder / LUNGS_FILE
        lungs = sitk.ReadImage(str(lungs_path)) if lungs_path.exists() else None
        rng = np.random.default_rng([settings.seed, index])
        noise = estimate_noise_hu(image)
        drawn = draw_perturbations(
            settings.n_perturbations,
            noise_hu=noise,
            rng=rng,
            max_rotation_deg=settings.max_rotation_deg,
            max_translation_mm=settings.max_translation_mm,
            contour_mm=settings.contour_mm,
        )
        rows = []
        for version, perturbation in enumerate(drawn, start=1):
            moved, mask = perturb(image, gtv, perturbation, rng)
            rois = {GTV_ROI: mask}
            if distances:
                clip = settings.clip_rings_to_lungs and lungs is not None
                for ring in make_rings(mask, distances, lungs=lungs, clip_to_lungs=clip):
                    rois[ring_name(ring.distance_mm)] = ring.mask
            values, failed = extract_patient(
                moved, rois, params, ct_statistics=ct_statistics(folder)
            )
            if failed:
                raise ValueError("; ".join(failed.values()))
            for roi, features in values.items():
                rows.append({"patient_id": folder.name, "roi": roi, VERSION_COLUMN: version}
                            | {k: float(v) for k, v in features.items()})  # fmt: skip
    except Exception as error:  # the patient boundary: one patient never stops the cohort
        return pd.DataFrame(), [Failure.from_exception(folder.name, STAGE, error)]
    return pd.DataFrame(rows), []
