"""The segment-rings stage: peritumoral rings around the GTV, in physical space.

A ring at distance ``d`` is the GTV dilated by ``d`` mm minus the GTV: every voxel outside the
GTV whose centre lies within ``d`` mm (Euclidean, in physical units) of a GTV voxel centre. The
distance comes from SimpleITK's signed Maurer distance map with the image spacing, so the ring is
exact in mm on any grid (the paper made its 3/6/9 mm expansions with SimpleITK).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import SimpleITK as sitk

from lungsurv.convert import GTV_FILE, IMAGE_FILE, LUNGS_FILE, voxel_volume_ml
from lungsurv.errors import Failure, InputError, PatientError
from lungsurv.tables import failures_frame

DEFAULT_DISTANCES_MM: tuple[float, ...] = (3.0, 6.0, 9.0)
RINGS_FILE = "rings.parquet"


def ring_name(distance_mm: float) -> str:
    """The ROI name of a ring: ``ring_3mm``, ``ring_6mm``, ``ring_2.5mm``."""
    return f"ring_{distance_mm:g}mm"


def ring_file(distance_mm: float) -> str:
    return f"{ring_name(distance_mm)}.nii.gz"


@dataclass
class Ring:
    """One peritumoral ring and its facts."""

    distance_mm: float
    mask: sitk.Image
    n_voxels: int
    volume_ml: float
    clipped_by_volume: bool
    removed_by_lung_clip_ml: float


def outside_distance_mm(gtv: sitk.Image) -> sitk.Image:
    """Distance (mm) from each voxel outside the GTV to the nearest GTV voxel; <= 0 inside."""
    return sitk.SignedMaurerDistanceMap(
        sitk.Cast(gtv > 0, sitk.sitkUInt8),
        insideIsPositive=False,
        squaredDistance=False,
        useImageSpacing=True,
    )


def _touches_border(array: np.ndarray) -> bool:
    return bool(
        array[0].any()
        or array[-1].any()
        or array[:, 0].any()
        or array[:, -1].any()
        or array[:, :, 0].any()
        or array[:, :, -1].any()
    )


def make_rings(
    gtv: sitk.Image,
    distances_mm: Sequence[float] = DEFAULT_DISTANCES_MM,
    *,
    lungs: sitk.Image | None = None,
    clip_to_lungs: bool = False,
) -> list[Ring]:
    """The rings at ``distances_mm`` around ``gtv``.

    ``clipped_by_volume`` flags a ring that reaches the edge of the volume, where it is cut (the
    convert stage's crop margin is meant to prevent this). With ``clip_to_lungs`` the rings are
    intersected with ``lungs`` (the paper does not do this; off by default).
    """
    if not distances_mm:
        raise ValueError("distances_mm is empty")
    for d in distances_mm:
        if not np.isfinite(d) or d <= 0:
            raise ValueError(f"ring distances must be > 0 mm, got {d}")
    if clip_to_lungs and lungs is None:
        raise InputError("clip_to_lungs needs a lung mask, and this patient has none")
    inside = sitk.GetArrayViewFromImage(gtv) > 0
    if not inside.any():
        raise InputError("the GTV mask has zero voxels")
    distance = sitk.GetArrayFromImage(outside_distance_mm(gtv))
    lung_array = sitk.GetArrayViewFromImage(lungs) > 0 if lungs is not None else None
    voxel_ml = voxel_volume_ml(gtv)
    rings: list[Ring] = []
    # A tiny slack absorbs float rounding of distances that are exact multiples of the spacing.
    slack = 1e-6 * max(gtv.GetSpacing())
    for d in sorted(float(v) for v in distances_mm):
        ring = (distance > 0) & (distance <= d + slack) & ~inside
        removed = 0.0
        if clip_to_lungs and lung_array is not None:
            removed = float(np.count_nonzero(ring & ~lung_array)) * voxel_ml
            ring &= lung_array
        image = sitk.GetImageFromArray(ring.astype(np.uint8))
        image.CopyInformation(gtv)
        n = int(np.count_nonzero(ring))
        rings.append(
            Ring(
                distance_mm=d,
                mask=image,
                n_voxels=n,
                volume_ml=n * voxel_ml,
                clipped_by_volume=_touches_border(distance <= d + slack),
                removed_by_lung_clip_ml=removed,
            )
        )
    return rings


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
    folder = out_dir / pid
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
        from lungsurv.qa import overlay_png

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
    except (InputError, RuntimeError, OSError) as error:
        problem = PatientError(patient_dir.name, str(error), stage="segment-rings")
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
    from lungsurv.parallel import map_patients

    out_dir.mkdir(parents=True, exist_ok=True)
    folders = sorted(p for p in volumes_dir.iterdir() if (p / GTV_FILE).exists())
    jobs = [(folder, out_dir, tuple(distances_mm), clip_to_lungs, write_qa) for folder in folders]
    results = map_patients(_segment_one, jobs, workers=workers)
    rows = [row for r in results if isinstance(r, list) for row in r]
    failures = [r for r in results if isinstance(r, Failure)]
    frame = pd.DataFrame(rows, columns=list(RING_COLUMNS))
    return frame, failures_frame(failures)
