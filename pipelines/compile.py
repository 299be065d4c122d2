"""``make compile``: write the pipeline YAML that a user uploads in the KFP UI."""

from __future__ import annotations

import argparse
from pathlib import Path

from kfp import compiler

from pipelines.pipeline import lungsurv_pipeline, lungsurv_radiomics_pipeline

DEFAULT_OUTPUT = Path("build/lungsurv-pipeline.yaml")


def compile_pipeline(path: Path = DEFAULT_OUTPUT, *, deep_learning: bool = True) -> Path:
    """Write the pipeline (``deep_learning=False``: without train-3D-SE-ResNet) as YAML."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pipeline = lungsurv_pipeline if deep_learning else lungsurv_radiomics_pipeline
    compiler.Compiler().compile(pipeline, package_path=str(path))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args()
    print(f"wrote {compile_pipeline(args.out)}")
    radiomics_only = args.out.with_name(args.out.stem + "-radiomics-only.yaml")
    print(f"wrote {compile_pipeline(radiomics_only, deep_learning=False)}")


if __name__ == "__main__":
    main()
