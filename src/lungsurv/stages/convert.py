"""The convert stage over a cohort: every manifest row to a folder of 1 mm volumes.

Each patient goes through :func:`lungsurv.imaging.convert.convert_patient` and is written as
``<patient_id>/image.nii.gz``, ``gtv.nii.gz`` (and ``lungs.nii.gz``) with a QA picture; the
result is the geometry table (one row per converted patient) and a failures table naming each
patient that could not be converted. Patients run in parallel, the largest first.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd
import SimpleITK as sitk

from lungsurv.core.errors import Failure
from lungsurv.core.layout import CT_STATISTICS_FILE, GTV_FILE, IMAGE_FILE, LUNGS_FILE, QA_FILE
from lungsurv.core.logs import PatientProgress
from lungsurv.core.parallel import map_patients
from lungsurv.core.paths import patient_folder
from lungsurv.core.tables import failures_frame
from lungsurv.imaging.convert import ConvertedPatient, ConvertSettings, convert_patient
from lungsurv.imaging.qa import overlay_png

logger = logging.getLogger(__name__)


def write_patient(converted: ConvertedPatient, out_dir: Path, *, write_qa: bool = True) -> Path:
    """Write a converted patient's NIfTI files (and QA picture) to ``out_dir/<patient_id>``."""
    folder = patient_folder(out_dir, converted.patient_id)
    folder.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(converted.image, str(folder / IMAGE_FILE), useCompression=True)
    sitk.WriteImage(converted.gtv, str(folder / GTV_FILE), useCompression=True)
    statistics = {k: float(converted.geometry[k]) for k in ("ct_mean_hu", "ct_std_hu")}
    (folder / CT_STATISTICS_FILE).write_text(json.dumps(statistics))
    if converted.lungs is not None:
        sitk.WriteImage(converted.lungs, str(folder / LUNGS_FILE), useCompression=True)
    if write_qa:
        overlay_png(
            converted.image,
            {"GTV": converted.gtv},
            folder / QA_FILE,
            title=f"{converted.patient_id}: GTV "
            f"{converted.geometry['gtv_volume_ml_resampled']:.1f} ml",
        )
    return folder


def _convert_and_write(
    job: tuple[dict[str, Any], Path, ConvertSettings],
) -> dict[str, Any] | Failure:
    row, out_dir, settings = job
    try:
        converted = convert_patient(row, settings)
        write_patient(converted, out_dir, write_qa=settings.write_qa)
        return converted.geometry
    except Exception as error:  # the patient boundary: one patient never stops the cohort
        return Failure.from_exception(str(row["patient_id"]), "convert", error)


def convert_cohort(
    manifest: pd.DataFrame,
    out_dir: Path,
    settings: ConvertSettings | None = None,
    *,
    workers: int = 1,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Convert every patient of ``manifest`` into ``out_dir``; return (geometry, failures).

    A failing patient is recorded in the failures table and the others go on. ``workers`` > 1
    converts patients in that many processes.
    """

    settings = settings or ConvertSettings()
    out_dir.mkdir(parents=True, exist_ok=True)
    jobs = [(row.to_dict(), out_dir, settings) for _, row in manifest.iterrows()]
    progress = PatientProgress("convert", len(jobs), logger)

    def report(index: int, result: dict[str, Any] | Failure, seconds: float) -> None:
        failed = [result] if isinstance(result, Failure) else []
        progress(str(jobs[index][0]["patient_id"]), seconds, failed)

    results = map_patients(_convert_and_write, jobs, workers=workers, on_result=report)
    rows = [r for r in results if isinstance(r, dict)]
    failures = [r for r in results if isinstance(r, Failure)]
    return geometry_frame(rows), failures_frame(failures)


def geometry_frame(rows: Iterable[dict[str, Any]]) -> pd.DataFrame:
    frame = pd.DataFrame(list(rows))
    if frame.empty:
        return pd.DataFrame({"patient_id": pd.Series(dtype=str)})
    return frame
