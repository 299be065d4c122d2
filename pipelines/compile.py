"""``make compile``: write the pipeline YAML that a user uploads in the KFP UI."""

from __future__ import annotations

import argparse
from pathlib import Path

from kfp import compiler

from pipelines.pipeline import lungsurv_pipeline

DEFAULT_OUTPUT = Path("build/lungsurv-pipeline.yaml")


def compile_pipeline(path: Path = DEFAULT_OUTPUT) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(lungsurv_pipeline, package_path=str(path))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args()
    print(f"wrote {compile_pipeline(args.out)}")


if __name__ == "__main__":
    main()
