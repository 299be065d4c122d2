"""Seconds per patient for convert and segment-rings on the real LUNG1-001 (../shared).

    .venv/bin/python bench/imaging.py [--repeats 3]

Prints the median wall time of each step over the repeats, on one core.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from lungsurv.imaging.convert import ConvertSettings, convert_patient
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


if __name__ == "__main__":
    main()
