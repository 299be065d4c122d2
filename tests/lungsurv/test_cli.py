"""The command line, end to end on a small cohort."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from lungsurv.cli import main


@pytest.mark.slow
def test_synth_validate_convert_rings(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cohort = tmp_path / "cohort"
    assert main(["synth", "--out", str(cohort), "--small", "--n-patients", "3", "--seed", "3"]) == 0
    assert "oracle_c_index" in capsys.readouterr().out
    assert main(["validate", str(cohort / "manifest.csv")]) == 0
    assert main(["convert", str(cohort / "manifest.csv"), "--out", str(tmp_path / "vol")]) == 0
    geometry = pd.read_parquet(tmp_path / "vol" / "geometry.parquet")
    assert len(geometry) == 3
    assert (
        main(
            ["rings", str(tmp_path / "vol"), "--out", str(tmp_path / "rings"), "--distances", "3,6"]
        )
        == 0
    )
    rings = pd.read_parquet(tmp_path / "rings" / "rings.parquet")
    assert sorted(rings["roi"].unique()) == ["ring_3mm", "ring_6mm"]
    assert "rings for 3 patients" in capsys.readouterr().out


def test_import_tcia(
    lung1_dir: Path, clinical_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "manifest.csv"
    assert (
        main(
            [
                "import-tcia",
                "--images",
                str(lung1_dir),
                "--clinical",
                str(clinical_csv),
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert "1 patients" in capsys.readouterr().out
    assert len(pd.read_csv(out)) == 1
    assert len(pd.read_csv(tmp_path / "manifest-report.csv")) == 421


def test_invalid_manifest_exits_non_zero(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "m.csv"
    bad.write_text("patient_id,image\nP1,x\n")
    assert main(["validate", str(bad)]) == 2
    assert "required column 'mask' is missing" in capsys.readouterr().err
