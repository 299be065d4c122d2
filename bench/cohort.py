"""Cohort throughput of the stage chain: patients per hour per core, peak memory per worker, and
the scaling from one worker process to two.

    .venv/bin/python bench/cohort.py [--patients 16] [--workers 1 2] [--rounds 1]

The chain is what the pipeline's first three stages run per patient: convert (NIfTI CT + GTV to
1 mm), segment-rings (3/6/9 mm) and radiomics (the paper's 1316 features for the GTV and each
ring), through the stages' own cohort functions (``convert_cohort``, ``segment_cohort``,
``extract_cohort``) with their ``workers`` argument, so process start-up and scheduling are
counted as the pipeline pays them (each stage starts its own pool, as each KFP step is its own
container).

The cohort is synthetic and shaped like Lung1 by tumour size. The real clinical table
(``../shared/data/nsclc-radiomics/clinical.csv``) has no tumour volumes, so the sizes come from
its T-stage distribution (T1 93, T2 156, T3 53, T4 117 patients; Tx left out) and the AJCC 7th
edition's size definitions: T1 up to 3 cm across (radius 6-15 mm), T2 3-7 cm (15-35 mm, capped
at the generator's 35 mm), T3 and T4, defined mostly by invasion, 20-35 mm. ``--patients`` are
split over the T stages in proportion (largest remainder), each stage's patients generated with
its radius range.

Each worker count runs in a fresh process (one worker pinned to one core, N workers on N cores;
every process single-threaded: ITK one thread, ``OMP_NUM_THREADS=1``), which reports the time of
each stage and the peak resident memory: of the process itself, which holds the cohort's tables
and works through patients too (the only worker with one worker; with N, one of N beside N - 1
spawned processes), and of its largest spawned process. With ``--rounds R`` the worker counts
run in turn R times and each count's fastest round is kept (this shared machine's speed drifts
by 10-30 % within minutes). Prints one row per worker count and the speed-up over one.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from resource import RUSAGE_CHILDREN, RUSAGE_SELF, getrusage

# Run as a script, this file's folder comes first on sys.path and its name would shadow the
# PyRadiomics package (``import radiomics``) when a sibling is imported: take it off the path.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

CLINICAL = (
    Path(__file__).resolve().parents[2] / "shared" / "data" / "nsclc-radiomics" / "clinical.csv"
)
#: Tumour radius range (mm) per clinical T stage, from the AJCC 7th edition's size limits.
RADIUS_BY_T_STAGE = {1: (6.0, 15.0), 2: (15.0, 35.0), 3: (20.0, 35.0), 4: (20.0, 35.0)}
#: Lung1's T-stage counts when ../shared is not at hand (from the same clinical table).
LUNG1_T_STAGE_COUNTS = {1: 93, 2: 156, 3: 53, 4: 117}


def t_stage_counts() -> dict[int, int]:
    """Patients per T stage in the real Lung1 clinical table (T1-T4; Tx and missing left out)."""
    if not CLINICAL.exists():
        return dict(LUNG1_T_STAGE_COUNTS)
    import pandas as pd

    stages = pd.read_csv(CLINICAL)["clinical.T.Stage"].dropna().astype(int)
    return {t: int((stages == t).sum()) for t in RADIUS_BY_T_STAGE}


def allocate(total: int, counts: dict[int, int]) -> dict[int, int]:
    """Split ``total`` patients over the stages in proportion to ``counts`` (largest remainder)."""
    weight = sum(counts.values())
    exact = {t: total * n / weight for t, n in counts.items()}
    shares = {t: int(x) for t, x in exact.items()}
    for t in sorted(exact, key=lambda t: shares[t] - exact[t])[: total - sum(shares.values())]:
        shares[t] += 1
    return shares


def generate(root: Path, n_patients: int) -> Path:
    """A Lung1-shaped cohort below ``root``; returns the path of its merged manifest."""
    import pandas as pd

    from lungsurv.synthetic.export import generate_cohort
    from lungsurv.synthetic.phantom import GeneratorConfig

    frames = []
    for stage, count in allocate(n_patients, t_stage_counts()).items():
        if count == 0:
            continue
        folder = root / f"t{stage}"
        config = GeneratorConfig(
            n_patients=count, seed=100 + stage, tumour_radius_mm=RADIUS_BY_T_STAGE[stage]
        )
        generate_cohort(folder, config, n_jobs=os.cpu_count() or 1)
        manifest = pd.read_csv(folder / "manifest.csv")
        manifest["patient_id"] = [f"T{stage}-{p}" for p in manifest["patient_id"]]
        for column in ("image", "mask"):
            manifest[column] = [str(folder / v) for v in manifest[column]]
        frames.append(manifest)
    path = root / "manifest.csv"
    pd.concat(frames, ignore_index=True).to_csv(path, index=False)
    return path


def run_chain(manifest_path: Path, work: Path, workers: int) -> dict[str, float]:
    """The three stages over the cohort with ``workers`` processes; seconds and peak memory."""
    import pandas as pd
    import SimpleITK as sitk

    from lungsurv.radiomics.params import load_params
    from lungsurv.stages.convert import convert_cohort
    from lungsurv.stages.radiomics import extract_cohort
    from lungsurv.stages.rings import segment_cohort

    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)
    manifest = pd.read_csv(manifest_path)
    params = load_params()
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    _, failed_convert = convert_cohort(manifest, work / "volumes", workers=workers)
    seconds["convert"] = time.perf_counter() - started
    started = time.perf_counter()
    _, failed_rings = segment_cohort(
        work / "volumes", work / "rings", write_qa=False, workers=workers
    )
    seconds["rings"] = time.perf_counter() - started
    started = time.perf_counter()
    features, failed_radiomics = extract_cohort(
        work / "volumes", work / "rings", params, workers=workers
    )
    seconds["radiomics"] = time.perf_counter() - started
    # The stages leave a spawned process to exit on its own (it may still be starting when this
    # process has done a short stage's items); its peak counts once it is reaped.
    while multiprocessing.active_children():
        time.sleep(0.1)
    return {
        **seconds,
        "total": sum(seconds.values()),
        "peak_mb": getrusage(RUSAGE_SELF).ru_maxrss / 1024,
        "spawned_peak_mb": getrusage(RUSAGE_CHILDREN).ru_maxrss / 1024 if workers > 1 else 0.0,
        "rows": float(len(features)),
        "failures": float(len(failed_convert) + len(failed_rings) + len(failed_radiomics)),
    }


def measure(manifest: Path, root: Path, workers: int) -> dict[str, float]:
    """``run_chain`` in a fresh, single-threaded process on ``workers`` cores."""
    cores = sorted(os.sched_getaffinity(0))[:workers]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS": "1"}
    command = [sys.executable, __file__, "--child", str(workers), str(manifest), str(root)]
    done = subprocess.run(
        ["taskset", "-c", ",".join(map(str, cores)), *command],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--patients", type=int, default=16)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        workers, manifest, root = args.child
        work = Path(root) / f"workers-{workers}"
        print(json.dumps(run_chain(Path(manifest), work, int(workers))))
        return
    available = len(os.sched_getaffinity(0))
    if max(args.workers) > available:
        raise SystemExit(f"--workers {max(args.workers)} needs as many cores; {available} here")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        manifest = generate(root, args.patients)
        shares = allocate(args.patients, t_stage_counts())
        print(
            f"{args.patients} synthetic patients, T stages as in Lung1: "
            + ", ".join(f"T{t} {n}" for t, n in shares.items())
        )
        # Rounds alternate the worker counts, so a slow spell of this shared machine falls on
        # both; each count's fastest round is compared.
        rounds = [{w: measure(manifest, root, w) for w in args.workers} for _ in range(args.rounds)]
    results = {w: min((r[w] for r in rounds), key=lambda r: r["total"]) for w in args.workers}
    if args.rounds > 1:
        for workers in args.workers:
            totals = ", ".join(f"{r[workers]['total']:.1f}" for r in rounds)
            print(f"{workers} worker(s), total seconds per round: {totals}")
    print(
        "workers  convert   rings  radiomics   total   patients/h  per core  "
        "peak MB: this process / largest spawned"
    )
    base = min(results)
    for workers, r in results.items():
        per_hour = 3600 * args.patients / r["total"]
        print(
            f"{workers:7d} {r['convert']:8.1f} {r['rings']:7.1f} {r['radiomics']:10.1f} "
            f"{r['total']:7.1f} {per_hour:11.0f} {per_hour / workers:9.0f} {r['peak_mb']:10.0f} / "
            + (f"{r['spawned_peak_mb']:.0f}" if workers > 1 else "-")
            + (f"   failures {r['failures']:.0f}" if r["failures"] else "")
        )
    for workers, r in results.items():
        if workers != base:
            ratio = results[base]["total"] / r["total"]
            print(f"{workers} workers: {ratio:.2f}x the throughput of {base}")


if __name__ == "__main__":
    main()
