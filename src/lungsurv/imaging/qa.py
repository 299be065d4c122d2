"""Quality-assurance pictures: mask outlines over axial, coronal and sagittal CT slices."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import SimpleITK as sitk

#: Geometry columns whose training range the bundle records, with their units.
RANGE_COLUMNS: dict[str, str] = {"gtv_volume_ml_resampled": "ml", "slice_thickness_mm": "mm"}


def training_ranges(geometry: pd.DataFrame, patients: Sequence[str]) -> dict[str, list[float]]:
    """The [min, max] of the training patients' GTV volume and slice thickness (convert's
    geometry table), stored in the bundle so serving can flag an input outside them."""
    rows = geometry[geometry["patient_id"].astype(str).isin(set(map(str, patients)))]
    return {
        column: [float(rows[column].min()), float(rows[column].max())]
        for column in RANGE_COLUMNS
        if column in rows.columns and len(rows)
    }


def range_warnings(geometry: Mapping[str, Any], ranges: Mapping[str, Sequence[float]]) -> list[str]:
    """A warning per value outside its training range (the model extrapolates there)."""
    warnings = []
    for column, (low, high) in ranges.items():
        value = float(geometry[column])
        if not low <= value <= high:
            what = column.removesuffix("_resampled").removesuffix("_ml").removesuffix("_mm")
            unit = RANGE_COLUMNS[column]
            warnings.append(
                f"{what.replace('_', ' ')} {value:.3g} {unit} is outside the training range "
                f"{low:.3g}-{high:.3g} {unit}"
            )
    return warnings


#: Lung window (HU) for the pictures.
WINDOW = (-1000.0, 400.0)
COLOURS = ("#ff3b30", "#ffcc00", "#34c759", "#0a84ff", "#bf5af2", "#ff9f0a")


def overlay_png(
    image: sitk.Image,
    masks: Mapping[str, sitk.Image],
    path: Path,
    *,
    title: str = "",
    dpi: int = 80,
) -> Path:
    """Write a PNG with each mask's outline over the three orthogonal slices through the first
    mask's centroid. Assumes isotropic voxels (the converted volumes are 1 mm)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    volume = sitk.GetArrayFromImage(image)
    arrays = {name: sitk.GetArrayViewFromImage(m) > 0 for name, m in masks.items()}
    first = next(iter(arrays.values()))
    centre = (
        np.round(np.argwhere(first).mean(axis=0)).astype(int)
        if first.any()
        else np.array(volume.shape) // 2
    )
    z, y, x = (int(v) for v in centre)
    views = {
        "axial": (lambda a: a[z], False),
        "coronal": (lambda a: a[:, y, :], True),
        "sagittal": (lambda a: a[:, :, x], True),
    }
    fig, axes = plt.subplots(1, 3, figsize=(9, 3.3))
    for ax, (name, (cut, flip)) in zip(axes, views.items(), strict=True):
        picture = cut(volume)
        ax.imshow(picture[::-1] if flip else picture, cmap="gray", vmin=WINDOW[0], vmax=WINDOW[1])
        for colour, (label, mask) in zip(COLOURS, arrays.items(), strict=False):
            section = cut(mask).astype(float)
            if section.any():
                ax.contour(
                    section[::-1] if flip else section, levels=[0.5], colors=colour, linewidths=1.0
                )
            ax.plot([], [], color=colour, label=label)
        ax.set_title(name, fontsize=9)
        ax.axis("off")
    axes[0].legend(loc="lower left", fontsize=7, frameon=False, labelcolor="white")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path
