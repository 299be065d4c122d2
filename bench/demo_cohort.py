"""Does the paper's recipe work on the default cohort? The demo pipeline over several seeds.

    .venv/bin/python bench/demo_cohort.py [--seeds 20251669 1 2] [--n-patients N] [--set k=v ...]

Runs ``make run-pipeline``'s pipeline (``params/demo.yaml``, kfp.local) once per generator seed,
each on its own default synthetic cohort (generated on first use below ``data/``), and prints
one row per seed: the oracle's test C-index (the generator's own log-hazard), each signature's,
the deep-learning signature's, TNM's and the combined model's, the gap to the oracle, and the
run time; then the mean gap and the worst. Every run's artifacts stay below
``runs/bench-demo/<seed>``. ``--set name=value`` (YAML values) changes a pipeline parameter of
demo.yaml for every seed, e.g. ``--set robustness_perturbations=3``. ``--signal spatial`` runs
on cohorts whose only signal is the texture's spatial grain
(:func:`lungsurv.synthetic.phantom.spatial_signal_config`), where the negative controls must
come out near 0.5: ``--signal spatial --set negative_controls=true``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]
# Run as a script, this folder comes first on the path, and its radiomics.py would shadow
# PyRadiomics: the repository root (for ``pipelines``) takes its place.
sys.path[0] = str(ROOT)

from pipelines import run as runner  # noqa: E402


def spatial_cohort(n_patients: int, seed: int) -> Path:
    """The seed's spatial-signal cohort below ``data/``, generated on first use."""
    from lungsurv.synthetic.export import MANIFEST_FILE, SUMMARY_FILE, generate_cohort
    from lungsurv.synthetic.phantom import spatial_signal_config

    root = runner.DATA_DIR / f"synthetic-spatial-n{n_patients}-seed{seed}"
    if not (root / SUMMARY_FILE).exists():
        print(f"generating a spatial-signal cohort ({n_patients} patients) in {root} ...")
        generate_cohort(root, spatial_signal_config(n_patients, seed), n_jobs=2)
    return (root / MANIFEST_FILE).resolve()


def run_seed(
    seed: int,
    n_patients: int | None,
    out: Path,
    changes: dict[str, object],
    cache: bool = False,
    signal: str = "default",
) -> tuple[dict[str, float], float]:
    """One pipeline run on the seed's cohort: (test C-index per model + oracle, seconds)."""
    params = yaml.safe_load(runner.DEFAULT_PARAMS.read_text())
    params["synthetic_seed"] = seed
    params.update(changes)
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as handle:
        yaml.safe_dump(params, handle)
    argv = ["--out", str(out), "--params", handle.name]
    if signal == "spatial":
        size = n_patients or int(params["synthetic_patients"])
        argv += ["--cohort", str(spatial_cohort(size, seed))]
    elif n_patients:
        argv += ["--n-patients", str(n_patients)]
    if cache:
        argv += ["--cache"]
    started = time.perf_counter()
    if runner.main(argv) != 0:
        raise SystemExit(f"the pipeline failed for seed {seed}: see {out / 'pipeline.log'}")
    seconds = time.perf_counter() - started
    latest = sorted((out / "artifacts").glob("lungsurv-*"))[-1] / "evaluate"
    table = pd.read_parquet(latest / "tables" / "c_index.parquet")
    test = table[table["cohort"] == "test"].set_index("model")["c_index"].to_dict()
    executed = json.loads((latest / "executor_output.json").read_text())
    metrics = executed["artifacts"]["metrics"]["artifacts"][0]["metadata"]
    test["oracle"] = float(metrics.get("test_oracle_c_index", float("nan")))
    for name, value in metrics.items():  # negative controls, when they ran
        if name.startswith("test_") and name.endswith("_control_c_index"):
            test[name.removeprefix("test_").removesuffix("_c_index")] = float(value)
    robustness = latest.parent / "assess-robustness" / "executor_output.json"
    if robustness.exists():  # the robustness step's cost and what it kept
        executed = json.loads(robustness.read_text())["artifacts"]["metrics"]["artifacts"][0]
        kept = executed["metadata"]
        if kept.get("robustness_patients"):
            test["icc_s_per_patient"] = float(kept["robustness_seconds_per_patient"])
            for roi in ("gtv", "ring_6mm"):
                if f"robust_features_{roi}" in kept:
                    test[f"kept_{roi}"] = float(kept[f"robust_features_{roi}"])
    return test, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, nargs="+", default=[20251669, 1, 2])
    parser.add_argument("--n-patients", type=int, default=None, help="default: demo.yaml's")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "bench-demo")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument(
        "--signal",
        choices=("default", "spatial"),
        default="default",
        help="the default cohorts, or cohorts whose only signal is the texture's grain",
    )
    parser.add_argument(
        "--cache",
        action="store_true",
        help="reuse unchanged steps of an earlier run in the same --out (after a run without "
        "--set, a run with --set repeats only the steps the change reaches)",
    )
    args = parser.parse_args()
    changes = {}
    for item in args.set:
        name, _, value = item.partition("=")
        changes[name] = yaml.safe_load(value)
    rows = []
    for seed in args.seeds:
        values, seconds = run_seed(
            seed, args.n_patients, args.out / str(seed), changes, args.cache, args.signal
        )
        rows.append({"seed": seed, **values, "seconds": round(seconds)})
        print(f"seed {seed} done in {seconds:.0f} s", flush=True)
    table = pd.DataFrame(rows).set_index("seed")
    table["gap"] = table["oracle"] - table["Combined"]
    extra = {"oracle", "Combined", "gap", "seconds", "icc_s_per_patient", "kept_gtv"}
    controls = [c for c in table.columns if c.endswith("_control")]
    signatures = [c for c in table.columns if c not in extra | {"kept_ring_6mm", *controls}]
    table["best_signature"] = table[signatures].drop(columns=["TNM"], errors="ignore").max(axis=1)
    order = ["oracle", "Combined", "gap", "best_signature", *signatures, "seconds"]
    order += [c for c in ("icc_s_per_patient", "kept_gtv", "kept_ring_6mm") if c in table]
    order += controls
    print(table[order].round(3).to_string())
    print(
        f"mean gap to the oracle {table['gap'].mean():.3f} (worst {table['gap'].max():.3f}); "
        f"combined minus the best signature: mean "
        f"{(table['Combined'] - table['best_signature']).mean():+.3f}, worst "
        f"{(table['Combined'] - table['best_signature']).min():+.3f}"
    )


if __name__ == "__main__":
    main()
