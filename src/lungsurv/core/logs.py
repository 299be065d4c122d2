"""Logging that a pod's log and a terminal both show, and one progress line per patient.

The library only creates loggers (``logging.getLogger(__name__)``, all below ``lungsurv``); the
entry points (the CLI, the KFP components, the model server) call :func:`configure_logging`
once. Long loops report through :class:`PatientProgress`: one line per patient with the stage,
the patient's position, its id, the outcome and the seconds it took, in a fixed form that
``make run-pipeline`` turns into a progress bar per stage (:data:`PROGRESS_LINE`).
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Sequence
from typing import TextIO

from lungsurv.core.errors import Failure

LOGGER_NAME = "lungsurv"
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
#: A per-patient progress line: ``convert: patient 3/10 LUNG1-003 ok in 2.1 s``.
PROGRESS_LINE = re.compile(r"(?P<stage>[\w-]+): patient (?P<done>\d+)/(?P<total>\d+) ")
#: A stage's announcement of how many patients it will report: ``convert: 10 patient(s)``.
PATIENT_COUNT = re.compile(r"(?P<stage>[\w-]+): (?P<total>\d+) patient\(s\)$")

logger = logging.getLogger(__name__)


def configure_logging(level: int | str = logging.INFO, stream: TextIO | None = None) -> None:
    """Send the ``lungsurv`` loggers' records at ``level`` and above to ``stream`` (default
    stderr), once: calling it again only changes the level."""
    root = logging.getLogger(LOGGER_NAME)
    root.setLevel(level)
    if not any(getattr(h, "_lungsurv", False) for h in root.handlers):
        handler = logging.StreamHandler(stream or sys.stderr)
        handler.setFormatter(logging.Formatter(LOG_FORMAT, datefmt="%H:%M:%S"))
        handler._lungsurv = True  # type: ignore[attr-defined]
        root.addHandler(handler)
        root.propagate = False


class PatientProgress:
    """Counts the patients of one stage and logs a :data:`PROGRESS_LINE` for each."""

    def __init__(self, stage: str, total: int, log: logging.Logger | None = None) -> None:
        self.stage, self.total, self.done = stage, total, 0
        self.log = log or logger
        self.log.info("%s: %d patient(s)", stage, total)

    def __call__(
        self,
        patient_id: str,
        seconds: float,
        failures: Sequence[Failure] = (),
        *,
        completed: bool | None = None,
    ) -> None:
        """One patient is through: ``completed`` (default: no failure) with ``failures`` (each
        logged as a warning, e.g. a ring that failed while the patient's GTV did not)."""
        self.done += 1
        completed = not failures if completed is None else completed
        if completed:
            outcome = f"ok, {len(failures)} problem(s)" if failures else "ok"
        else:
            outcome = f"failed ({', '.join(sorted({f.error_type for f in failures}))})"
        self.log.info(
            "%s: patient %d/%d %s %s in %.1f s",
            self.stage,
            self.done,
            self.total,
            patient_id,
            outcome,
            seconds,
        )
        for failure in failures:
            self.log.warning("%s: patient %s failed: %s", self.stage, patient_id, failure.message)
