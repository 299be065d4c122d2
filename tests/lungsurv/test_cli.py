"""The command line, end to end on a small cohort."""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd
import pytest

from lungsurv import __version__
from lungsurv.cli import build_parser, main


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


def _commands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {"lungsurv": parser, **action.choices}


@pytest.mark.parametrize("command", sorted(_commands()))
def test_every_option_has_help_and_no_markup(command: str) -> None:
    parser = _commands()[command]
    for action in parser._actions:
        if not isinstance(action, argparse._SubParsersAction) and action.dest != "help":
            assert action.help, f"{command} {action.option_strings or action.dest} has no help"
    text = parser.format_help()
    assert "``" not in text and ":func:" not in text and ":mod:" not in text


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.strip() == f"lungsurv {__version__}"


@pytest.mark.parametrize(("flag", "level"), [("--verbose", "DEBUG"), ("--quiet", "WARNING")])
def test_verbose_and_quiet_set_the_log_level(flag: str, level: str, tmp_path: Path) -> None:
    import logging

    bad = tmp_path / "m.csv"
    bad.write_text("patient_id,image\nP1,x\n")
    main([flag, "validate", str(bad)])
    assert logging.getLevelName(logging.getLogger("lungsurv").level) == level
