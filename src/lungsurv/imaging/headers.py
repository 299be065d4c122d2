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

import numpy as np

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


#: Bytes per voxel of the NRRD and MetaImage types (NIfTI's come from nibabel).
_NRRD_TYPE_BYTES = {
    **dict.fromkeys(["int8", "uint8", "signed char", "uchar", "unsigned char", "char"], 1),
    **dict.fromkeys(["int16", "uint16", "short", "ushort", "unsigned short", "signed short"], 2),
    **dict.fromkeys(["int32", "uint32", "int", "uint", "unsigned int", "signed int", "float"], 4),
    **dict.fromkeys(["int64", "uint64", "longlong", "ulonglong", "double"], 8),
}
_META_TYPE_BYTES = {"MET_CHAR": 1, "MET_UCHAR": 1, "MET_SHORT": 2, "MET_USHORT": 2}
_META_TYPE_BYTES |= {"MET_INT": 4, "MET_UINT": 4, "MET_FLOAT": 4, "MET_LONG": 8}
_META_TYPE_BYTES |= {"MET_ULONG": 8, "MET_DOUBLE": 8, "MET_LONG_LONG": 8, "MET_ULONG_LONG": 8}


def declared_bytes(path: Path) -> int | None:
    """The size the voxels will take once read, from the header alone (before anything is
    decompressed); None when the format is not one whose header is read here."""
    with path.open("rb") as handle:
        head = handle.read(MAX_HEADER_BYTES)
    text = head.decode("latin-1")
    if head.startswith(b"NRRD"):
        fields = _fields(text.split("\n\n")[0].split("\n")[1:], ":")
        sizes, kind = fields.get("sizes", ""), fields.get("type", "").lower()
        per_voxel = _NRRD_TYPE_BYTES.get(kind, 8)
    elif any(_META_KEY.match(line) for line in text.splitlines()[:64]):
        fields = _fields(text.splitlines(), "=")
        sizes = fields.get("dimsize", "")
        per_voxel = _META_TYPE_BYTES.get(fields.get("elementtype", "").upper(), 8)
        per_voxel *= int(fields.get("elementnumberofchannels", "1") or 1)
    elif _is_nifti(head):
        import nibabel

        header = nibabel.load(str(path)).header  # the header only: no voxel is read
        shape = [int(v) for v in header.get_data_shape()]
        return int(np.prod(shape, dtype=np.float64)) * header.get_data_dtype().itemsize
    else:
        return None
    try:
        shape = [int(v) for v in sizes.split()]
    except ValueError:
        return None
    return int(np.prod(shape, dtype=np.float64)) * per_voxel if shape else None


def _fields(lines: list[str], separator: str) -> dict[str, str]:
    fields = {}
    for line in lines:
        key, found, value = line.partition(separator)
        if found and not key.startswith("#"):
            fields[key.strip().lower().replace(" ", "")] = value.strip()
    return fields


def _is_nifti(head: bytes) -> bool:
    if head[:2] == b"\x1f\x8b":
        import gzip
        import io

        try:
            head = gzip.GzipFile(fileobj=io.BytesIO(head)).read(352)
        except (OSError, EOFError):
            return False
    return head[344:348] in (b"n+1\x00", b"ni1\x00")


def declared_spacing(path: Path) -> list[float] | None:
    """The voxel sizes the header states (ITK turns a 0 into 1 mm as it reads, so they are
    checked here); None when the format or the header does not say."""
    with path.open("rb") as handle:
        head = handle.read(MAX_HEADER_BYTES)
    text = head.decode("latin-1")
    if head.startswith(b"NRRD"):
        fields = _fields(text.split("\n\n")[0].split("\n")[1:], ":")
        if "spacedirections" in fields:
            vectors = re.findall(r"\(([^)]*)\)", fields["spacedirections"])
            return [_norm(v) for v in vectors]
        values = fields.get("spacings", "")
    elif any(_META_KEY.match(line) for line in text.splitlines()[:64]):
        fields = _fields(text.splitlines(), "=")
        values = fields.get("elementspacing", fields.get("elementsize", ""))
    elif _is_nifti(head):
        return _nifti_pixdims(head)
    else:
        return None
    try:
        return [float(v) for v in values.split()] or None
    except ValueError:
        return None


def _nifti_pixdims(head: bytes) -> list[float] | None:
    """pixdim[1..3] as stored (nibabel and ITK both turn a 0 into 1 as they read)."""
    if head[:2] == b"\x1f\x8b":
        import gzip
        import io

        head = gzip.GzipFile(fileobj=io.BytesIO(head)).read(348)
    for order in ("<", ">"):
        if len(head) >= 348 and np.frombuffer(head[:4], f"{order}i4")[0] == 348:
            return [float(v) for v in np.frombuffer(head[80:92], f"{order}f4")]
    return None


def _norm(vector: str) -> float:
    try:
        return float(np.linalg.norm([float(v) for v in vector.split(",")]))
    except ValueError:
        return float("nan")


def check_declared_geometry(path: Path, what: str) -> None:
    """Refuse voxel sizes that cannot be a CT's: zero, negative or not finite."""
    spacing = declared_spacing(path)
    if spacing is not None and not all(np.isfinite(v) and v > 0 for v in spacing):
        raise InputError(f"{what}: its header declares voxel sizes {spacing} mm")


def check_declared_size(path: Path, limit: int, what: str) -> None:
    """Refuse ``path`` when its header says the voxels take more than ``limit`` bytes."""
    size = declared_bytes(path)
    if size is not None and size > limit:
        raise InputError(
            f"{what}: its header declares {size / 2**20:.0f} MiB of voxels; the limit is "
            f"{limit // 2**20} MiB"
        )


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
