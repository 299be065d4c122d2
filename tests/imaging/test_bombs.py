"""Bounded memory: an image's header is read before its voxels, and a mask must be a label image.

Each bomb is a small file whose header declares a huge volume; it is refused from the header, in
a fresh process whose peak resident memory is measured (the issue's budget: 4 GiB per bomb).
"""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import nibabel
import numpy as np
import pytest
import SimpleITK as sitk

from lungsurv.core.errors import InputError
from lungsurv.imaging.convert import ConvertSettings, load_patient
from lungsurv.imaging.headers import declared_bytes

BUDGET_BYTES = 4 * 2**30
MEASURE = """
import json, resource, sys
from pathlib import Path
from lungsurv.imaging.convert import ConvertSettings, load_patient
row = json.loads(sys.argv[1])
try:
    load_patient(row, ConvertSettings(), Path(sys.argv[2]))
    outcome = "read"
except Exception as error:
    outcome = f"{type(error).__name__}: {error}"
peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"outcome": outcome, "peak_kib": peak_kib}))
"""


def _nifti_bomb(path: Path) -> Path:
    """A .nii.gz of a few kB whose header declares 2048^3 int16 voxels (16 GiB)."""
    image = nibabel.Nifti1Image(np.zeros((4, 4, 4), np.int16), np.eye(4))
    raw = bytearray(image.header.binaryblock)
    raw[40:56] = np.array([3, 2048, 2048, 2048, 1, 1, 1, 1], "<i2").tobytes()
    path.write_bytes(gzip.compress(bytes(raw) + bytes(4) + bytes(2**20)))
    return path


def _nrrd_bomb(path: Path) -> Path:
    header = "NRRD0004\ntype: short\ndimension: 3\nsizes: 2048 2048 2048\nencoding: gzip\n\n"
    path.write_bytes(header.encode() + gzip.compress(bytes(2**20)))
    return path


@pytest.mark.parametrize("make", [_nifti_bomb, _nrrd_bomb], ids=["nifti", "nrrd"])
def test_a_bomb_is_refused_from_its_header_within_the_budget(make, tmp_path: Path) -> None:
    name = "ct.nii.gz" if make is _nifti_bomb else "ct.nrrd"
    bomb = make(tmp_path / name)
    assert bomb.stat().st_size < 64 * 2**10 and declared_bytes(bomb) == 2 * 2048**3
    row = {"patient_id": "P1", "image": str(bomb), "mask": str(bomb)}
    outcome, peak = _in_a_fresh_process(MEASURE, json.dumps(row), str(tmp_path))
    assert "declares 16384 MiB of voxels" in outcome, outcome
    print(f"{make.__name__}: peak RSS {peak / 2**20:.0f} MiB")
    assert peak < BUDGET_BYTES


def _in_a_fresh_process(script: str, *args: str) -> tuple[str, int]:
    """Run a measuring ``script`` in a new interpreter: (its outcome, its peak RSS in bytes)."""
    done = subprocess.run(
        [sys.executable, "-c", script, *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return result["outcome"], result["peak_kib"] * 1024


UNZIP = """
import json, resource, sys
from pathlib import Path
from lungsurv.imaging.dicom_zip import unpack_dicom_zip
try:
    unpack_dicom_zip(Path(sys.argv[1]).read_bytes(), Path(sys.argv[2]))
    outcome = "unpacked"
except Exception as error:
    outcome = f"{type(error).__name__}: {error}"
peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"outcome": outcome, "peak_kib": peak_kib}))
"""


@pytest.mark.slow
def test_a_zip_bomb_is_stopped_at_the_member_limit_within_the_budget(tmp_path: Path) -> None:
    """A zip of about 600 kB whose one member unpacks to 600 MiB (the limit is 512 MiB), at the
    real limits, in a fresh process: refused while streaming, peak RSS measured."""
    import zipfile

    bomb = tmp_path / "bomb.zip"
    with (
        zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as archive,
        archive.open("export/CT/slice.dcm", "w", force_zip64=True) as member,
    ):
        for _ in range(600):
            member.write(bytes(2**20))
    assert bomb.stat().st_size < 2**20
    outcome, peak = _in_a_fresh_process(UNZIP, str(bomb), str(tmp_path / "out"))
    assert "zip member 1 of 1 unpacks to more than 512 MiB" in outcome, outcome
    print(f"zip bomb: peak RSS {peak / 2**20:.0f} MiB")
    assert peak < BUDGET_BYTES


def _pair(tmp_path: Path, mask: np.ndarray, spacing: tuple[float, ...] = (1, 1, 1)) -> dict:
    ct = sitk.GetImageFromArray(np.full(mask.shape, -500, np.int16))
    ct.SetSpacing(spacing)
    label = sitk.GetImageFromArray(mask)
    label.CopyInformation(ct)
    sitk.WriteImage(ct, str(tmp_path / "ct.nrrd"))
    sitk.WriteImage(label, str(tmp_path / "gtv.nrrd"))
    return {
        "patient_id": "P1",
        "image": str(tmp_path / "ct.nrrd"),
        "mask": str(tmp_path / "gtv.nrrd"),
    }


@pytest.mark.parametrize(
    ("mask", "message"),
    [
        (np.arange(4096, dtype=np.int16).reshape(16, 16, 16), "4096 distinct values"),
        (np.full((8, 8, 8), 0.5, np.float32), "fractional values"),
    ],
    ids=["an image as the mask", "a probability map"],
)
def test_a_mask_must_be_a_label_image(tmp_path: Path, mask: np.ndarray, message: str) -> None:
    with pytest.raises(InputError, match=message):
        load_patient(_pair(tmp_path, mask), ConvertSettings(), tmp_path)


def test_a_float_label_image_with_whole_values_is_a_mask(tmp_path: Path) -> None:
    mask = np.zeros((8, 8, 8), np.float32)
    mask[2:5, 2:5, 2:5] = 1.0
    loaded = load_patient(_pair(tmp_path, mask), ConvertSettings(), tmp_path)
    assert int(sitk.GetArrayViewFromImage(loaded.gtv).sum()) == 27


def test_voxel_sizes_that_cannot_be_a_ct_are_refused(tmp_path: Path) -> None:
    row = _pair(tmp_path, np.ones((4, 4, 4), np.uint8))
    nibabel.save(nibabel.Nifti1Image(np.zeros((4, 4, 4), np.int16), np.eye(4)), tmp_path / "a.nii")
    raw = bytearray((tmp_path / "a.nii").read_bytes())
    raw[76:92] = np.array([1.0, 1.0, 1.0, 0.0], "<f4").tobytes()  # pixdim: a slice of 0 mm
    raw[252:256] = np.array([0, 0], "<i2").tobytes()  # no qform/sform: the pixdims are used
    (tmp_path / "flat.nii").write_bytes(bytes(raw))
    with pytest.raises(InputError, match="declares voxel sizes"):
        load_patient(row | {"image": str(tmp_path / "flat.nii")}, ConvertSettings(), tmp_path)
