"""The segment-rings stage over a cohort: rings for every converted patient, written beside it.

Reads the GTV (and lungs, when clipping) of each patient folder that convert wrote, makes the
rings with :func:`lungsurv.imaging.rings.make_rings`, writes them as ``ring_<d>mm.nii.gz`` plus a
QA picture, and returns one row per (patient, ring) and a failures table.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import SimpleITK as sitk

from lungsurv.core.errors import Failure, PatientError, problem_of
from lungsurv.core.layout import GTV_FILE, IMAGE_FILE, LUNGS_FILE, ring_file, ring_name
from lungsurv.core.logs import PatientProgress
from lungsurv.core.parallel import map_patients
from lungsurv.core.paths import patient_folder
from lungsurv.core.tables import failures_frame
from lungsurv.imaging.qa import overlay_png
from lungsurv.imaging.rings import DEFAULT_DISTANCES_MM, make_rings

logger = logging.getLogger(__name__)


def segment_patient(
    patient_dir: Path,
    out_dir: Path,
    distances_mm: Sequence[float] = DEFAULT_DISTANCES_MM,
    *,
    clip_to_lungs: bool = False,
    write_qa: bool = True,
) -> list[dict[str, object]]:
    """Rings for one converted patient folder; writes ``out_dir/<patient_id>/ring_*.nii.gz``."""
    pid = patient_dir.name
    gtv = sitk.ReadImage(str(patient_dir / GTV_FILE))
    lungs_path = patient_dir / LUNGS_FILE
    lungs = sitk.ReadImage(str(lungs_path)) if lungs_path.exists() else None
    rings = make_rings(gtv, distances_mm, lungs=lungs, clip_to_lungs=clip_to_lungs)
    folder = patient_folder(out_dir, pid)
    folder.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, object]] = []
    for ring in rings:
        sitk.WriteImage(ring.mask, str(folder / ring_file(ring.distance_mm)), useCompression=True)
        rows.append(
            {
                "patient_id": pid,
                "roi": ring_name(ring.distance_mm),
                "distance_mm": ring.distance_mm,
                "n_voxels": ring.n_voxels,
                "volume_ml": ring.volume_ml,
                "clipped_by_volume": ring.clipped_by_volume,
                "clipped_to_lungs": clip_to_lungs,
                "removed_by_lung_clip_ml": ring.removed_by_lung_clip_ml,
                "empty": ring.n_voxels == 0,
            }
        )
    if write_qa:
        image = sitk.ReadImage(str(patient_dir / IMAGE_FILE))
        # Each ring is drawn by its outer edge (GTV plus ring), which reads better than two lines.
        masks = {"GTV": gtv} | {
            f"+{r.distance_mm:g} mm": sitk.Or(gtv > 0, r.mask > 0) for r in rings
        }
        overlay_png(image, masks, folder / "qa_rings.png", title=f"{pid}: GTV and rings")
    return rows


def _segment_one(
    job: tuple[Path, Path, tuple[float, ...], bool, bool],
) -> list[dict[str, object]] | Failure:
    patient_dir, out_dir, distances_mm, clip_to_lungs, write_qa = job
    try:
        return segment_patient(
            patient_dir, out_dir, distances_mm, clip_to_lungs=clip_to_lungs, write_qa=write_qa
        )
    except Exception as error:  # the patient boundary: one patient never stops the cohort
        problem = PatientError(patient_dir.name, problem_of(error), stage="segment-rings")
        return Failure.from_exception(patient_dir.name, "segment-rings", problem)


RING_COLUMNS = (
    "patient_id",
    "roi",
    "distance_mm",
    "n_voxels",
    "volume_ml",
    "clipped_by_volume",
    "clipped_to_lungs",
    "removed_by_lung_clip_ml",
    "empty",
)


def segment_cohort(
    volumes_dir: Path,
    out_dir: Path,
    distances_mm: Sequence[float] = DEFAULT_DISTANCES_MM,
    *,
    clip_to_lungs: bool = False,
    write_qa: bool = True,
    workers: int = 1,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Rings for every patient folder below ``volumes_dir``; return (rings, failures).

    ``workers`` > 1 segments patients in that many processes.
    """

    out_dir.mkdir(parents=True, exist_ok=True)
    folders = sorted(p for p in volumes_dir.iterdir() if (p / GTV_FILE).exists())
    jobs = [(folder, out_dir, tuple(distances_mm), clip_to_lungs, write_qa) for folder in folders]
    progress = PatientProgress("segment-rings", len(jobs), logger)

    def report(index: int, result: list[dict[str, object]] | Failure, seconds: float) -> None:
        progress(folders[index].name, seconds, [result] if isinstance(result, Failure) else [])

    results = map_patients(_segment_one, jobs, workers=workers, on_result=report)
    rows = [row for r in results if isinstance(r, list) for row in r]
    failures = [r for r in results if isinstance(r, Failure)]
    frame = pd.DataFrame(rows, columns=list(RING_COLUMNS))
    return frame, failures_frame(failures)
