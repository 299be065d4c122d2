"""The one place a name from outside becomes a path: always below the folder it belongs in."""

from __future__ import annotations

from pathlib import Path

from lungsurv.core.errors import InputError
from lungsurv.core.layout import patient_id_problem


def patient_folder(root: Path, patient_id: str) -> Path:
    """``root/<patient_id>``, refused unless the id is a safe identifier
    (:data:`~lungsurv.core.layout.PATIENT_ID_PATTERN`) and the folder resolves inside ``root``
    (a link planted in ``root`` cannot lead out of it either)."""
    problem = patient_id_problem(patient_id)
    if problem:
        raise InputError(f"patient id {patient_id!r}: {problem}")
    return inside(root, patient_id)


def inside(root: Path, *parts: str) -> Path:
    """``root`` joined with ``parts``, refused when the result resolves outside ``root``."""
    base = root.resolve()
    path = base.joinpath(*parts)
    if not path.resolve().is_relative_to(base):
        raise InputError(f"{'/'.join(parts)!r} leads outside its output folder")
    return path
