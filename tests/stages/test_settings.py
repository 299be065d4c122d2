"""One source of defaults: the pipeline, the CLI and the parameter files read the library's."""

from __future__ import annotations

import argparse
import inspect
from pathlib import Path

import pytest
import yaml

from lungsurv.cli import build_parser
from lungsurv.core.layout import DEFAULT_ROI
from lungsurv.imaging.convert import ConvertSettings
from lungsurv.imaging.rings import DEFAULT_DISTANCES_MM
from lungsurv.stages.settings import PIPELINE_DEFAULTS, keyword_default
from pipelines.pipeline import lungsurv_pipeline, lungsurv_radiomics_pipeline
from pipelines.run import RUNNER_KEYS


@pytest.mark.parametrize("pipeline", [lungsurv_pipeline, lungsurv_radiomics_pipeline])
def test_the_pipeline_takes_every_default_from_the_library(pipeline) -> None:
    signature = inspect.signature(pipeline.pipeline_func).parameters
    assert set(PIPELINE_DEFAULTS) <= set(signature)
    for name, default in PIPELINE_DEFAULTS.items():
        assert signature[name].default == default, name


def _subcommand(name: str) -> argparse.ArgumentParser:
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return action.choices[name]


@pytest.mark.parametrize(
    ("command", "option", "expected"),
    [
        ("convert", "crop_margin_mm", ConvertSettings().crop_margin_mm),
        ("convert", "mask_interpolation", ConvertSettings().mask_interpolation),
        ("rings", "distances", list(DEFAULT_DISTANCES_MM)),
        ("rings", "clip_to_lungs", PIPELINE_DEFAULTS["clip_rings_to_lungs"]),
        ("import-tcia", "roi", DEFAULT_ROI),
        ("import-tcia", "center", PIPELINE_DEFAULTS["train_centers"][0]),
    ],
)
def test_the_cli_takes_its_defaults_from_the_library(
    command: str, option: str, expected: object
) -> None:
    assert _subcommand(command).get_default(option) == expected


@pytest.mark.parametrize("name", ["demo.yaml", "paper.yaml"])
def test_parameter_files_list_only_what_they_change(name: str) -> None:
    params = yaml.safe_load((Path("params") / name).read_text())
    restated = {
        k: v for k, v in params.items() if k in PIPELINE_DEFAULTS and v == PIPELINE_DEFAULTS[k]
    }
    assert not restated, f"{name} restates defaults: {restated}"
    assert set(params) - set(PIPELINE_DEFAULTS) - set(RUNNER_KEYS) <= set(
        inspect.signature(lungsurv_pipeline.pipeline_func).parameters
    )


def test_a_keyword_without_default_is_named() -> None:
    def stage(items, *, workers=1):
        return items, workers

    assert keyword_default(stage, "workers") == 1
    with pytest.raises(ValueError, match="items"):
        keyword_default(stage, "items")
