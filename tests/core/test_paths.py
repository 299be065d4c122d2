"""core.paths: a patient id from a manifest names a folder below the output folder, or nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from lungsurv.core.errors import InputError
from lungsurv.core.layout import patient_id_problem
from lungsurv.core.paths import inside, patient_folder


@pytest.mark.parametrize("good", ["LUNG1-001", "SYN-MAASTRO-001", "p.1", "007", "a_b", "x" * 64])
def test_safe_ids_name_a_folder_inside(tmp_path: Path, good: str) -> None:
    assert patient_id_problem(good) is None
    assert patient_folder(tmp_path, good) == tmp_path.resolve() / good


@pytest.mark.parametrize(
    "bad",
    [
        "",
        ".",
        "..",
        "../x",
        "/abs",
        "a/b",
        "a\\b",
        ".hidden",
        "x" * 65,
        "a b",
        "é",
        "GEOMETRY.parquet",
    ],
)
def test_unsafe_ids_are_refused(tmp_path: Path, bad: str) -> None:
    assert patient_id_problem(bad)
    with pytest.raises(InputError, match="patient id"):
        patient_folder(tmp_path, bad)


def test_a_planted_link_cannot_lead_out(tmp_path: Path) -> None:
    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    out.mkdir()
    elsewhere.mkdir()
    (out / "P1").symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(InputError, match="outside its output folder"):
        patient_folder(out, "P1")
    assert inside(out, "P2", "ring_3mm.nii.gz") == out.resolve() / "P2" / "ring_3mm.nii.gz"
