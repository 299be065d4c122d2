"""imaging.dicom_zip: a request's zip is unpacked by index, with its real size counted."""

from __future__ import annotations

import io
import struct
import zipfile
from pathlib import Path

import pytest

from lungsurv.core.errors import InputError
from lungsurv.imaging import dicom_zip
from lungsurv.imaging.dicom_zip import unpack_dicom_zip


def _zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, payload in members.items():
            archive.writestr(name, payload)
    return buffer.getvalue()


def test_a_bomb_member_is_stopped_while_streaming(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dicom_zip, "MAX_MEMBER_BYTES", 2**20)
    bomb = _zip({"slice.dcm": bytes(16 * 2**20)})  # 16 MiB of zeros in about 16 kB
    assert len(bomb) < 64 * 2**10
    with pytest.raises(InputError, match="zip member 1 of 1 unpacks to more than 1 MiB"):
        unpack_dicom_zip(bomb, tmp_path)
    written = sum(p.stat().st_size for p in tmp_path.rglob("*") if p.is_file())
    assert written <= 2**20  # stopped at the cap, not after unpacking everything


def test_the_total_is_counted_not_taken_from_the_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dicom_zip, "MAX_UNZIPPED_BYTES", 3 * 2**20)
    archive = bytearray(_zip({f"{k}.dcm": bytes(2**20 + 1) for k in range(3)}))
    # Lie in the central directory: every member claims 1 byte (a faked zip bomb).
    offset = archive.find(b"PK\x01\x02")
    while offset >= 0:
        archive[offset + 24 : offset + 28] = struct.pack("<I", 1)
        offset = archive.find(b"PK\x01\x02", offset + 4)
    with pytest.raises(InputError, match=r"unpacks to more than|cannot be read"):
        unpack_dicom_zip(bytes(archive), tmp_path)


def test_an_encrypted_member_is_named_by_its_position(tmp_path: Path) -> None:
    archive = bytearray(_zip({"a.dcm": b"x" * 100, "b.dcm": b"y" * 100}))
    info = zipfile.ZipFile(io.BytesIO(bytes(archive))).infolist()[1]
    # Set the "encrypted" flag of the second member, locally and in the central directory.
    local = info.header_offset + 6
    archive[local : local + 2] = struct.pack("<H", info.flag_bits | 0x1)
    central = archive.find(b"PK\x01\x02", archive.find(b"PK\x01\x02") + 4) + 8
    archive[central : central + 2] = struct.pack("<H", info.flag_bits | 0x1)
    with pytest.raises(InputError, match="zip member 2 of 2 cannot be read"):
        unpack_dicom_zip(bytes(archive), tmp_path)


def test_too_many_members_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dicom_zip, "MAX_MEMBERS", 3)
    with pytest.raises(InputError, match="holds 4 files; at most 3"):
        unpack_dicom_zip(_zip({f"{k}.dcm": b"" for k in range(4)}), tmp_path)
