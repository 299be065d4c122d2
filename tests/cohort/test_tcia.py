"""The NSCLC-Radiomics importer on the real clinical table and patient, and on odd layouts."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pydicom
import pytest

from lungsurv.cohort.manifest import validate_manifest
from lungsurv.cohort.tcia import import_nsclc_radiomics, read_clinical


def test_real_clinical_table(clinical_csv: Path) -> None:
    clinical = read_clinical(clinical_csv)
    assert len(clinical) == 422
    assert clinical["patient_id"].is_unique
    first = clinical.set_index("patient_id").loc["LUNG1-001"]
    assert (first["t_stage"], first["n_stage"], first["m_stage"]) == ("T2", "N3", "M0")
    assert first["time_days"] == 2165 and first["event"] == 1
    assert clinical["histology"].isna().sum() == 42


def test_real_patient_is_found_by_headers(
    lung1_dir: Path, clinical_csv: Path, tmp_path: Path
) -> None:
    # Folder names that say nothing: the importer must read headers.
    root = tmp_path / "tcia"
    shutil.copytree(lung1_dir / "CT", root / "a" / "x1")
    shutil.copytree(lung1_dir / "RTSTRUCT", root / "a" / "x2")
    result = import_nsclc_radiomics(root, clinical_csv)
    assert list(result.manifest["patient_id"]) == ["LUNG1-001"]
    row = result.manifest.iloc[0]
    assert Path(row["image"]) == root / "a" / "x1"
    assert Path(row["mask"]) == root / "a" / "x2" / "1-1.dcm"
    assert row["center"] == "MAASTRO" and row["roi"] == "GTV-1"
    missing = result.report[result.report["problem"] == "clinical row without images"]
    assert len(missing) == 421
    report = validate_manifest(result.manifest)
    assert not report.problems


def test_unmatched_patients_are_listed(small_cohort_dir: Path, tmp_path: Path) -> None:
    root = tmp_path / "images"
    shutil.copytree(small_cohort_dir / "images", root)
    clinical = pd.read_csv(small_cohort_dir / "clinical.csv")
    gone = clinical.iloc[0]["PatientID"]
    clinical.iloc[1:].to_csv(tmp_path / "clinical.csv", index=False)
    orphan = clinical.iloc[2]["PatientID"]
    for path in (root / orphan).rglob("1-1.dcm"):
        path.unlink()
    result = import_nsclc_radiomics(root, tmp_path / "clinical.csv")
    problems = dict(zip(result.report["patient_id"], result.report["problem"], strict=True))
    assert problems[gone] == "images without a clinical row"
    assert problems[orphan] == "no RTSTRUCT references a CT series"
    assert len(result.manifest) == 6


def test_second_series_in_one_folder_is_named(small_cohort_dir: Path, tmp_path: Path) -> None:
    root = tmp_path / "images"
    shutil.copytree(small_cohort_dir / "images", root)
    manifest = pd.read_csv(small_cohort_dir / "manifest.csv")
    target = root.parent / manifest.iloc[0]["image"]
    for path in sorted((root.parent / manifest.iloc[1]["image"]).glob("*.dcm"))[:3]:
        ds = pydicom.dcmread(path)
        ds.PatientID = manifest.iloc[0]["patient_id"]
        ds.SeriesInstanceUID = "1.2.3.4.5"
        ds.save_as(target / f"extra-{path.name}")
    result = import_nsclc_radiomics(root, small_cohort_dir / "clinical.csv")
    row = result.manifest.set_index("patient_id").loc[manifest.iloc[0]["patient_id"]]
    assert row["series_uid"] and row["series_uid"] != "1.2.3.4.5"


def test_linked_patient_folders_are_followed_and_no_dicom_is_named(
    lung1_dir: Path, clinical_csv: Path, tmp_path: Path
) -> None:
    from lungsurv.core.errors import InputError

    root = tmp_path / "NSCLC-Radiomics"
    root.mkdir()
    (root / lung1_dir.name).symlink_to(lung1_dir, target_is_directory=True)
    (root / "loop").symlink_to(root, target_is_directory=True)  # a link loop ends
    result = import_nsclc_radiomics(root, clinical_csv)
    assert list(result.manifest["patient_id"]) == ["LUNG1-001"]
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="no DICOM file found"):
        import_nsclc_radiomics(empty, clinical_csv)
