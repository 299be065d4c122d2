"""Shared fixtures: the real data in ../shared and small synthetic cohorts."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from lungsurv.synthetic.export import generate_cohort
from lungsurv.synthetic.phantom import small_config

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
LUNG1 = SHARED / "data" / "nsclc-radiomics" / "LUNG1-001"
CLINICAL = SHARED / "data" / "nsclc-radiomics" / "clinical.csv"


def _require(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{path} is not here (../shared holds the project's real test data)")
    return path


@pytest.fixture(scope="session")
def lung1_dir() -> Path:
    return _require(LUNG1)


@pytest.fixture(scope="session")
def clinical_csv() -> Path:
    return _require(CLINICAL)


@pytest.fixture(scope="session")
def lung1_row(lung1_dir: Path) -> dict[str, object]:
    return {
        "patient_id": "LUNG1-001",
        "image": str(lung1_dir / "CT"),
        "mask": str(lung1_dir / "RTSTRUCT" / "1-1.dcm"),
        "roi": "GTV-1",
        "time_days": 2165.0,
        "event": 1,
        "center": "MAASTRO",
    }


@pytest.fixture(scope="session")
def small_cohort_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Eight small synthetic patients (read-only: copy before breaking anything)."""
    root = tmp_path_factory.mktemp("small-cohort")
    generate_cohort(root, small_config(8, seed=7))
    return root


@pytest.fixture
def cohort_copy(small_cohort_dir: Path, tmp_path: Path) -> Path:
    """A private copy of the small cohort that a test may break."""
    target = tmp_path / "cohort"
    shutil.copytree(small_cohort_dir, target)
    return target


@pytest.fixture
def manifest_of(cohort_copy: Path):
    def read() -> pd.DataFrame:
        return pd.read_csv(cohort_copy / "manifest.csv", dtype=str, keep_default_na=False)

    return read


@pytest.fixture(scope="module")
def s3_env() -> Iterator[dict[str, str]]:
    """moto's S3 server on 127.0.0.1 for a test module, and the environment that points at it."""
    from tests.s3 import moto_server

    with moto_server() as env:
        yield env


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch, s3_env: dict[str, str]) -> dict[str, str]:
    """That environment set for one test (the storage layer reads it at call time)."""
    for key, value in s3_env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.setenv("S3_USE_HTTPS", "0")
    return s3_env
