"""core.logs: one handler for the lungsurv loggers, and per-patient progress lines."""

from __future__ import annotations

import io
import logging

import pytest

from lungsurv.core.errors import Failure
from lungsurv.core.logs import PROGRESS_LINE, PatientProgress, configure_logging


@pytest.fixture
def stream() -> io.StringIO:
    out = io.StringIO()
    root = logging.getLogger("lungsurv")
    saved = root.handlers[:], root.level, root.propagate
    root.handlers = []
    configure_logging(logging.INFO, out)
    yield out
    root.handlers, root.level, root.propagate = saved[0], saved[1], saved[2]


def test_progress_lines_count_patients_and_parse(stream: io.StringIO) -> None:
    progress = PatientProgress("convert", 2, logging.getLogger("lungsurv.stages.convert"))
    progress("LUNG1-001", 2.04)
    progress("LUNG1 002", 0.5, [Failure("LUNG1 002", "convert", "DicomError", "no CT slices")])
    lines = stream.getvalue().splitlines()
    assert "convert: 2 patient(s)" in lines[0]
    assert lines[1].endswith("convert: patient 1/2 LUNG1-001 ok in 2.0 s")
    assert lines[2].endswith("convert: patient 2/2 LUNG1 002 failed (DicomError) in 0.5 s")
    assert lines[3].endswith(
        "WARNING lungsurv.stages.convert: convert: patient LUNG1 002 failed: no CT slices"
    )
    matches = [PROGRESS_LINE.search(line) for line in lines[1:3]]
    assert [(m["stage"], m["done"], m["total"]) for m in matches] == [
        ("convert", "1", "2"),
        ("convert", "2", "2"),
    ]


def test_configuring_twice_adds_no_second_handler(stream: io.StringIO) -> None:
    configure_logging(logging.WARNING)
    logging.getLogger("lungsurv.x").info("hidden")
    logging.getLogger("lungsurv.x").warning("shown")
    assert stream.getvalue().splitlines()[-1].endswith("WARNING lungsurv.x: shown")
    assert sum(getattr(h, "_lungsurv", False) for h in logging.getLogger("lungsurv").handlers) == 1


def test_a_patient_with_a_failed_part_is_still_done(stream: io.StringIO) -> None:
    progress = PatientProgress("radiomics", 1)
    progress(
        "P1", 1.0, [Failure("P1", "radiomics", "RoiError", "ring_9mm is empty")], completed=True
    )
    assert "radiomics: patient 1/1 P1 ok, 1 problem(s) in 1.0 s" in stream.getvalue()
