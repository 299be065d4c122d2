"""One patient's DICOM as a zip (a serving request), unpacked into a CT folder and an RTSTRUCT."""

from __future__ import annotations

from pathlib import Path

from lungsurv.core.errors import InputError

#: Largest total uncompressed size of a DICOM zip (a guard against zip bombs).
MAX_UNZIPPED_BYTES = 2 * 2**30


def unpack_dicom_zip(data: bytes, workdir: Path) -> tuple[Path, Path]:
    """A zip of one patient's DICOM files: (folder of the CT slices, the RTSTRUCT file).

    Members are written under ``workdir`` by index (never by their own paths, so a ``../`` name
    cannot escape); the RTSTRUCT is found by its Modality, whatever the layout of the zip.
    """
    import io
    import zipfile

    import pydicom

    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile as error:
        raise InputError(f"not a zip archive: {error}") from error
    members = [m for m in archive.infolist() if not m.is_dir()]
    if sum(m.file_size for m in members) > MAX_UNZIPPED_BYTES:
        raise InputError(f"the zip unpacks to more than {MAX_UNZIPPED_BYTES // 2**30} GiB")
    ct_dir = workdir / "ct"
    ct_dir.mkdir(parents=True, exist_ok=True)
    structures: list[Path] = []
    for index, member in enumerate(members):
        payload = archive.read(member)
        try:
            header = pydicom.dcmread(io.BytesIO(payload), stop_before_pixels=True)
        except Exception:  # not DICOM (a README, a viewer): skipped
            continue
        if "DirectoryRecordSequence" in header:
            continue  # a DICOMDIR index, not an image
        modality = str(getattr(header, "Modality", ""))
        target = (workdir if modality == "RTSTRUCT" else ct_dir) / f"{index:06d}.dcm"
        target.write_bytes(payload)
        if modality == "RTSTRUCT":
            structures.append(target)
    if len(structures) != 1:
        raise InputError(f"the zip holds {len(structures)} RTSTRUCT files; expected exactly one")
    if not any(ct_dir.iterdir()):
        raise InputError("the zip holds no CT slices")
    return ct_dir, structures[0]
