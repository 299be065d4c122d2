"""Command line: ``lungsurv <command>``, a thin shell over the library (no Kubeflow needed)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from lungsurv import __version__
from lungsurv.cohort.manifest import load_manifest
from lungsurv.cohort.split import DEFAULT_TRAIN_CENTERS
from lungsurv.cohort.tcia import import_nsclc_radiomics
from lungsurv.core.errors import LungsurvError
from lungsurv.core.layout import DEFAULT_ROI, FAILURES_FILE, GEOMETRY_FILE, RINGS_FILE
from lungsurv.core.logs import configure_logging
from lungsurv.core.tables import write_parquet
from lungsurv.imaging.convert import ConvertSettings
from lungsurv.imaging.rings import DEFAULT_DISTANCES_MM
from lungsurv.stages.convert import convert_cohort
from lungsurv.stages.rings import segment_cohort
from lungsurv.synthetic.export import generate_cohort
from lungsurv.synthetic.phantom import GeneratorConfig, small_config

DESCRIPTION = """\
Intratumoral/peritumoral radiomics and 3D deep learning for NSCLC overall survival
(Liu et al. 2025). The commands run the library without Kubeflow: generate a synthetic
cohort, import the NSCLC-Radiomics collection, check a manifest, and run the first two
stages (convert, rings). The whole pipeline runs with `make run-pipeline`."""
_CONVERT = ConvertSettings()
DEFAULTS_SHOWN = argparse.ArgumentDefaultsHelpFormatter


def _floats(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError as error:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated numbers, got {text!r}"
        ) from error


def _synth(args: argparse.Namespace) -> int:
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
    print(f"converted {len(geometry)} patients into {out}; {len(failures)} failed")
    return 0


def _rings(args: argparse.Namespace) -> int:
    out = Path(args.out)
    table, failures = segment_cohort(
        Path(args.volumes), out, args.distances, clip_to_lungs=args.clip_to_lungs
    )
    write_parquet(table, out / RINGS_FILE)
    print(f"rings for {table['patient_id'].nunique()} patients in {out}; {len(failures)} failed")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lungsurv",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"lungsurv {__version__}")
    loudness = parser.add_mutually_exclusive_group()
    loudness.add_argument("-v", "--verbose", action="store_true", help="log debug messages too")
    loudness.add_argument("-q", "--quiet", action="store_true", help="log only warnings and errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_cohort_commands(sub)
    _add_stage_commands(sub)
    return parser


def _add_cohort_commands(sub: Any) -> None:
    p = sub.add_parser(
        "synth",
        help="generate a synthetic cohort (DICOM + manifest + truth)",
        formatter_class=DEFAULTS_SHOWN,
    )
    p.add_argument("--out", required=True, help="folder to write the cohort to")
    p.add_argument("--n-patients", type=int, default=None, help="patients (default: the config's)")
    p.add_argument("--seed", type=int, default=None, help="generator seed (default: the config's)")
    p.add_argument("--small", action="store_true", help="small volumes, for tests")
    p.add_argument(
        "--matrix", type=int, default=None, help="pixels per row (default 256; 512 as scanners do)"
    )
    p.add_argument("--jobs", type=int, default=1, help="patients written in parallel")
    p.set_defaults(func=_synth)

    p = sub.add_parser(
        "import-tcia",
        help="NSCLC-Radiomics folders + clinical CSV -> manifest",
        formatter_class=DEFAULTS_SHOWN,
    )
    p.add_argument("--images", required=True, help="folder holding the patients' DICOM")
    p.add_argument("--clinical", required=True, help="the clinical CSV")
    p.add_argument("--out", required=True, help="manifest CSV to write")
    p.add_argument(
        "--center", default=DEFAULT_TRAIN_CENTERS[0], help="center name written for every patient"
    )
    p.add_argument("--roi", default=DEFAULT_ROI, help="RTSTRUCT ROI of the tumour")
    p.set_defaults(func=_import_tcia)

    p = sub.add_parser("validate", help="check a cohort manifest", formatter_class=DEFAULTS_SHOWN)
    p.add_argument("manifest", help="manifest CSV (path or s3:// URI)")
    p.add_argument(
        "--no-file-check", action="store_true", help="check the columns only, not the files"
    )
    p.set_defaults(func=_validate)


def _add_stage_commands(sub: Any) -> None:
    p = sub.add_parser(
        "convert", help="CT + GTV -> 1 mm NIfTI volumes", formatter_class=DEFAULTS_SHOWN
    )
    p.add_argument("manifest", help="manifest CSV (path or s3:// URI)")
    p.add_argument("--out", required=True, help="folder for one sub-folder per patient")
    p.add_argument(
        "--crop-margin-mm",
        type=float,
        default=_CONVERT.crop_margin_mm,
        help="margin kept around the GTV's bounding box (mm)",
    )
    p.add_argument(
        "--mask-interpolation",
        choices=["volume", "linear", "nearest"],
        default=_CONVERT.mask_interpolation,
        help="how the GTV is resampled to 1 mm",
    )
    p.set_defaults(func=_convert)

    p = sub.add_parser(
        "rings", help="peritumoral rings around converted GTVs", formatter_class=DEFAULTS_SHOWN
    )
    p.add_argument("volumes", help="the convert stage's output folder")
    p.add_argument("--out", required=True, help="folder for the rings")
    p.add_argument(
        "--distances",
        type=_floats,
        default=list(DEFAULT_DISTANCES_MM),
        help="ring distances in mm, comma-separated (e.g. 3,6,9)",
    )
    p.add_argument("--clip-to-lungs", action="store_true", help="clip the rings to the lungs")
    p.set_defaults(func=_rings)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO
    configure_logging(level)
    try:
        return int(args.func(args))
    except (LungsurvError, ValueError, FileNotFoundError) as error:
        print(f"lungsurv {args.command}: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
