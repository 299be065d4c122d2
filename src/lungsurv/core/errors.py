"""Errors that name the patient and the problem.

A stage processes a cohort patient by patient; a :class:`PatientError` stops only that patient.
It is recorded in the stage's failures table (patient, stage, error type, message) and the rest
of the cohort goes on.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


class LungsurvError(Exception):
    """Base class of every error this package raises on purpose."""


class InputError(LungsurvError, ValueError):
    """Input data that cannot be used as it is (a file, a header, a geometry)."""


class DicomError(InputError):
    """A DICOM series or structure set that cannot be read into a volume."""


class ManifestError(InputError):
    """A cohort manifest that cannot be used at all (missing required column, unknown column)."""


class PatientError(LungsurvError):
    """A failure of one patient, carrying the patient's id and the stage that failed."""

    def __init__(self, patient_id: str, problem: str, *, stage: str = "", kind: str = "") -> None:
        self.patient_id = patient_id
        self.problem = problem
        self.stage = stage
        self.kind = kind
        super().__init__(f"patient {patient_id!r}: {problem}")


#: Errors whose message says what is wrong with the input on its own; others get their type too.
_SELF_EXPLAINING = (LungsurvError, ValueError, OSError, RuntimeError)


def problem_of(error: BaseException) -> str:
    """What went wrong with a patient's input, in words. A library error that the input caused
    but the library did not expect (a ``KeyError`` for a missing DICOM attribute, say) keeps
    its type, so the message still says something."""
    if isinstance(error, PatientError):
        return error.problem
    if isinstance(error, OSError) and error.strerror:
        return error.strerror  # without the file name an OSError carries
    text = str(error)
    if isinstance(error, _SELF_EXPLAINING) and text:
        return text
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


@dataclass(frozen=True)
class Failure:
    """One row of a failures table."""

    patient_id: str
    stage: str
    error_type: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return asdict(self)

    @classmethod
    def from_exception(cls, patient_id: str, stage: str, error: BaseException) -> Failure:
        message = problem_of(error)
        kind = (
            error.kind if isinstance(error, PatientError) and error.kind else type(error).__name__
        )
        return cls(patient_id=patient_id, stage=stage, error_type=kind, message=message)


FAILURE_COLUMNS: tuple[str, ...] = ("patient_id", "stage", "error_type", "message")
