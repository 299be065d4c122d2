"""Parquet tables passed between stages, and their fixed columns."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from lungsurv.core.errors import FAILURE_COLUMNS, Failure


def failures_frame(failures: Iterable[Failure]) -> pd.DataFrame:
    """A failures table (possibly empty, always with its columns)."""
    rows = [f.as_dict() for f in failures]
    return pd.DataFrame(rows, columns=list(FAILURE_COLUMNS)).astype(str)


def write_parquet(frame: pd.DataFrame, path: str | Path) -> Path:
    """Write ``frame`` as Parquet (creating parent folders) and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(path, index=False)
    return path


def concat_tables(paths: Sequence[str | Path]) -> pd.DataFrame:
    """Concatenate Parquet tables, skipping missing files and keeping the columns of empty ones."""
    frames = [pd.read_parquet(p) for p in paths if Path(p).exists()]
    if not frames:
        return pd.DataFrame()
    non_empty = [f for f in frames if len(f)]
    if not non_empty:
        return frames[0]
    return pd.concat(non_empty, ignore_index=True)


def write_metrics(artifact: Any, values: Mapping[str, float]) -> None:
    """Each value as a metric of a KFP Metrics ``artifact`` (anything with ``log_metric`` and
    ``path``), and all of them as JSON at its path: a file that a download of the artifact
    gets, and that kfp.local's cache needs (it treats an output whose file is missing as a
    cache miss, so without it every step with metrics would re-run)."""
    for name, value in values.items():
        artifact.log_metric(name, value)
    path = Path(artifact.path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(dict(values), indent=1, sort_keys=True, default=float))
