"""The negative-controls stage: the same recipe on inputs that cannot hold the tumour's signal.

Off unless asked for (the paper has none). For every patient, each control of
:mod:`lungsurv.imaging.controls` ("shuffled": the CT's values permuted within the GTV and within
the ring; "moved": the GTV moved elsewhere in the volume, its ring made around it) gives a
feature table of the ROIs the combined model fuses (the GTV and its ring), extracted with the
radiomics stage's code and parameters. On each, the radiomics recipe runs as it ran on the real
features, with the selection's own settings and the pipeline's harmonisation and fusion
(:func:`control_models`), and the result is its C-index per cohort, to set beside the real
model's: a model that is not an artefact of the pipeline beats both clearly. The deep-learning
block is not part of the controls (its network would have to be trained again on each).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
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
    SPLIT_COLUMN,
    ring_distance,
)
from lungsurv.core.logs import PatientProgress
from lungsurv.core.parallel import map_patients
from lungsurv.core.tables import failures_frame
from lungsurv.imaging.controls import CONTROLS, UNCHANGED_FEATURES, control_inputs
from lungsurv.imaging.rings import make_rings
from lungsurv.radiomics.extract import extract_patient
from lungsurv.stages.fusion import fit_combined
from lungsurv.stages.harmonization import harmonize_features
from lungsurv.stages.radiomics import ct_statistics, patient_rois
from lungsurv.stages.selection import select_features
from lungsurv.survival.metrics import c_index

logger = logging.getLogger(__name__)

STAGE = "negative-controls"
CONTROL_COLUMNS = ("control", "cohort", "c_index", "patients", "features")


def extract_controls(
    volume_roots: Sequence[Path],
    ring: str | None,
    params: Mapping[str, Any],
    *,
    controls: Sequence[str] = CONTROLS,
    seed: int = 0,
    workers: int = 1,
) -> tuple[dict[str, pd.DataFrame], pd.DataFrame]:
    """Each control's long feature table (``patient_id, roi`` and the features of the GTV and
    ``ring``) for every converted patient, and the failures."""
    folders = sorted(p for root in volume_roots for p in Path(root).iterdir() if p.is_dir())
    folders = [f for f in folders if (f / GTV_FILE).exists()]
    jobs = [(f, ring, dict(params), tuple(controls), seed, i) for i, f in enumerate(folders)]
    progress = PatientProgress(STAGE, len(jobs), logger)

    def report(index: int, result: tuple[list[dict], list[Failure]], seconds: float) -> None:
        progress(folders[index].name, seconds, result[1], completed=not result[1])

    results = map_patients(_control_one, jobs, workers=workers, on_result=report)
    rows = [row for found, failed in results if not failed for row in found]
    failures = [failure for _, failed in results for failure in failed]
    frame = pd.DataFrame(rows)
    tables = {}
    for kind in controls:
        part = frame[frame["control"] == kind] if len(frame) else pd.DataFrame()
        # One frame held both controls: each keeps only its own columns.
        part = part.drop(columns="control", errors="ignore").dropna(axis=1, how="all")
        tables[kind] = part.reset_index(drop=True)
    return tables, failures_frame(failures)


def _control_one(
    job: tuple[Path, str | None, dict[str, Any], tuple[str, ...], int, int],
) -> tuple[list[dict[str, Any]], list[Failure]]:
    folder, ring, params, controls, seed, index = job
    rows: list[dict[str, Any]] = []
    try:
        image = sitk.ReadImage(str(folder / IMAGE_FILE))
        gtv = patient_rois(folder, None)[GTV_ROI]
        lungs_path = folder / LUNGS_FILE
        lungs = sitk.ReadImage(str(lungs_path)) if lungs_path.exists() else None
        distance = [ring_distance(ring)] if ring else []
        rng = np.random.default_rng([seed, index])
        for kind in controls:
            rois = {GTV_ROI: gtv}
            if kind == "shuffled" and ring:
                rois[ring] = make_rings(gtv, distance)[0].mask
            control_image, control_rois = control_inputs(kind, image, rois, rng, lungs=lungs)
            if kind == "moved" and ring:
                control_rois[ring] = make_rings(control_rois[GTV_ROI], distance)[0].mask
            values, failed = extract_patient(
                control_image, control_rois, params, ct_statistics=ct_statistics(folder)
            )
            if failed:
                raise ValueError("; ".join(failed.values()))
            dropped = UNCHANGED_FEATURES[kind]
            for roi, features in values.items():
                kept = {k: float(v) for k, v in features.items() if not k.startswith(dropped)}
                rows.append({"control": kind, "patient_id": folder.name, "roi": roi} | kept)
    except Exception as error:  # the patient boundary: one patient never stops the cohort
        return [], [Failure.from_exception(folder.name, STAGE, error)]
    return rows, []


def control_models(
    tables: Mapping[str, pd.DataFrame],
    manifest: pd.DataFrame,
    is_train: pd.Series,
    *,
    ring: str | None,
    settings: Mapping[str, Any],
    fusion: str = "pca",
    variance: float = 0.95,
    harmonize: str = "none",
) -> pd.DataFrame:
    """The radiomics recipe on each control's table, fitted on the training patients as the
    real model was (``settings``: the selection's ``alpha``, ``n_folds``, ``cv_scoring``,
    ``cv_rule``, ``random_state``): each control's C-index per cohort, the patients scored and
    the features its combined model uses."""
    keys = ("alpha", "n_folds", "cv_scoring", "cv_rule", "random_state")
    chosen = {k: settings[k] for k in keys if k in settings}
    rows = []
    for kind, table in tables.items():
        if table.empty:
            continue
        table = table.assign(n_voxels=0)
        table, _ = harmonize_features(table, manifest, is_train, method=harmonize)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            selection = select_features(
                table, manifest, is_train, rings=[ring] if ring else [],
                combined_ring=ring or "ring_6mm", **chosen,
            )  # fmt: skip
            model, scores = fit_combined(
                table, manifest, is_train, selection=selection, fusion=fusion, variance=variance,
                random_state=int(chosen.get("random_state", 0)),
            )  # fmt: skip
        used = sum(len(b.features) for b in model.params_.blocks)
        for cohort, part in scores.groupby(SPLIT_COLUMN):
            value = (
                c_index(time=part["time_days"], event=part["event"], risk=part["risk"])
                if part["event"].any() and part["risk"].nunique() > 1
                else 0.5  # the null model orders no pair
            )
            rows.append(
                {"control": kind, "cohort": str(cohort), "c_index": float(value),
                 "patients": len(part), "features": used}
            )  # fmt: skip
        logger.info("negative control %s: %d feature(s) used", kind, used)
    return pd.DataFrame(rows, columns=list(CONTROL_COLUMNS))
