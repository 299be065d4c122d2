"""One patient's DICOM as a zip (a serving request), unpacked into a CT folder and an RTSTRUCT."""

from __future__ import annotations

import io
import zipfile
import zlib
from pathlib import Path

import pydicom

from lungsurv.core.errors import InputError

#: Largest total uncompressed size of a DICOM zip (a guard against zip bombs).
MAX_UNZIPPED_BYTES = 2 * 2**30
#: Largest uncompressed member (a CT slice is about 0.5 MB, an RTSTRUCT a few MB).
MAX_MEMBER_BYTES = 512 * 2**20
#: Most members a zip may hold (a CT series has hundreds of slices).
MAX_MEMBERS = 20_000
_CHUNK = 2**20
#: What a corrupt, encrypted or oddly compressed member raises while it is read.
_UNREADABLE = (zipfile.BadZipFile, zlib.error, RuntimeError, NotImplementedError, EOFError, OSError)


def unpack_dicom_zip(data: bytes, workdir: Path) -> tuple[Path, Path]:
    """A zip of one patient's DICOM files: (folder of the CT slices, the RTSTRUCT file).

    Members are written under ``workdir`` by index (never by their own paths, so a ``../`` name
    cannot escape); the RTSTRUCT is found by its Modality, whatever the layout of the zip. The
    unpacked size is counted while streaming, not taken from the zip's own directory, which a
    zip bomb can fake; members are named by their position, never by their (UID-like) names.
    """
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, ValueError, EOFError) as error:
        raise InputError(f"not a zip archive: {error}") from error
    members = [m for m in archive.infolist() if not m.is_dir()]
    if len(members) > MAX_MEMBERS:
        raise InputError(f"the zip holds {len(members)} files; at most {MAX_MEMBERS} are read")
    if sum(m.file_size for m in members) > MAX_UNZIPPED_BYTES:
        raise InputError(f"the zip unpacks to more than {MAX_UNZIPPED_BYTES // 2**30} GiB")
    ct_dir = workdir / "ct"
    ct_dir.mkdir(parents=True, exist_ok=True)
    structures: list[Path] = []
    total = 0
    for index, member in enumerate(members):
        where = f"zip member {index + 1} of {len(members)}"
        target = workdir / f"{index:06d}.part"
        try:
            total += _extract(archive, member, target, MAX_UNZIPPED_BYTES - total, where)
        except _UNREADABLE as error:
            raise InputError(f"{where} cannot be read ({type(error).__name__})") from error
        modality = _modality(target)
        if modality is None:  # not DICOM (a README, a viewer, a DICOMDIR index): skipped
            target.unlink()
            continue
        final = (workdir if modality == "RTSTRUCT" else ct_dir) / f"{index:06d}.dcm"
        target.rename(final)
        if modality == "RTSTRUCT":
            structures.append(final)
    if len(structures) != 1:
        raise InputError(f"the zip holds {len(structures)} RTSTRUCT files; expected exactly one")
    if not any(ct_dir.iterdir()):
        raise InputError("the zip holds no CT slices")
    return ct_dir, structures[0]


def _extract(
    archive: zipfile.ZipFile, member: zipfile.ZipInfo, target: Path, budget: int, where: str
) -> int:
    """Stream one member to ``target``, counting what it really unpacks to."""
    written = 0
    with archive.open(member) as source, target.open("wb") as sink:
        while chunk := source.read(_CHUNK):
            written += len(chunk)
            if written > MAX_MEMBER_BYTES:
                raise InputError(f"{where} unpacks to more than {MAX_MEMBER_BYTES // 2**20} MiB")
            if written > budget:
                raise InputError(f"the zip unpacks to more than {MAX_UNZIPPED_BYTES // 2**30} GiB")
            sink.write(chunk)
    return written


def _modality(path: Path) -> str | None:
    """The DICOM Modality of ``path``; None when it is no DICOM file or a DICOMDIR."""
    try:
        # Only the two elements asked for are kept: the rest (an RTSTRUCT's contours) is skipped.
        header = pydicom.dcmread(
            path, stop_before_pixels=True, specific_tags=["Modality", "DirectoryRecordSequence"]
        )
    except Exception:  # not DICOM: whatever pydicom makes of it
        return None
    if "DirectoryRecordSequence" in header:
        return None
    return str(getattr(header, "Modality", ""))
