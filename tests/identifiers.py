"""The DICOM identifiers no output may show, and a scan of outputs for them."""

from __future__ import annotations

import gzip
from collections.abc import Iterable
from pathlib import Path

import pandas as pd
import pydicom

#: Header values that identify a patient, a study or an object (UIDs, names, numbers).
IDENTIFYING_KEYWORDS = (
    "SOPInstanceUID",
    "SeriesInstanceUID",
    "StudyInstanceUID",
    "FrameOfReferenceUID",
    "PatientName",
    "AccessionNumber",
)


def dicom_identifiers(root: Path, *, file_names: bool = True) -> set[str]:
    """Every identifying value (six characters or more) of the DICOM files below ``root``, and
    their file names (``file_names``); files a test broke on purpose are skipped."""
    found: set[str] = set()
    for path in root.rglob("*"):
        if not path.is_file() or path.suffix.lower() not in ("", ".dcm"):
            continue
        if file_names and path.suffix.lower() == ".dcm":
            found.add(path.name)
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
        except Exception:  # not DICOM, or broken by the test
            continue
        if file_names:
            found.add(path.name)
        for keyword in IDENTIFYING_KEYWORDS:
            value = str(ds.get(keyword, "") or "")
            if len(value) >= 6:
                found.add(value)
    return found


def readable_text(path: Path) -> str:
    """What a person or a program reads in an output file: a Parquet table as CSV, a gzip file
    unpacked, anything else as its bytes."""
    if path.suffix == ".parquet":
        return pd.read_parquet(path).to_csv()
    data = path.read_bytes()
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    return data.decode("latin-1")


def leaks(texts: Iterable[tuple[str, str]], identifiers: set[str]) -> list[tuple[str, str]]:
    """(where, identifier) for every identifier found in a (where, text) pair."""
    return [(where, i) for where, text in texts for i in sorted(identifiers) if i in text]
