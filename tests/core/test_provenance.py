"""Provenance: content digests of volumes, digests of the effective radiomics parameters, and
the training record a bundle keeps."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from lungsurv.core.layout import PROVENANCE_COLUMNS
from lungsurv.core.provenance import (
    ProvenanceError,
    check_serving_provenance,
    image_digest,
    provenance_values,
    training_provenance,
)
from lungsurv.radiomics.params import load_params, params_digest


@pytest.fixture
def volume() -> sitk.Image:
    array = np.random.default_rng(0).integers(-1000, 400, (12, 14, 16)).astype(np.int16)
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((1.0, 1.0, 1.0))
    image.SetOrigin((-10.0, 5.0, 30.0))
    return image


@pytest.mark.parametrize("suffix", [".nii.gz", ".nrrd", ".mha"])
def test_a_volume_has_one_digest_whatever_file_holds_it(
    volume: sitk.Image, tmp_path: Path, suffix: str
) -> None:
    path = tmp_path / f"patient{suffix}"
    sitk.WriteImage(volume, str(path))
    assert image_digest(sitk.ReadImage(str(path))) == image_digest(volume)


@pytest.mark.parametrize("change", ["voxel", "spacing", "origin", "type"])
def test_any_change_to_voxels_or_grid_changes_the_digest(volume: sitk.Image, change: str) -> None:
    other = sitk.Image(volume)
    if change == "voxel":
        other[3, 4, 5] = int(other[3, 4, 5]) + 1
    elif change == "spacing":
        other.SetSpacing((1.0, 1.0, 1.0001))
    elif change == "origin":
        other.SetOrigin((-10.0, 5.0, 30.5))
    else:
        other = sitk.Cast(volume, sitk.sitkInt32)
    assert image_digest(other) != image_digest(volume)


def test_the_parameter_digest_is_of_the_effective_settings() -> None:
    paper = load_params()
    assert params_digest(paper) == params_digest(load_params(normalize_scale=100.0))
    # A default spelled out changes nothing; a value changed does.
    spelled = {**paper, "setting": {**paper["setting"], "label": 1}}
    assert params_digest(spelled) == params_digest(paper)
    rebinned = {**paper, "setting": {**paper["setting"], "binWidth": 10}}
    assert params_digest(rebinned) != params_digest(paper)
    fewer = {**paper, "imageType": {"Original": {}, "LoG": {"sigma": [1.0, 2.0]}}}
    assert params_digest(fewer) != params_digest(paper)


def _rows(n: int, **overrides: str) -> pd.DataFrame:
    rows = [
        provenance_values(
            engine_version="pyradiomics 3.1.4", params_digest="p1", image=f"i{k}", mask=f"m{k}"
        )
        for k in range(n)
    ]
    frame = pd.DataFrame(rows)
    for column, value in overrides.items():
        frame.loc[0, column] = value
    return frame


def test_the_training_record_names_the_data_without_naming_a_patient() -> None:
    record = training_provenance(_rows(4))
    assert record["engine_version"] == "pyradiomics 3.1.4"
    assert record["params_digest"] == "p1"
    assert record["n_rows"] == 4
    # The same rows in another order are the same training data; other rows are not.
    assert (
        training_provenance(_rows(4).iloc[::-1])["training_data_digest"]
        == (record["training_data_digest"])
    )
    assert training_provenance(_rows(5))["training_data_digest"] != (record["training_data_digest"])


@pytest.mark.parametrize("column", ["engine_version", "params_digest"])
def test_rows_made_two_ways_cannot_train_one_model(column: str) -> None:
    with pytest.raises(ProvenanceError, match=f"2 different {column} values"):
        training_provenance(_rows(4, **{column: "other"}))


def test_a_table_without_provenance_is_refused_by_name() -> None:
    with pytest.raises(ProvenanceError, match="no provenance column"):
        training_provenance(_rows(3).drop(columns=["mask_digest"]))
    assert list(_rows(1).columns) == list(PROVENANCE_COLUMNS)


@pytest.mark.parametrize(
    ("engine", "digest", "problem"),
    [("pyradiomics 3.1.4", "p1", None), ("pyradiomics 3.0.1", "p1", "engine_version"),
     ("pyradiomics 3.1.4", "p2", "params_digest")],
)  # fmt: skip
def test_serving_refuses_a_bundle_it_would_compute_otherwise(
    engine: str, digest: str, problem: str | None
) -> None:
    recorded = {"engine_version": "pyradiomics 3.1.4", "params_digest": "p1"}
    if problem is None:
        check_serving_provenance(recorded, engine_version=engine, params_digest=digest, block="gtv")
        return
    with pytest.raises(ProvenanceError, match=f"gtv features were computed with {problem}"):
        check_serving_provenance(recorded, engine_version=engine, params_digest=digest, block="gtv")
