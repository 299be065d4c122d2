"""make run-pipeline's local runner: progress lines on the terminal, everything in the log."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from pipelines.run import ProgressStream, load_params


def test_progress_stream_shows_only_progress() -> None:
    terminal, log = io.StringIO(), io.StringIO()
    stream = ProgressStream(terminal, log)
    stream.write("12:00:00.000 - INFO - Running pipeline: \x1b[95m'lungsurv'\x1b[0m\n")
    stream.write('    {"executorInput": {"inputs": ')
    stream.write("{}}}\n    noise\n12:00:01.000 - INFO - Task \x1b[96m'convert-shard'\x1b[0m ")
    stream.write(
        "finished with status \x1b[92mSUCCESS\x1b[0m\n    failed: P1: ROI 'GTV-9' not found\n"
    )
    shown = terminal.getvalue().splitlines()
    assert shown == [
        "12:00:00.000 - INFO - Running pipeline: 'lungsurv'",
        "12:00:01.000 - INFO - Task 'convert-shard' finished with status SUCCESS",
        "failed: P1: ROI 'GTV-9' not found",
    ]
    assert "executorInput" in log.getvalue() and "noise" in log.getvalue()


@pytest.mark.parametrize("name", ["demo.yaml", "paper.yaml"])
def test_parameter_files_name_pipeline_parameters(name: str) -> None:
    import inspect

    from pipelines.pipeline import lungsurv_pipeline
    from pipelines.run import RUNNER_KEYS

    params = load_params(Path("params") / name)
    accepted = set(inspect.signature(lungsurv_pipeline.pipeline_func).parameters)
    unknown = set(params) - accepted - set(RUNNER_KEYS)
    assert not unknown
