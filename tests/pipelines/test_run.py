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


LINES = (
    "    12:00:00 INFO lungsurv.stages.convert: convert: 2 patient(s)\n"
    "    12:00:01 INFO lungsurv.stages.convert: convert: patient 1/2 P1 ok in 1.0 s\n"
    "    12:00:02 INFO lungsurv.stages.convert: convert: patient 2/2 P2 ok in 1.0 s\n"
    "    12:00:03 INFO lungsurv.deep.train: epoch 1/15: train loss 2.1, validation loss 2.0\n"
)


def test_patients_move_a_progress_bar_per_stage_on_a_terminal() -> None:
    terminal, log = io.StringIO(), io.StringIO()
    stream = ProgressStream(terminal, log, bars=True)
    stream.write(LINES)
    bar = stream.bars["convert"]
    assert (bar.n, bar.total) == (2, 2)
    stream.close()
    shown = terminal.getvalue()
    assert "2/2" in shown and "epoch 1/15: train loss 2.1" in shown
    assert "patient 1/2 P1" not in shown  # drawn as the bar, not as lines


def test_patients_are_lines_where_no_bar_can_be_drawn() -> None:
    terminal, log = io.StringIO(), io.StringIO()
    ProgressStream(terminal, log).write(LINES)  # StringIO is no TTY: lines, e.g. in CI
    shown = terminal.getvalue().splitlines()
    assert len(shown) == 4 and shown[1].endswith("convert: patient 1/2 P1 ok in 1.0 s")


def test_bars_span_the_cohort_and_stop_when_it_is_through() -> None:
    terminal, log = io.StringIO(), io.StringIO()
    stream = ProgressStream(terminal, log, bars=True)
    stream.write(
        "    12:00:00 INFO lungsurv.components.cohort: cohort: 2 patient(s)\n"
        "    12:00:00 INFO lungsurv.components.cohort: split: 1 train, 1 test\n"
        "    12:00:01 INFO lungsurv.stages.convert: convert: 1 patient(s)\n"
        "    12:00:02 INFO lungsurv.stages.convert: convert: patient 1/1 P1 ok in 1.0 s\n"
    )
    bar = stream.bars["convert"]
    assert (bar.n, bar.total) == (1, 2)  # one shard of two is through
    stream.write(
        "    12:00:03 INFO lungsurv.stages.convert: convert: 1 patient(s)\n"
        "    12:00:04 INFO lungsurv.stages.convert: convert: patient 1/1 P2 ok in 1.0 s\n"
        "    12:00:05 WARNING lungsurv.stages.rings: segment-rings: patient P2 failed: empty\n"
    )
    assert (bar.n, bar.total) == (2, 2) and bar.disable  # closed: its clock stopped
    shown = terminal.getvalue()
    assert "cohort: 2 patient(s)" in shown and "split: 1 train, 1 test" in shown
    assert "warning: segment-rings: patient P2 failed: empty" in shown  # no log prefix
    assert "lungsurv.stages" not in shown
