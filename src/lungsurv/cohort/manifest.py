"""The cohort manifest: one row per patient, validated before any image is touched.

Columns (see the README for an example):

=================  ========  ===========================================================
column             required  meaning
=================  ========  ===========================================================
``patient_id``     yes       the only identity carried into outputs
``image``          yes       a DICOM CT series folder, or a NIfTI/NRRD file
``mask``           yes       an RTSTRUCT file, or a NIfTI/NRRD label image
``roi``            no        the GTV's ROI name in an RTSTRUCT (default ``GTV-1``, any case;
                             ``re:<pattern>`` for a regular expression)
``time_days``      yes       overall survival or follow-up time, days, > 0
``event``          yes       1 = death observed, 0 = censored
``center``         yes       the acquiring center (used to split train and test)
``series_uid``     no        the CT SeriesInstanceUID when a folder holds several series
``age`` ...        no        clinical: ``age, sex, histology, t_stage, n_stage, m_stage,
                             overall_stage``
``x_*``            no        any column starting with ``x_`` is carried along untouched
=================  ========  ===========================================================

Paths may be absolute, relative to the manifest's own folder, or ``s3://bucket/key``.
"""

from __future__ import annotations

import csv
import difflib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from lungsurv.core import storage
from lungsurv.core.errors import Failure, ManifestError
from lungsurv.core.layout import DEFAULT_ROI, patient_id_problem
from lungsurv.core.tables import failures_frame

REQUIRED_COLUMNS: tuple[str, ...] = ("patient_id", "image", "mask", "time_days", "event", "center")
OPTIONAL_COLUMNS: tuple[str, ...] = ("roi", "series_uid")
CLINICAL_COLUMNS: tuple[str, ...] = (
    "age",
    "sex",
    "histology",
    "t_stage",
    "n_stage",
    "m_stage",
    "overall_stage",
)


KNOWN_COLUMNS: tuple[str, ...] = REQUIRED_COLUMNS + OPTIONAL_COLUMNS + CLINICAL_COLUMNS
PASSTHROUGH_PREFIX = "x_"
#: Columns read as text (every clinical column but age is a category).
STRING_COLUMNS: tuple[str, ...] = (
    "patient_id",
    "image",
    "mask",
    "roi",
    "center",
    "series_uid",
    *(c for c in CLINICAL_COLUMNS if c != "age"),
)


@dataclass(frozen=True)
class Problem:
    """One problem of one patient's row, naming the column at fault."""

    patient_id: str
    column: str
    message: str

    def __str__(self) -> str:
        return f"patient {self.patient_id!r}, column {self.column!r}: {self.message}"

    def as_failure(self) -> Failure:
        return Failure(
            patient_id=self.patient_id,
            stage="validate",
            error_type=f"invalid_{self.column}",
            message=str(self),
        )


@dataclass
class ValidationReport:
    """The rows that passed and the problems of those that did not."""

    valid: pd.DataFrame
    problems: list[Problem] = field(default_factory=list)

    @property
    def rejected_ids(self) -> list[str]:
        return sorted({p.patient_id for p in self.problems})

    def failures(self) -> pd.DataFrame:

        return failures_frame([p.as_failure() for p in self.problems])


def read_table(uri: str | Path) -> pd.DataFrame:
    """Read a CSV or Parquet table from a local path or an s3:// URI.

    CSV cells ``NA`` and empty cells are missing values; every column is read as text first so that
    ids such as ``007`` keep their zeros.
    """
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = storage.localize(str(uri), Path(tmp))
        if not path.exists():
            raise ManifestError(f"manifest not found: {uri}")
        suffix = path.suffix.lower()
        if suffix in {".parquet", ".pq"}:
            frame = pd.read_parquet(path)
        elif suffix in {".csv", ".txt"}:
            _check_csv_shape(path)
            frame = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=["NA", ""])
        else:
            raise ManifestError(f"manifest must be .csv or .parquet, got {path.name!r}")
    if frame.empty:
        raise ManifestError(f"{Path(str(uri)).name}: a header but no rows")
    return frame


def _check_csv_shape(path: Path) -> None:
    """Refuse an empty CSV and a ragged row (pandas would pad it, or shift every column of it
    when it has one field too many), naming the line."""
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if not header or not any(cell.strip() for cell in header):
            raise ManifestError(f"{path.name} is empty: no header line")
        for row in reader:
            if row and len(row) != len(header):
                raise ManifestError(
                    f"{path.name}, line {reader.line_num}: {len(row)} fields, the header has "
                    f"{len(header)}"
                )


def load_manifest(uri: str | Path, *, check_files: bool = True) -> ValidationReport:
    """Read and validate a manifest; relative paths are resolved against its folder."""
    frame = read_table(uri)
    base = str(uri).rsplit("/", 1)[0] if storage.is_s3_uri(uri) else Path(uri).resolve().parent
    return validate_manifest(frame, base=base, check_files=check_files)


def manifest_digest(uri: str | Path) -> str:
    """A digest of everything a run reads from the cohort: the manifest's bytes and, for every
    image and mask it names, each file's path below it, size and modification time (or S3
    ETag). Unchanged data, unchanged digest: the pipeline keys its cache on it (a manifest
    edited under the same URI, or a re-exported series, changes it). Nothing is decompressed
    or parsed but the manifest itself."""
    import hashlib
    import tempfile

    digest = hashlib.sha256()
    with tempfile.TemporaryDirectory() as tmp:
        path = storage.localize(str(uri), Path(tmp))
        if not path.is_file():
            raise ManifestError(f"manifest not found: {uri}")
        digest.update(path.read_bytes())
        frame = read_table(path)  # the copy just fetched: an S3 manifest is downloaded once
    base = str(uri).rsplit("/", 1)[0] if storage.is_s3_uri(uri) else Path(uri).resolve().parent
    for column in ("image", "mask"):
        for value in frame[column] if column in frame.columns else []:
            if isinstance(value, str) and value.strip():
                entries = storage.version_entries(_resolve(value.strip(), base))
                digest.update("\n".join([column, value, *entries, ""]).encode())
    return digest.hexdigest()


def _resolve(value: str, base: str | Path | None) -> str:
    if storage.is_s3_uri(value) or base is None or Path(value).is_absolute():
        return value
    if isinstance(base, str) and storage.is_s3_uri(base):
        return f"{base.rstrip('/')}/{value}"
    return str((Path(base) / value).resolve())


def check_columns(columns: list[str]) -> None:
    """Raise :class:`ManifestError` for missing required or unknown columns, naming each."""
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    unknown = [
        c for c in columns if c not in KNOWN_COLUMNS and not c.startswith(PASSTHROUGH_PREFIX)
    ]
    messages = [f"required column {c!r} is missing" for c in missing]
    for column in unknown:
        close = difflib.get_close_matches(column, KNOWN_COLUMNS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        messages.append(
            f"unknown column {column!r}{hint}; prefix extra columns with {PASSTHROUGH_PREFIX!r}"
        )
    if messages:
        raise ManifestError("invalid manifest: " + "; ".join(messages))


def validate_manifest(
    frame: pd.DataFrame, *, base: str | Path | None = None, check_files: bool = True
) -> ValidationReport:
    """Validate a manifest frame row by row.

    Column-level problems (a required column missing, an unknown column) make the manifest unusable
    and raise :class:`ManifestError`. Row-level problems reject that patient only: a duplicate id
    (every row with it: which one is right cannot be known), a missing or empty path, a missing
    file, ``time_days`` not a positive number, ``event`` not 0/1, ``age`` not a number.
    """
    check_columns(list(frame.columns))
    frame = frame.copy()
    for column in STRING_COLUMNS:
        if column in frame.columns:
            frame[column] = frame[column].map(
                lambda v: None if v is None or (isinstance(v, float) and np.isnan(v)) else str(v)
            )
            frame[column] = frame[column].map(lambda v: v.strip() if isinstance(v, str) else v)
    if "roi" not in frame.columns:
        frame["roi"] = DEFAULT_ROI
    frame["roi"] = frame["roi"].map(lambda v: v if isinstance(v, str) and v else DEFAULT_ROI)

    problems: list[Problem] = []
    ids = frame["patient_id"].fillna("")
    for row_number, pid in enumerate(ids):
        if not pid:
            problems.append(Problem(f"<row {row_number + 2}>", "patient_id", "empty patient id"))
        elif problem := patient_id_problem(pid):
            problems.append(Problem(pid, "patient_id", problem))
    duplicated = ids[ids.duplicated(keep=False) & (ids != "")]
    for pid in sorted(set(duplicated)):
        count = int((ids == pid).sum())
        problems.append(
            Problem(pid, "patient_id", f"duplicate patient id ({count} rows); all are rejected")
        )

    for index, row in frame.iterrows():
        pid = ids.loc[index]
        if not pid or pid in set(duplicated):
            continue
        problems.extend(_row_problems(pid, row, base=base, check_files=check_files))

    for column in ("image", "mask"):
        frame[column] = frame[column].map(lambda v: _resolve(v, base) if v else v)
    bad = {p.patient_id for p in problems}
    valid = frame[~ids.isin(bad) & (ids != "")].copy()
    valid["time_days"] = valid["time_days"].astype(float)
    valid["event"] = valid["event"].astype(float).astype(int)
    if "age" in valid.columns:
        valid["age"] = pd.to_numeric(valid["age"], errors="coerce")
    ordered = [c for c in KNOWN_COLUMNS if c in valid.columns]
    extras = [c for c in valid.columns if c not in ordered]
    return ValidationReport(valid=valid[ordered + extras].reset_index(drop=True), problems=problems)


def _row_problems(
    pid: str, row: pd.Series, *, base: str | Path | None, check_files: bool
) -> list[Problem]:
    problems: list[Problem] = []
    time = pd.to_numeric(pd.Series([row["time_days"]]), errors="coerce").iloc[0]
    if pd.isna(time):
        problems.append(Problem(pid, "time_days", f"not a number: {row['time_days']!r}"))
    elif not np.isfinite(time):
        problems.append(Problem(pid, "time_days", f"survival time must be finite, got {time}"))
    elif time <= 0:
        problems.append(Problem(pid, "time_days", f"survival time must be > 0 days, got {time:g}"))
    event = pd.to_numeric(pd.Series([row["event"]]), errors="coerce").iloc[0]
    if pd.isna(event) or event not in (0, 1):
        problems.append(Problem(pid, "event", f"event must be 0 or 1, got {row['event']!r}"))
    if not row.get("center"):
        problems.append(Problem(pid, "center", "center is empty"))
    age = row.get("age")
    if age is not None and not pd.isna(age) and pd.isna(pd.to_numeric(age, errors="coerce")):
        problems.append(Problem(pid, "age", f"not a number: {age!r}"))
    for column in ("image", "mask"):
        value = row[column]
        if not value:
            problems.append(Problem(pid, column, "path is empty"))
            continue
        if check_files:
            path = _resolve(value, base)
            try:
                found = storage.exists(path)
            except Exception as error:  # an unreachable or misconfigured object store
                problems.append(Problem(pid, column, f"cannot check {path}: {error}"))
                continue
            if not found:
                problems.append(Problem(pid, column, f"file not found: {path}"))
    return problems


def shard_count(n_patients: int, shard_size: int) -> int:
    """How many shards of at most ``shard_size`` patients ``n_patients`` make."""
    if shard_size < 1:
        raise ValueError(f"shard_size must be >= 1, got {shard_size}")
    return -(-n_patients // shard_size)


def shard_frame(frame: pd.DataFrame, index: int, shard_size: int) -> pd.DataFrame:
    """Shard ``index`` (from 0) of consecutive shards of at most ``shard_size`` patients."""
    count = shard_count(len(frame), shard_size)
    if not 0 <= index < max(count, 1):
        raise ValueError(f"shard index {index} out of range: {count} shard(s)")
    return frame.iloc[index * shard_size : (index + 1) * shard_size].reset_index(drop=True)
