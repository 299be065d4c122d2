"""Fixtures shared by the stage tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from lungsurv.imaging.convert import ConvertSettings
from lungsurv.radiomics.params import load_params
from lungsurv.stages.convert import convert_cohort
from lungsurv.stages.radiomics import extract_cohort
from lungsurv.stages.rings import segment_cohort


@pytest.fixture(scope="module")
def converted(
    small_cohort_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, list[str], dict[str, Any], pd.DataFrame]:
    """Five converted patients with rings below ``root/volumes`` and ``root/rings``, the
    original-image radiomics parameters (107 features per ROI keep a test short) and their
    features: (root, patient ids, params, features)."""
    root = tmp_path_factory.mktemp("converted")
    manifest = pd.read_csv(small_cohort_dir / "manifest.csv").head(5)
    for column in ("image", "mask"):
        manifest[column] = [str(small_cohort_dir / v) for v in manifest[column]]
    convert_cohort(manifest, root / "volumes", ConvertSettings(write_qa=False))
    segment_cohort(root / "volumes", root / "rings", write_qa=False)
    params = load_params(normalize_scale=100.0)
    params["imageType"] = {"Original": {}}
    features, failures = extract_cohort(root / "volumes", root / "rings", params)
    assert failures.empty
    return root, list(manifest["patient_id"]), params, features
