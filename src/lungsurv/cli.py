"""Command line: ``lungsurv <command>``, a thin shell over the library (no Kubeflow needed).

Commands: ``synth`` (generate a synthetic cohort), ``import-tcia`` (NSCLC-Radiomics folders to a
manifest), ``validate`` (check a manifest), ``convert`` and ``rings`` (the first two stages).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from lungsurv.cohort.manifest import load_manifest
from lungsurv.cohort.tcia import import_nsclc_radiomics
from lungsurv.core.errors import LungsurvError
from lungsurv.core.layout import FAILURES_FILE, GEOMETRY_FILE, RINGS_FILE
from lungsurv.core.tables import write_parquet
from lungsurv.imaging.convert import ConvertSettings
from lungsurv.stages.convert import convert_cohort
from lungsurv.stages.rings import segment_cohort
from lungsurv.synthetic.export import generate_cohort
from lungsurv.synthetic.phantom import GeneratorConfig, small_config


def _floats(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError as error:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated numbers, got {text!r}"
        ) from error


def _synth(args: argparse.Namespace) -> int:
    from dataclasses import replace

    config = small_config(args.n_patients or 8, args.seed) if args.small else GeneratorConfig()
    if args.n_patients:
        config = replace(config, n_patients=args.n_patients)
    if args.seed is not None:
        config = replace(config, seed=args.seed)
    if args.matrix:
        config = replace(config, matrix=args.matrix)
    summary = generate_cohort(Path(args.out), config, n_jobs=args.jobs)
    summary.pop("config")
    print(json.dumps(summary, indent=2))
    print(f"manifest: {Path(args.out) / 'manifest.csv'}")
    return 0


def _import_tcia(args: argparse.Namespace) -> int:

    result = import_nsclc_radiomics(
        Path(args.images), args.clinical, center=args.center, roi=args.roi
    )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    result.manifest.to_csv(out, index=False)
    report = out.with_name(out.stem + "-report.csv")
    result.report.to_csv(report, index=False)
    print(f"{len(result.manifest)} patients in {out}; {len(result.report)} left out, see {report}")
    for problem, count in result.report["problem"].value_counts().items():
        print(f"  {count:5d}  {problem}")
    return 0


def _validate(args: argparse.Namespace) -> int:

    report = load_manifest(args.manifest, check_files=not args.no_file_check)
    for problem in report.problems:
        print(problem)
    print(f"{len(report.valid)} valid patients, {len(report.rejected_ids)} rejected")
    return 1 if report.problems else 0


def _convert(args: argparse.Namespace) -> int:

    report = load_manifest(args.manifest)
    for problem in report.problems:
        print(f"rejected: {problem}", file=sys.stderr)
    settings = ConvertSettings(
        crop_margin_mm=args.crop_margin_mm, mask_interpolation=args.mask_interpolation
    )
    out = Path(args.out)
    geometry, failures = convert_cohort(report.valid, out, settings)
    write_parquet(geometry, out / GEOMETRY_FILE)
    write_parquet(failures, out / FAILURES_FILE)
    for _, failure in failures.iterrows():
        print(f"failed: {failure['patient_id']}: {failure['message']}", file=sys.stderr)
    print(f"converted {len(geometry)} patients into {out}; {len(failures)} failed")
    return 0


def _rings(args: argparse.Namespace) -> int:

    out = Path(args.out)
    table, failures = segment_cohort(
        Path(args.volumes), out, args.distances, clip_to_lungs=args.clip_to_lungs
    )
    write_parquet(table, out / RINGS_FILE)
    for _, failure in failures.iterrows():
        print(f"failed: {failure['patient_id']}: {failure['message']}", file=sys.stderr)
    print(f"rings for {table['patient_id'].nunique()} patients in {out}; {len(failures)} failed")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lungsurv", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("synth", help="generate a synthetic cohort (DICOM + manifest + truth)")
    p.add_argument("--out", required=True)
    p.add_argument("--n-patients", type=int, default=None)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--small", action="store_true", help="small volumes, for tests")
    p.add_argument(
        "--matrix", type=int, default=None, help="pixels per row (default 256; 512 as scanners do)"
    )
    p.add_argument("--jobs", type=int, default=1)
    p.set_defaults(func=_synth)

    p = sub.add_parser("import-tcia", help="NSCLC-Radiomics folders + clinical CSV -> manifest")
    p.add_argument("--images", required=True, help="folder holding the patients' DICOM")
    p.add_argument("--clinical", required=True, help="the clinical CSV")
    p.add_argument("--out", required=True, help="manifest CSV to write")
    p.add_argument("--center", default="MAASTRO")
    p.add_argument("--roi", default="GTV-1")
    p.set_defaults(func=_import_tcia)

    p = sub.add_parser("validate", help="check a cohort manifest")
    p.add_argument("manifest")
    p.add_argument("--no-file-check", action="store_true")
    p.set_defaults(func=_validate)

    p = sub.add_parser("convert", help="CT + GTV -> 1 mm NIfTI volumes")
    p.add_argument("manifest")
    p.add_argument("--out", required=True)
    p.add_argument("--crop-margin-mm", type=float, default=35.0)
    p.add_argument(
        "--mask-interpolation", choices=["volume", "linear", "nearest"], default="volume"
    )
    p.set_defaults(func=_convert)

    p = sub.add_parser("rings", help="peritumoral rings around converted GTVs")
    p.add_argument("volumes", help="the convert stage's output folder")
    p.add_argument("--out", required=True)
    p.add_argument("--distances", type=_floats, default=[3.0, 6.0, 9.0])
    p.add_argument("--clip-to-lungs", action="store_true")
    p.set_defaults(func=_rings)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except (LungsurvError, ValueError, FileNotFoundError) as error:
        print(f"lungsurv {args.command}: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
