"""s3:// inputs through the minio client, against a real S3 protocol server on loopback."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from lungsurv.cohort.manifest import load_manifest
from lungsurv.core import storage
from lungsurv.core.errors import InputError
from lungsurv.core.tables import write_parquet
from lungsurv.stages.convert import convert_cohort


@pytest.mark.parametrize(
    ("uri", "bucket", "key"),
    [("s3://b/k/x.nii.gz", "b", "k/x.nii.gz"), ("s3://b", "b", ""), ("s3://b/dir/", "b", "dir/")],
)
def test_parse_s3_uri(uri: str, bucket: str, key: str) -> None:
    location = storage.S3Location.parse(uri)
    assert (location.bucket, location.key) == (bucket, key)


@pytest.mark.parametrize("uri", ["/local/path", "s3://", "http://x/y"])
def test_parse_rejects_non_s3(uri: str) -> None:
    with pytest.raises(ValueError):
        storage.S3Location.parse(uri)


@pytest.mark.parametrize(
    ("env", "endpoint", "secure"),
    [
        ({"S3_ENDPOINT": "minio:9000", "S3_USE_HTTPS": "0"}, "minio:9000", False),
        ({"S3_ENDPOINT": "minio:9000"}, "minio:9000", True),
        ({"AWS_ENDPOINT_URL": "https://s3.example:443"}, "s3.example:443", True),
        ({"S3_ENDPOINT": "http://127.0.0.1:9000", "S3_USE_HTTPS": "1"}, "127.0.0.1:9000", False),
    ],
)
def test_config_from_environment(env: dict[str, str], endpoint: str, secure: bool) -> None:
    config = storage.S3Config.from_env(env)
    assert (config.endpoint, config.secure) == (endpoint, secure)


def test_missing_endpoint_is_a_clear_error() -> None:
    with pytest.raises(InputError, match="S3_ENDPOINT"):
        storage.S3Config.from_env({})


@pytest.mark.slow
def test_cohort_on_s3_validates_and_converts(
    s3: dict[str, str], small_cohort_dir: Path, tmp_path: Path
) -> None:
    written = storage.upload(small_cohort_dir / "images", "s3://cohort/images")
    assert len(written) > 100
    frame = pd.read_csv(small_cohort_dir / "manifest.csv").head(3)
    for column in ("image", "mask"):
        frame[column] = [f"s3://cohort/{v}" for v in frame[column]]
    frame.loc[2, "mask"] = "s3://cohort/images/missing/rs.dcm"
    frame.to_csv(tmp_path / "manifest.csv", index=False)
    storage.upload(tmp_path / "manifest.csv", "s3://cohort/manifest.csv")

    report = load_manifest("s3://cohort/manifest.csv")
    assert [(p.patient_id, p.column) for p in report.problems] == [
        (frame.loc[2, "patient_id"], "mask")
    ]
    geometry, failures = convert_cohort(report.valid, tmp_path / "out")
    assert failures.empty
    assert sorted(geometry["patient_id"]) == sorted(frame["patient_id"].head(2))
    local = convert_cohort(
        pd.read_csv(small_cohort_dir / "manifest.csv")
        .head(2)
        .assign(
            image=lambda f: [str(small_cohort_dir / v) for v in f["image"]],
            mask=lambda f: [str(small_cohort_dir / v) for v in f["mask"]],
        ),
        tmp_path / "local",
    )[0]
    assert list(geometry["gtv_volume_ml_resampled"]) == list(local["gtv_volume_ml_resampled"])
    # The stage's table as an artifact in the bucket, read back over S3 by pyarrow.
    write_parquet(geometry, tmp_path / "geometry.parquet")
    storage.upload(tmp_path / "geometry.parquet", "s3://cohort/artifacts/geometry.parquet")
    filesystem = pafs.S3FileSystem(
        endpoint_override=s3["S3_ENDPOINT"].removeprefix("http://"),
        scheme="http",
        access_key=s3["AWS_ACCESS_KEY_ID"],
        secret_key=s3["AWS_SECRET_ACCESS_KEY"],
        region=s3["AWS_REGION"],
    )
    table = pq.read_table("cohort/artifacts/geometry.parquet", filesystem=filesystem)
    pd.testing.assert_frame_equal(table.to_pandas(), geometry)


def test_unreachable_object_is_reported(s3: dict[str, str]) -> None:
    assert not storage.exists("s3://no-such-bucket/x")
    with pytest.raises(InputError, match="cannot read"):
        storage.download("s3://no-such-bucket/x.nii.gz", Path("/tmp/never"))


@pytest.mark.slow
def test_version_entries_over_s3_follow_the_objects(
    s3: dict[str, str], small_cohort_dir: Path, tmp_path: Path
) -> None:
    frame = pd.read_csv(small_cohort_dir / "manifest.csv").head(1)
    storage.upload(small_cohort_dir / frame.loc[0, "image"], "s3://digest/ct")
    storage.upload(small_cohort_dir / frame.loc[0, "mask"], "s3://digest/rs.dcm")
    folder, single = (
        storage.version_entries("s3://digest/ct"),
        storage.version_entries("s3://digest/rs.dcm"),
    )
    assert len(folder) == len(list((small_cohort_dir / frame.loc[0, "image"]).glob("*")))
    assert len(single) == 1 and storage.version_entries("s3://digest/none") == ["missing"]
    assert storage.version_entries("s3://digest/ct") == folder  # listed twice: the same
    changed = tmp_path / "slice.dcm"
    changed.write_bytes(b"another slice")
    storage.upload(changed, "s3://digest/ct/" + folder[0].split(":")[0])
    assert storage.version_entries("s3://digest/ct") != folder
