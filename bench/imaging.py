"""Seconds per patient for convert and segment-rings on the real LUNG1-001 (../shared).

    taskset -c 1 .venv/bin/python bench/imaging.py [--repeats 3]

Prints the median wall time of each step over the repeats (pin it to one core, as above), then
the CT's cubic B-spline resampling onto its 1 mm crop both ways, side by side: SimpleITK's
``Resample`` and the converter's separable one (``lungsurv.imaging.resample``), with the largest
difference between the two.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from lungsurv.imaging.convert import ConvertSettings, convert_patient, crop_grid, load_patient
from lungsurv.imaging.orientation import to_lps
from lungsurv.imaging.resample import AIR_HU, resample_bspline, source_region
from lungsurv.stages.convert import write_patient
from lungsurv.stages.rings import segment_patient

LUNG1 = Path(__file__).resolve().parents[2] / "shared" / "data" / "nsclc-radiomics" / "LUNG1-001"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    row = {
        "patient_id": "LUNG1-001",
        "image": str(LUNG1 / "CT"),
        "mask": str(LUNG1 / "RTSTRUCT" / "1-1.dcm"),
        "roi": "GTV-1",
    }
    timings: dict[str, list[float]] = {"convert": [], "write": [], "rings": []}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        for _ in range(args.repeats):
            started = time.perf_counter()
            converted = convert_patient(row, ConvertSettings())
            timings["convert"].append(time.perf_counter() - started)
            started = time.perf_counter()
            folder = write_patient(converted, out / "volumes")
            timings["write"].append(time.perf_counter() - started)
            started = time.perf_counter()
            segment_patient(folder, out / "rings")
            timings["rings"].append(time.perf_counter() - started)
    print(
        f"LUNG1-001 (512x512x134, GTV {converted.geometry['gtv_volume_ml_resampled']:.1f} ml), "
        f"median of {args.repeats}:"
    )
    for step, values in timings.items():
        print(f"  {step:8s} {statistics.median(values):6.2f} s")
    total = sum(statistics.median(v) for v in timings.values())
    print(f"  {'total':8s} {total:6.2f} s per patient")
    resampling(row, args.repeats)


def resampling(row: dict[str, str], repeats: int) -> None:
    """The CT's B-spline resampling onto its crop: ITK's against the separable one."""
    loaded = load_patient(row, ConvertSettings(), Path("unused"))
    image = to_lps(loaded.image)
    grid, _, _ = crop_grid(to_lps(loaded.gtv), 35.0, 1.0)
    source = source_region(image, grid)
    as_float32 = sitk.Cast(source, sitk.sitkFloat32)
    itk = sitk.Transform(), sitk.sitkBSpline, AIR_HU, sitk.sitkFloat32
    seconds: dict[str, list[float]] = {"ITK": [], "separable": []}
    for _ in range(repeats):
        started = time.perf_counter()
        theirs = sitk.Resample(as_float32, grid, *itk)
        seconds["ITK"].append(time.perf_counter() - started)
        started = time.perf_counter()
        ours = resample_bspline(source, grid, AIR_HU)
        seconds["separable"].append(time.perf_counter() - started)
    difference = np.abs(sitk.GetArrayViewFromImage(ours) - sitk.GetArrayViewFromImage(theirs))
    slow, fast = (statistics.median(seconds[k]) for k in ("ITK", "separable"))
    print(
        f"B-spline resampling onto the {'x'.join(map(str, grid.GetSize()))} crop: ITK "
        f"{slow:.2f} s, separable {fast:.2f} s ({slow / fast:.1f}x), largest difference "
        f"{difference.max():.3g} HU"
    )


if __name__ == "__main__":
    main()
