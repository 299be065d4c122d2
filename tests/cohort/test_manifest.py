"""The cohort manifest: columns, row problems named by patient and column, paths, shards."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from lungsurv.cohort.manifest import (
    load_manifest,
    manifest_digest,
    shard_count,
    shard_frame,
    validate_manifest,
)
from lungsurv.core.errors import ManifestError
from lungsurv.core.layout import DEFAULT_ROI


@pytest.fixture
def frame(small_cohort_dir: Path) -> pd.DataFrame:
    return pd.read_csv(small_cohort_dir / "manifest.csv", dtype=str, keep_default_na=False)


def test_valid_manifest_resolves_relative_paths(small_cohort_dir: Path) -> None:
    report = load_manifest(small_cohort_dir / "manifest.csv")
    assert not report.problems
    assert len(report.valid) == 8
    assert all(Path(p).is_absolute() and Path(p).exists() for p in report.valid["image"])
    assert report.valid["event"].dtype.kind == "i"
    assert report.valid["time_days"].dtype.kind == "f"


def test_parquet_manifest(small_cohort_dir: Path, tmp_path: Path, frame: pd.DataFrame) -> None:
    frame["image"] = [str(small_cohort_dir / v) for v in frame["image"]]
    frame["mask"] = [str(small_cohort_dir / v) for v in frame["mask"]]
    frame.to_parquet(tmp_path / "cohort.parquet")
    assert len(load_manifest(tmp_path / "cohort.parquet").valid) == 8


def test_missing_roi_column_defaults_to_gtv1(frame: pd.DataFrame, small_cohort_dir: Path) -> None:
    report = validate_manifest(frame.drop(columns="roi"), base=small_cohort_dir)
    assert set(report.valid["roi"]) == {DEFAULT_ROI}


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda f: f.drop(columns="time_days"), "required column 'time_days' is missing"),
        (
            lambda f: f.rename(columns={"event": "evnt"}),
            "unknown column 'evnt' (did you mean 'event'?)",
        ),
        (lambda f: f.assign(notes="x"), "unknown column 'notes'"),
    ],
)
def test_column_problems_make_the_manifest_unusable(
    frame: pd.DataFrame, change, expected: str
) -> None:
    with pytest.raises(ManifestError) as error:
        validate_manifest(change(frame), check_files=False)
    assert expected in str(error.value)


def test_prefixed_extra_columns_are_carried(frame: pd.DataFrame, small_cohort_dir: Path) -> None:
    report = validate_manifest(frame.assign(x_trial_arm="A"), base=small_cohort_dir)
    assert list(report.valid["x_trial_arm"].unique()) == ["A"]


@pytest.mark.parametrize(
    ("column", "value", "expected"),
    [
        ("time_days", "0", "survival time must be > 0 days, got 0"),
        ("time_days", "abc", "not a number: 'abc'"),
        ("event", "yes", "event must be 0 or 1, got 'yes'"),
        ("center", "", "center is empty"),
        ("age", "old", "not a number: 'old'"),
        ("mask", "nowhere/rs.dcm", "file not found"),
        ("image", "", "path is empty"),
    ],
)
def test_row_problems_name_patient_and_column(
    frame: pd.DataFrame, small_cohort_dir: Path, column: str, value: str, expected: str
) -> None:
    frame.loc[3, column] = value
    report = validate_manifest(frame, base=small_cohort_dir)
    pid = frame.loc[3, "patient_id"]
    assert [(p.patient_id, p.column) for p in report.problems] == [(pid, column)]
    assert expected in str(report.problems[0])
    assert pid not in set(report.valid["patient_id"])
    assert len(report.valid) == 7
    failures = report.failures()
    assert list(failures["patient_id"]) == [pid]
    assert failures["stage"].iloc[0] == "validate"


def test_duplicate_ids_reject_every_copy(frame: pd.DataFrame, small_cohort_dir: Path) -> None:
    frame.loc[4, "patient_id"] = frame.loc[5, "patient_id"]
    report = validate_manifest(frame, base=small_cohort_dir)
    assert report.rejected_ids == [frame.loc[5, "patient_id"]]
    assert "duplicate patient id (2 rows)" in str(report.problems[0])
    assert len(report.valid) == 6


@pytest.mark.parametrize(("n", "size", "count"), [(0, 4, 0), (8, 3, 3), (8, 8, 1), (9, 8, 2)])
def test_shards_cover_every_patient_once(n: int, size: int, count: int) -> None:
    frame = pd.DataFrame({"patient_id": [f"P{i}" for i in range(n)]})
    assert shard_count(n, size) == count
    ids = [pid for i in range(count) for pid in shard_frame(frame, i, size)["patient_id"]]
    assert ids == list(frame["patient_id"])


def test_shard_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="shard_size must be >= 1, got 0"):
        shard_count(3, 0)
    with pytest.raises(ValueError, match="shard index 5 out of range"):
        shard_frame(pd.DataFrame({"patient_id": ["a"]}), 5, 1)


def test_unsupported_manifest_format(tmp_path: Path) -> None:
    (tmp_path / "cohort.xlsx").write_text("x")
    with pytest.raises(ManifestError, match=r"\.csv or \.parquet"):
        load_manifest(tmp_path / "cohort.xlsx")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "is empty: no header line"),
        ("\n\n", "is empty: no header line"),
        ("patient_id,image,mask,time_days,event,center\n", "a header but no rows"),
        (
            "patient_id,image,mask,time_days,event,center\nP1,a,b,10,1,X\nP2,a,b,10,1,X,extra\n",
            "line 3: 7 fields, the header has 6",
        ),
        ("patient_id,image,mask,time_days,event,center\nP1,a,b,10\n", "line 2: 4 fields"),
    ],
)
def test_empty_and_ragged_manifests_are_named(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "manifest.csv"
    path.write_text(text)
    with pytest.raises(ManifestError, match=message):
        load_manifest(path, check_files=False)


def test_an_infinite_survival_time_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "manifest.csv"
    path.write_text("patient_id,image,mask,time_days,event,center\nP1,a,b,inf,1,X\nP2,a,b,9,1,X\n")
    report = load_manifest(path, check_files=False)
    assert list(report.valid["patient_id"]) == ["P2"]
    assert "must be finite" in str(report.problems[0])


def _edit_manifest(cohort: Path) -> None:
    frame = pd.read_csv(cohort / "manifest.csv", dtype=str, keep_default_na=False)
    frame.loc[0, "time_days"] = str(float(frame.loc[0, "time_days"]) + 1)
    frame.to_csv(cohort / "manifest.csv", index=False)


def _rewrite_one_slice(cohort: Path) -> None:
    frame = pd.read_csv(cohort / "manifest.csv", dtype=str, keep_default_na=False)
    victim = sorted((cohort / frame.loc[3, "image"]).glob("*.dcm"))[0]
    victim.write_bytes(victim.read_bytes() + b"\0")  # a re-exported slice: new size and time


def _add_a_file(cohort: Path) -> None:
    frame = pd.read_csv(cohort / "manifest.csv", dtype=str, keep_default_na=False)
    (cohort / frame.loc[1, "image"] / "extra.dcm").write_bytes(b"x")


@pytest.mark.parametrize("change", [_edit_manifest, _rewrite_one_slice, _add_a_file])
def test_manifest_digest_follows_the_data(cohort_copy: Path, change) -> None:
    manifest = cohort_copy / "manifest.csv"
    before = manifest_digest(manifest)
    assert manifest_digest(manifest) == before  # read twice: the same key
    change(cohort_copy)
    assert manifest_digest(manifest) != before


def test_manifest_digest_names_nothing_and_refuses_a_missing_manifest(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="not found"):
        manifest_digest(tmp_path / "manifest.csv")
