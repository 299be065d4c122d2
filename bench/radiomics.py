"""Radiomics extraction speed: the naive reference, PyRadiomics' preCrop and the project's path.

    .venv/bin/python bench/radiomics.py [--cases lung1,large] [--skip-scaling]

For each case (LUNG1-001 from ../shared, and a synthetic patient with a 6 cm tumour), the GTV and
its 3/6/9 mm rings are extracted with the paper's 1316-feature settings by

  (a) naive:   one RadiomicsFeatureExtractor.execute per ROI on the whole converted 1 mm volume,
  (b) precrop: the same with PyRadiomics' own preCrop setting,
  (c) lungsurv: lungsurv.radiomics.extract.extract_patient (one pass per patient),

each in a fresh process pinned to one core (SimpleITK limited to one thread), reporting seconds
per patient and the process's peak memory. Then the cohort path's scaling from 1 to 2 worker
processes on a cohort of synthetic patients (--scaling-patients, 16 by default: each worker
process first spends about a second starting, importing and loading the numba kernels, which a
shard of a few patients does not amortise). Prints the ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# Run as a script, this file's folder comes first on sys.path and its name would shadow the
# PyRadiomics package (``import radiomics``): take the folder off the path.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

LUNG1 = Path(__file__).resolve().parents[2] / "shared" / "data" / "nsclc-radiomics" / "LUNG1-001"
VARIANTS = ("naive", "precrop", "lungsurv")


def _one_core() -> None:
    import SimpleITK as sitk

    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)


def run_variant(variant: str, volume_dir: Path, rings_dir: Path) -> dict[str, float]:
    """Runs inside the child process."""
    _one_core()
    import SimpleITK as sitk

    from lungsurv.radiomics.extract import extract_naive, extract_patient, warm_up
    from lungsurv.radiomics.params import load_params
    from lungsurv.radiomics.shape import mesh_tables
    from lungsurv.stages.radiomics import patient_rois

    params = load_params()
    image = sitk.ReadImage(str(volume_dir / "image.nii.gz"))
    rois = patient_rois(volume_dir, rings_dir)
    if variant == "lungsurv":
        # Once per process, like the imports: the shape tables and the numba texture and LoG kernels
        # (compiled on first use, then loaded from numba's cache; timed separately below).
        mesh_tables(tuple(float(s) for s in image.GetSpacing()[::-1]))
        warm_started = time.perf_counter()
        warm_up()
        warm_seconds = time.perf_counter() - warm_started
    started = time.perf_counter()
    if variant == "lungsurv":
        extract_patient(image, rois, params)
    else:
        extract_naive(image, rois, params, pre_crop=variant == "precrop")
    seconds = time.perf_counter() - started
    result = {"seconds": seconds, "peak_mb": _peak_mb(), "rois": len(rois)}
    if variant == "lungsurv":
        result["warm_up_seconds"] = warm_seconds
    return result


def _peak_mb() -> float:
    """This process's peak resident memory. ru_maxrss would also count the parent's peak, which
    a child inherits across fork and exec; VmHWM starts afresh with the exec'd image."""
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _child(variant: str, volume_dir: Path, rings_dir: Path) -> dict[str, float]:
    output = subprocess.run(
        [sys.executable, __file__, "--child", variant, str(volume_dir), str(rings_dir)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return json.loads(output.strip().splitlines()[-1])


def prepare_cases(root: Path, names: list[str]) -> dict[str, Path]:
    """Convert and segment each case; return its converted patient folder."""
    import pandas as pd

    from lungsurv.imaging.convert import convert_patient
    from lungsurv.stages.convert import write_patient
    from lungsurv.stages.rings import segment_patient
    from lungsurv.synthetic.export import generate_cohort
    from lungsurv.synthetic.phantom import GeneratorConfig

    cases: dict[str, Path] = {}
    for name in names:
        if name == "lung1":
            row = {
                "patient_id": "LUNG1-001",
                "image": str(LUNG1 / "CT"),
                "mask": str(LUNG1 / "RTSTRUCT" / "1-1.dcm"),
                "roi": "GTV-1",
            }
        elif name == "large":
            cohort = root / "large-cohort"
            generate_cohort(
                cohort, GeneratorConfig(n_patients=1, seed=11, tumour_radius_mm=(30.0, 30.0))
            )
            row = pd.read_csv(cohort / "manifest.csv").iloc[0].to_dict()
            row["image"], row["mask"] = str(cohort / row["image"]), str(cohort / row["mask"])
        else:
            raise SystemExit(f"unknown case {name!r}")
        converted = convert_patient(row)
        folder = write_patient(converted, root / "volumes", write_qa=False)
        segment_patient(folder, root / "rings", write_qa=False)
        cases[name] = folder
        print(
            f"{name}: GTV {converted.geometry['gtv_volume_ml_resampled']:.1f} ml, "
            f"volume {converted.image.GetSize()}"
        )
    return cases


def scaling(root: Path, n_patients: int) -> tuple[float, float]:
    import SimpleITK as sitk

    from lungsurv.radiomics.params import load_params
    from lungsurv.stages.convert import convert_cohort
    from lungsurv.stages.radiomics import extract_cohort
    from lungsurv.stages.rings import segment_cohort
    from lungsurv.synthetic.export import generate_cohort
    from lungsurv.synthetic.phantom import GeneratorConfig

    cohort = root / "scaling-cohort"
    generate_cohort(
        cohort, GeneratorConfig(n_patients=n_patients, seed=5, tumour_radius_mm=(12.0, 18.0))
    )
    import pandas as pd

    manifest = pd.read_csv(cohort / "manifest.csv")
    for column in ("image", "mask"):
        manifest[column] = [str(cohort / v) for v in manifest[column]]
    convert_cohort(manifest, root / "s-volumes")
    segment_cohort(root / "s-volumes", root / "s-rings", write_qa=False)
    params = load_params()
    timings = []
    for workers in (1, 2):
        # One ITK thread per process for both runs, so the ratio is the processes' scaling.
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)
        started = time.perf_counter()
        extract_cohort(root / "s-volumes", root / "s-rings", params, workers=workers)
        timings.append(time.perf_counter() - started)
    return timings[0], timings[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cases", default="lung1,large")
    parser.add_argument("--skip-scaling", action="store_true")
    parser.add_argument("--scaling-patients", type=int, default=16)
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        variant, volume_dir, rings_dir = args.child
        print(json.dumps(run_variant(variant, Path(volume_dir), Path(rings_dir))))
        return
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        cases = prepare_cases(root, [c for c in args.cases.split(",") if c])
        for name, folder in cases.items():
            results = {v: _child(v, folder, root / "rings" / folder.name) for v in VARIANTS}
            print(f"\n{name} (GTV + 3 rings, 1316 features each, one core):")
            for variant, result in results.items():
                print(
                    f"  ({variant[0]}) {variant:9s} {result['seconds']:7.1f} s/patient  "
                    f"peak {result['peak_mb']:7.0f} MB"
                )
            ours = results["lungsurv"]["seconds"]
            print(
                f"  (numba kernels loaded in {results['lungsurv']['warm_up_seconds']:.2f} s once)"
            )
            print(f"  speed-up vs naive   {results['naive']['seconds'] / ours:5.2f}x")
            print(f"  speed-up vs precrop {results['precrop']['seconds'] / ours:5.2f}x")
        if not args.skip_scaling:
            one, two = scaling(root, args.scaling_patients)
            print(
                f"\ncohort of {args.scaling_patients} synthetic patients: 1 worker {one:.1f} s, "
                f"2 workers {two:.1f} s "
                f"({one / two:.2f}x on {os.cpu_count()} cores)"
            )


if __name__ == "__main__":
    main()
