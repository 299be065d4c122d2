"""Image headers that name other files: NRRD's ``data file`` and MetaImage's ``ElementDataFile``.

A NRRD (``.nrrd``, ``.nhdr``) or MetaImage (``.mha``, ``.mhd``) header may say where its voxels
are: in another file, in a list of files, or in numbered files. ITK's readers follow it, so a
header that comes from outside (a request, a manifest) could make the reader open any path on
the machine and hand its bytes back as voxels. :func:`check_data_files` reads the header before
ITK does, by content and whatever the file is called, and refuses what the caller does not allow:

* ``"refuse"`` (serving): the voxels must be in the file itself;
* ``"same-folder"`` (the pipeline): a separate data file must lie in the header's own folder
  (after resolving links), as a detached NRRD or MetaImage pair exported together does; lists
  and numbered patterns are refused.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from lungsurv.core.errors import InputError

ExternalData = Literal["refuse", "same-folder"]
EXTERNAL_DATA_POLICIES: tuple[str, ...] = ("refuse", "same-folder")
#: The most of a file read to find its header (a NRRD or MetaImage header is a few hundred bytes).
MAX_HEADER_BYTES = 64 * 1024
_NRRD_DATA_FILE = re.compile(r"^data ?file\s*:\s*(.*)$", re.IGNORECASE)
_META_DATA_FILE = re.compile(r"^\s*ElementDataFile\s*=\s*(.*)$", re.IGNORECASE)
_META_KEY = re.compile(r"^\s*(ObjectType|NDims|DimSize|ElementType)\s*=", re.IGNORECASE)


def data_file_references(path: Path) -> list[str] | None:
    """The data files ``path``'s header names: ``[]`` when the voxels are attached, ``None``
    when it is no NRRD or MetaImage header (NIfTI, DICOM: no reference possible)."""
    with path.open("rb") as handle:
        head = handle.read(MAX_HEADER_BYTES)
    if head.startswith(b"NRRD"):
        return _nrrd_references(head)
    text = head.decode("latin-1")
    lines = text.splitlines()
    if any(_META_KEY.match(line) for line in lines[:64]):
        for line in lines:
            if match := _META_DATA_FILE.match(line):
                value = match.group(1).strip()
                return [] if value.upper() == "LOCAL" else [value]
        return []
    return None


def _nrrd_references(head: bytes) -> list[str]:
    header, _, rest = head.replace(b"\r\n", b"\n").partition(b"\n\n")
    lines = header.decode("latin-1").split("\n")[1:]
    for index, line in enumerate(lines):
        if match := _NRRD_DATA_FILE.match(line.strip()):
            value = match.group(1).strip()
            if value.upper().startswith("LIST"):
                # The file names follow, one per line, to the end of the header.
                following = lines[index + 1 :] + rest.decode("latin-1").split("\n")
                return ["LIST", *(name for name in following if name.strip())]
            return [value]
    return []


def check_data_files(path: Path, policy: ExternalData, what: str) -> None:
    """Refuse ``path`` when its header names data files that ``policy`` does not allow."""
    if policy not in EXTERNAL_DATA_POLICIES:
        raise ValueError(
            f"external data policy must be one of {EXTERNAL_DATA_POLICIES}, not {policy!r}"
        )
    try:
        names = data_file_references(path)
    except OSError as error:
        raise InputError(f"cannot read {what}: {error.strerror or error}") from error
    if not names:
        return
    if policy == "refuse":
        raise InputError(
            f"{what}: its header names a separate data file; send the voxels in the file itself "
            "(NIfTI, or NRRD/MetaImage with attached data)"
        )
    if len(names) > 1 or len(names[0].split()) > 1:
        raise InputError(f"{what}: its header names a list or a pattern of data files (refused)")
    folder = path.parent.resolve()
    target = (folder / names[0]).resolve()
    if not target.is_relative_to(folder):
        raise InputError(f"{what}: its header names a data file outside its own folder (refused)")
