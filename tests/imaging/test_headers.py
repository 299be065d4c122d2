"""imaging.headers: a NRRD or MetaImage header cannot make the reader open a file it names."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from lungsurv.core.errors import InputError
from lungsurv.imaging.headers import check_data_files, data_file_references
from lungsurv.stages.convert import convert_cohort


@pytest.fixture
def volume() -> sitk.Image:
    return sitk.GetImageFromArray(np.arange(60, dtype=np.int16).reshape(3, 4, 5))


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("a.nrrd", []),
        ("a.nhdr", ["a.raw"]),
        ("a.mha", []),
        ("a.mhd", ["a.raw"]),
        ("a.nii.gz", None),
    ],
)
def test_references_are_read_from_the_header(
    volume: sitk.Image, tmp_path: Path, name: str, expected: list[str] | None
) -> None:
    sitk.WriteImage(volume, str(tmp_path / name))
    assert data_file_references(tmp_path / name) == expected


def _retarget(header: Path, target: str, *, key: str = "data file: ") -> Path:
    """The header with its data-file line pointing at ``target``."""
    lines = [
        f"{key}{target}" if line.lower().startswith(key.lower()) else line
        for line in header.read_text().splitlines()
    ]
    header.write_text("\n".join(lines) + "\n\n")
    return header


@pytest.mark.parametrize("name", ["a.nhdr", "a.mhd"])
def test_a_data_file_beside_its_header_is_read_in_the_pipeline_only(
    volume: sitk.Image, tmp_path: Path, name: str
) -> None:
    sitk.WriteImage(volume, str(tmp_path / name))
    check_data_files(tmp_path / name, "same-folder", "image")
    with pytest.raises(InputError, match="separate data file"):
        check_data_files(tmp_path / name, "refuse", "image")


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("../secret.raw", "outside its own folder"),
        ("/etc/hostname", "outside its own folder"),
        ("slice%03d.raw 1 3 1", "list or a pattern"),
        ("LIST\nx.raw\ny.raw", "list or a pattern"),
    ],
)
def test_a_header_naming_other_files_is_refused(
    volume: sitk.Image, tmp_path: Path, target: str, message: str
) -> None:
    folder = tmp_path / "patient"
    folder.mkdir()
    sitk.WriteImage(volume, str(folder / "ct.nhdr"))
    (tmp_path / "secret.raw").write_bytes(bytes(120))
    header = _retarget(folder / "ct.nhdr", target)
    with pytest.raises(InputError, match=message):
        check_data_files(header, "same-folder", "image")


def test_the_header_is_read_by_content_whatever_the_name(
    volume: sitk.Image, tmp_path: Path
) -> None:
    sitk.WriteImage(volume, str(tmp_path / "ct.nhdr"))
    disguised = tmp_path / "ct.nii.gz"
    disguised.write_bytes(_retarget(tmp_path / "ct.nhdr", "/etc/hostname").read_bytes())
    with pytest.raises(InputError, match="outside its own folder"):
        check_data_files(disguised, "same-folder", "image")


def test_a_link_out_of_the_folder_is_refused(volume: sitk.Image, tmp_path: Path) -> None:
    folder = tmp_path / "patient"
    folder.mkdir()
    sitk.WriteImage(volume, str(tmp_path / "elsewhere.mhd"))
    (folder / "ct.raw").symlink_to(tmp_path / "elsewhere.raw")
    sitk.WriteImage(volume, str(folder / "ct.mhd"))
    (folder / "ct.raw").unlink()
    (folder / "ct.raw").symlink_to(tmp_path / "elsewhere.raw")
    with pytest.raises(InputError, match="outside its own folder"):
        check_data_files(folder / "ct.mhd", "same-folder", "image")


def test_the_pipeline_reports_the_patient_and_goes_on(volume: sitk.Image, tmp_path: Path) -> None:
    rows = []
    for pid in ("P1", "P2"):
        folder = tmp_path / pid
        folder.mkdir()
        image = sitk.Cast(volume, sitk.sitkFloat32) - 1000
        mask = sitk.Cast(
            sitk.GetImageFromArray((np.arange(60).reshape(3, 4, 5) % 7 == 0).astype(np.uint8)),
            sitk.sitkUInt8,
        )
        mask.CopyInformation(image)
        sitk.WriteImage(image, str(folder / "ct.nhdr"))
        sitk.WriteImage(mask, str(folder / "gtv.nrrd"))
        rows.append(
            {"patient_id": pid, "image": str(folder / "ct.nhdr"), "mask": str(folder / "gtv.nrrd")}
        )
    (tmp_path / "secret.raw").write_bytes((tmp_path / "P2" / "ct.raw").read_bytes())
    _retarget(tmp_path / "P2" / "ct.nhdr", str(tmp_path / "secret.raw"))
    geometry, failures = convert_cohort(pd.DataFrame(rows), tmp_path / "out")
    assert list(geometry["patient_id"]) == ["P1"]
    assert list(failures["patient_id"]) == ["P2"]
    assert "outside its own folder" in failures["message"].iloc[0]
