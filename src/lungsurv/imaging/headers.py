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

import gzip
import io
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from lungsurv.core.errors import InputError

ExternalData = Literal["refuse", "same-folder"]
EXTERNAL_DATA_POLICIES: tuple[str, ...] = ("refuse", "same-folder")
#: The most of a file read to find its header (a NRRD or MetaImage header is a few hundred bytes).
MAX_HEADER_BYTES = 64 * 1024
_NRRD_DATA_FILE = re.compile(r"^data ?file\s*:\s*(.*)$", re.IGNORECASE)
_META_KEY = re.compile(r"^\s*(ObjectType|NDims|DimSize|ElementType)\s*=", re.IGNORECASE)


@dataclass(frozen=True)
class _Head:
    """The start of an image file, classified once: its format, its text fields (NRRD,
    MetaImage; keys lower-case without spaces) and its raw bytes (NIfTI: the 348-byte header,
    decompressed)."""

    kind: Literal["nrrd", "meta", "nifti", "other"]
    raw: bytes
    fields: dict[str, str]


def _read_head(path: Path) -> _Head:
    with path.open("rb") as handle:
        raw = handle.read(MAX_HEADER_BYTES)
    if raw.startswith(b"NRRD"):
        header = raw.replace(b"\r\n", b"\n").split(b"\n\n")[0].decode("latin-1")
        return _Head("nrrd", raw, _fields(header.split("\n")[1:], ":"))
    lines = raw.decode("latin-1").splitlines()
    if any(_META_KEY.match(line) for line in lines[:64]):
        return _Head("meta", raw, _fields(lines, "="))
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.GzipFile(fileobj=io.BytesIO(raw)).read(348)
        except (OSError, EOFError):
            return _Head("other", raw, {})
    if raw[344:348] in (b"n+1\x00", b"ni1\x00"):
        return _Head("nifti", raw, {})
    return _Head("other", raw, {})


def _fields(lines: list[str], separator: str) -> dict[str, str]:
    fields = {}
    for line in lines:
        key, found, value = line.partition(separator)
        if found and not key.startswith("#"):
            fields[key.strip().lower().replace(" ", "")] = value.strip()
    return fields


def _nifti_numbers(raw: bytes, offset: int, dtype: str, count: int) -> np.ndarray | None:
    """``count`` values of a NIfTI-1 header field, in the header's own byte order."""
    for order in ("<", ">"):
        if len(raw) >= 348 and np.frombuffer(raw[:4], f"{order}i4")[0] == 348:
            return np.frombuffer(raw, f"{order}{dtype}", count=count, offset=offset)
    return None


def data_file_references(path: Path) -> list[str] | None:
    """The data files ``path``'s header names: ``[]`` when the voxels are attached, ``None``
    when it is no NRRD or MetaImage header (NIfTI, DICOM: no reference possible)."""
    head = _read_head(path)
    if head.kind == "nrrd":
        return _nrrd_references(head.raw)
    if head.kind == "meta":
        value = head.fields.get("elementdatafile", "LOCAL")
        return [] if value.upper() == "LOCAL" else [value]
    return None


def _nrrd_references(raw: bytes) -> list[str]:
    header, _, rest = raw.replace(b"\r\n", b"\n").partition(b"\n\n")
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


#: Bytes per voxel of the NRRD and MetaImage types (NIfTI's header says its bits per voxel).
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
    head = _read_head(path)
    if head.kind == "nifti":
        dims, bits = _nifti_numbers(head.raw, 40, "i2", 8), _nifti_numbers(head.raw, 72, "i2", 1)
        if dims is None or bits is None or not 1 <= dims[0] <= 7:
            return None
        return int(np.prod(dims[1 : dims[0] + 1], dtype=np.float64)) * max(int(bits[0]) // 8, 1)
    if head.kind == "nrrd":
        sizes = head.fields.get("sizes", "")
        per_voxel = _NRRD_TYPE_BYTES.get(head.fields.get("type", "").lower(), 8)
    elif head.kind == "meta":
        sizes = head.fields.get("dimsize", "")
        per_voxel = _META_TYPE_BYTES.get(head.fields.get("elementtype", "").upper(), 8)
        per_voxel *= int(head.fields.get("elementnumberofchannels", "1") or 1)
    else:
        return None
    try:
        shape = [int(v) for v in sizes.split()]
    except ValueError:
        return None
    return int(np.prod(shape, dtype=np.float64)) * per_voxel if shape else None


def declared_spacing(path: Path) -> list[float] | None:
    """The voxel sizes the header states (ITK and nibabel turn a 0 into 1 mm as they read, so
    they are checked here); None when the format or the header does not say."""
    head = _read_head(path)
    if head.kind == "nifti":
        pixdims = _nifti_numbers(head.raw, 80, "f4", 3)
        return None if pixdims is None else [float(v) for v in pixdims]
    if head.kind == "nrrd" and "spacedirections" in head.fields:
        vectors = re.findall(r"\(([^)]*)\)", head.fields["spacedirections"])
        return [_norm(v) for v in vectors]
    if head.kind == "nrrd":
        values = head.fields.get("spacings", "")
    elif head.kind == "meta":
        values = head.fields.get("elementspacing", head.fields.get("elementsize", ""))
    else:
        return None
    try:
        return [float(v) for v in values.split()] or None
    except ValueError:
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
