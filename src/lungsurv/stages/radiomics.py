"""The radiomics stage over a cohort: every converted patient's GTV and rings to feature rows.

Reads each patient's folder written by convert and segment-rings (names in
:mod:`lungsurv.core.layout`), extracts with :func:`lungsurv.radiomics.extract.extract_patient`,
and returns one long table (one row per patient and ROI) and a failures table; patients run in
parallel, the costliest first.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import SimpleITK as sitk

from lungsurv.core.errors import Failure
from lungsurv.core.layout import (
    CT_STATISTICS_FILE,
    GTV_FILE,
    GTV_ROI,
    IMAGE_FILE,
    NON_FEATURE_COLUMNS,
    ring_distance,
    ring_name,
)
from lungsurv.core.logs import PatientProgress
from lungsurv.core.parallel import map_patients
from lungsurv.core.provenance import image_digest, provenance_values
from lungsurv.core.tables import failures_frame
from lungsurv.radiomics.extract import extract_patient
from lungsurv.radiomics.params import engine_version, feature_names, params_digest

logger = logging.getLogger(__name__)


def features_frame(
    patient_id: str,
    results: Mapping[str, Mapping[str, float]],
    n_voxels: Mapping[str, int],
    columns: Sequence[str],
    provenance: Mapping[str, Mapping[str, str]],
) -> pd.DataFrame:
    """One row per ROI: ``patient_id, roi, n_voxels``, the ROI's provenance columns and the
    feature columns in order."""
    rows = []
    for roi, values in results.items():
        row: dict[str, Any] = {"patient_id": patient_id, "roi": roi, "n_voxels": n_voxels[roi]}
        row.update(provenance[roi])
        row.update({c: float(values[c]) for c in columns})
        rows.append(row)
    return pd.DataFrame(rows, columns=[*NON_FEATURE_COLUMNS, *columns])


def empty_features(columns: Sequence[str]) -> pd.DataFrame:
    """A feature table without rows, with the id, provenance and feature columns."""
    return pd.DataFrame(columns=[*NON_FEATURE_COLUMNS, *columns])


def engine_provenance(params: Mapping[str, Any]) -> dict[str, str]:
    """The provenance every row extracted with ``params`` shares: engine and parameter digest."""
    return {"engine_version": engine_version(), "params_digest": params_digest(params)}


def roi_provenance(
    image: sitk.Image, rois: Mapping[str, sitk.Image], shared: Mapping[str, str]
) -> dict[str, dict[str, str]]:
    """Each ROI's provenance columns: ``shared`` (:func:`engine_provenance`) and the image's and
    the mask's content digests."""
    image_hash = image_digest(image)
    return {
        name: provenance_values(**shared, image=image_hash, mask=image_digest(mask))
        for name, mask in rois.items()
    }


def patient_rois(volume_dir: Path, rings_dir: Path | None) -> dict[str, sitk.Image]:
    """The GTV and, when given, every ring of one converted patient, by ROI name."""

    rois = {GTV_ROI: sitk.ReadImage(str(volume_dir / GTV_FILE))}
    if rings_dir is not None and rings_dir.exists():
        distances = {ring_distance(p.name): p for p in rings_dir.glob("ring_*mm.nii.gz")}
        for distance in sorted(distances):
            rois[ring_name(distance)] = sitk.ReadImage(str(distances[distance]))
    return rois


def ct_statistics(volume_dir: Path) -> tuple[float, float] | None:
    """The whole scan's (mean, std) in HU that convert recorded for the patient, if any."""
    path = volume_dir / CT_STATISTICS_FILE
    if not path.exists():
        return None
    values = json.loads(path.read_text())
    return float(values["ct_mean_hu"]), float(values["ct_std_hu"])


def _extract_one(
    job: tuple[Path, Path | None, dict[str, Any], list[str], dict[str, str]],
) -> tuple[pd.DataFrame, list[Failure]]:
    volume_dir, rings_dir, params, columns, shared = job

    pid = volume_dir.name
    try:
        image = sitk.ReadImage(str(volume_dir / IMAGE_FILE))
        rois = patient_rois(volume_dir, rings_dir)
        statistics = ct_statistics(volume_dir)
        results, roi_failures = extract_patient(image, rois, params, ct_statistics=statistics)
    except Exception as error:  # the patient boundary: one patient never stops the cohort
        return empty_features(columns), [Failure.from_exception(pid, "radiomics", error)]
    failures = [Failure(pid, "radiomics", "RoiError", message) for message in roi_failures.values()]
    if GTV_ROI in roi_failures:
        return empty_features(columns), failures
    n_voxels = {
        name: int(np.count_nonzero(sitk.GetArrayViewFromImage(rois[name]))) for name in results
    }
    provenance = roi_provenance(image, {name: rois[name] for name in results}, shared)
    return features_frame(pid, results, n_voxels, columns, provenance), failures


def _voxel_count(path: Path) -> float:
    """Voxels of a converted volume, read from its header: the patient's cost estimate (0 for an
    unreadable file, whose patient then fails with the reason in its own job)."""
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError:
        return 0.0
    return float(np.prod(reader.GetSize()))


def extract_cohort(
    volumes_dir: Path,
    rings_dir: Path | None,
    params: Mapping[str, Any],
    *,
    workers: int = 1,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Features of every patient below ``volumes_dir`` (rings from ``rings_dir``).

    Returns (features, failures). A patient whose GTV fails has no rows and a failure; a ring
    that fails (for example one emptied by clipping to the lungs) has no row and a failure, and
    the patient's other ROIs are kept. No feature is ever NaN-filled.
    """

    columns = feature_names(params)
    shared = engine_provenance(params)
    folders = sorted(p for p in volumes_dir.iterdir() if (p / GTV_FILE).exists())
    jobs = [
        (
            folder,
            (rings_dir / folder.name) if rings_dir is not None else None,
            dict(params),
            columns,
            shared,
        )
        for folder in folders
    ]
    progress = PatientProgress("radiomics", len(jobs), logger)

    def report(index: int, result: tuple[pd.DataFrame, list[Failure]], seconds: float) -> None:
        frame, failures = result
        progress(folders[index].name, seconds, failures, completed=len(frame) > 0)

    costs = [_voxel_count(f / IMAGE_FILE) for f in folders]
    results = map_patients(_extract_one, jobs, workers=workers, costs=costs, on_result=report)
    frames = [frame for frame, _ in results if len(frame)]
    table = pd.concat(frames, ignore_index=True) if frames else empty_features(columns)
    failures = [failure for _, found in results for failure in found]
    return table, failures_frame(failures)
