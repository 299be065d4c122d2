"""Importer for TCIA's NSCLC-Radiomics ("Lung1") layout: DICOM folders and a clinical CSV.

Each patient's CT series and RTSTRUCT are found by their headers, not by folder names: the CT
series by Modality and SeriesInstanceUID, the structure set by the series its contours reference.
The clinical table (``PatientID, age, clinical.T.Stage, Clinical.N.Stage, Clinical.M.Stage,
Overall.Stage, Histology, gender, Survival.time, deadstatus.event``, ``NA`` for missing) is joined
on PatientID. Every patient that cannot go into the manifest is listed with the reason: clinical
rows without images, images without a clinical row, a CT without a structure set, missing
survival.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from lungsurv.cohort.manifest import read_table
from lungsurv.cohort.split import DEFAULT_TRAIN_CENTERS
from lungsurv.core.errors import InputError
from lungsurv.core.layout import DEFAULT_ROI
from lungsurv.imaging.dicom import DicomFile, index_folder

CLINICAL_COLUMNS = {
    "PatientID": "patient_id",
    "age": "age",
    "clinical.T.Stage": "t_stage",
    "Clinical.N.Stage": "n_stage",
    "Clinical.M.Stage": "m_stage",
    "Overall.Stage": "overall_stage",
    "Histology": "histology",
    "gender": "sex",
    "Survival.time": "time_days",
    "deadstatus.event": "event",
}


REPORT_COLUMNS = ("patient_id", "problem", "detail")


@dataclass
class ImportResult:
    """The manifest of importable patients and the list of those left out, with reasons."""

    manifest: pd.DataFrame
    report: pd.DataFrame


def _common_folder(files: list[DicomFile]) -> Path:
    parents = {f.path.parent for f in files}
    if len(parents) == 1:
        return parents.pop()
    parts = [p.parts for p in parents]
    common = []
    for level in zip(*parts, strict=False):
        if len(set(level)) != 1:
            break
        common.append(level[0])
    return Path(*common)


def _stage(prefix: str, value: object) -> str | None:
    if value is None or pd.isna(value) or str(value).strip() == "":
        return None
    text = str(value).strip()
    return text if text.upper().startswith(prefix) else f"{prefix}{text}"


def read_clinical(path: str | Path) -> pd.DataFrame:
    """The NSCLC-Radiomics clinical table with the manifest's column names."""
    table = read_table(path)
    missing = [c for c in CLINICAL_COLUMNS if c not in table.columns]
    if missing:
        raise ValueError(f"clinical table {path} lacks the columns {missing}")
    frame = table[list(CLINICAL_COLUMNS)].rename(columns=CLINICAL_COLUMNS)
    frame["patient_id"] = frame["patient_id"].astype(str).str.strip()
    frame["age"] = pd.to_numeric(frame["age"], errors="coerce")
    for column, prefix in (("t_stage", "T"), ("n_stage", "N"), ("m_stage", "M")):
        frame[column] = frame[column].map(lambda v, p=prefix: _stage(p, v))
    frame["time_days"] = pd.to_numeric(frame["time_days"], errors="coerce")
    frame["event"] = pd.to_numeric(frame["event"], errors="coerce")
    return frame


def import_nsclc_radiomics(
    images_root: Path,
    clinical_csv: str | Path,
    *,
    center: str = DEFAULT_TRAIN_CENTERS[0],  # NSCLC-Radiomics: MAASTRO, the paper's training set
    roi: str = DEFAULT_ROI,
) -> ImportResult:
    """Build a manifest from TCIA NSCLC-Radiomics folders and its clinical CSV."""
    clinical = read_clinical(clinical_csv)
    index = index_folder(images_root)
    if not index.files and not index.unreadable:
        raise InputError(f"no DICOM file found below {images_root} (links to folders are followed)")
    report: list[dict[str, str]] = [
        {"patient_id": "", "problem": "unreadable DICOM file", "detail": f"{path}: {message}"}
        for path, message in index.unreadable
    ]
    ct_by_patient, rt_by_patient = _by_patient(index.files)
    clinical_ids = set(clinical["patient_id"])
    image_ids = set(ct_by_patient) | set(rt_by_patient)
    report += [
        _problem(p, "images without a clinical row") for p in sorted(image_ids - clinical_ids)
    ]
    report += [_problem(p, "clinical row without images") for p in sorted(clinical_ids - image_ids)]
    by_id = clinical.set_index("patient_id")
    rows: list[dict[str, object]] = []
    for pid in sorted(image_ids & clinical_ids):
        row, problems = _manifest_row(
            pid, ct_by_patient.get(pid, {}), rt_by_patient.get(pid, []), by_id.loc[pid]
        )
        report += problems
        if row is not None:
            rows.append(row | {"roi": roi, "center": center})
    manifest = pd.DataFrame(rows)
    if len(manifest):
        manifest = manifest[[*MANIFEST_ORDER, *(c for c in manifest if c not in MANIFEST_ORDER)]]
        if manifest["series_uid"].isna().all():
            manifest = manifest.drop(columns="series_uid")
    return ImportResult(
        manifest=manifest, report=pd.DataFrame(report, columns=list(REPORT_COLUMNS))
    )


#: The manifest's first columns, in the order the importer writes them.
MANIFEST_ORDER = ("patient_id", "image", "mask", "roi", "time_days", "event", "center")


def _problem(patient_id: str, problem: str, detail: str = "") -> dict[str, str]:
    return {"patient_id": patient_id, "problem": problem, "detail": detail}


def _by_patient(
    files: list[DicomFile],
) -> tuple[dict[str, dict[str, list[DicomFile]]], dict[str, list[DicomFile]]]:
    """CT files by patient and series, and RTSTRUCT files by patient."""
    ct: dict[str, dict[str, list[DicomFile]]] = defaultdict(lambda: defaultdict(list))
    rt: dict[str, list[DicomFile]] = defaultdict(list)
    for f in files:
        if f.modality == "CT":
            ct[f.patient_id][f.series_uid].append(f)
        elif f.modality == "RTSTRUCT":
            rt[f.patient_id].append(f)
    return ct, rt


def _manifest_row(
    pid: str,
    series: dict[str, list[DicomFile]],
    structures: list[DicomFile],
    record: pd.Series | pd.DataFrame,
) -> tuple[dict[str, object] | None, list[dict[str, str]]]:
    """One patient's manifest row (None when it cannot have one) and the problems found."""
    pairs = [(rt, uid) for rt in structures for uid in rt.referenced_series_uids if uid in series]
    if not series:
        return None, [_problem(pid, "no CT series")]
    if not pairs:
        detail = f"{len(series)} CT series, {len(structures)} RTSTRUCT(s)"
        return None, [_problem(pid, "no RTSTRUCT references a CT series", detail)]
    problems = []
    if len(pairs) > 1:
        detail = ", ".join(str(rt.path) for rt, _ in pairs)
        problems.append(_problem(pid, "several RTSTRUCT/CT pairs; the first is used", detail))
    if isinstance(record, pd.DataFrame):
        return None, [*problems, _problem(pid, "duplicate clinical rows")]
    if pd.isna(record["time_days"]) or pd.isna(record["event"]):
        return None, [*problems, _problem(pid, "no survival time or event")]
    rtstruct, series_uid = pairs[0]
    folder = _common_folder(series[series_uid])
    others = [
        f
        for uid, files in series.items()
        if uid != series_uid
        for f in files
        if f.path.is_relative_to(folder)
    ]
    row: dict[str, object] = {
        "patient_id": pid,
        "image": str(folder),
        "mask": str(rtstruct.path),
        "time_days": float(record["time_days"]),
        "event": int(record["event"]),
        # A folder that also holds another series needs the series named in the manifest.
        "series_uid": series_uid if others else None,
    }
    for column in ("age", "sex", "histology", "t_stage", "n_stage", "m_stage", "overall_stage"):
        value = record[column]
        row[column] = None if value is None or pd.isna(value) else value
    return row, problems
