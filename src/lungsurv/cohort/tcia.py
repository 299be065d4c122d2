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
    report: list[dict[str, str]] = [
        {"patient_id": "", "problem": "unreadable DICOM file", "detail": f"{path}: {message}"}
        for path, message in index.unreadable
    ]
    ct_by_patient: dict[str, dict[str, list[DicomFile]]] = defaultdict(lambda: defaultdict(list))
    rt_by_patient: dict[str, list[DicomFile]] = defaultdict(list)
    for f in index.files:
        if f.modality == "CT":
            ct_by_patient[f.patient_id][f.series_uid].append(f)
        elif f.modality == "RTSTRUCT":
            rt_by_patient[f.patient_id].append(f)

    rows: list[dict[str, object]] = []
    clinical_ids = set(clinical["patient_id"])
    image_ids = set(ct_by_patient) | set(rt_by_patient)
    for pid in sorted(image_ids - clinical_ids):
        report.append({"patient_id": pid, "problem": "images without a clinical row", "detail": ""})
    for pid in sorted(clinical_ids - image_ids):
        report.append({"patient_id": pid, "problem": "clinical row without images", "detail": ""})

    by_id = clinical.set_index("patient_id")
    for pid in sorted(image_ids & clinical_ids):
        series = ct_by_patient.get(pid, {})
        pairs = [
            (rt, uid)
            for rt in rt_by_patient.get(pid, [])
            for uid in rt.referenced_series_uids
            if uid in series
        ]
        if not series:
            report.append({"patient_id": pid, "problem": "no CT series", "detail": ""})
            continue
        if not pairs:
            detail = f"{len(series)} CT series, {len(rt_by_patient.get(pid, []))} RTSTRUCT(s)"
            report.append(
                {
                    "patient_id": pid,
                    "problem": "no RTSTRUCT references a CT series",
                    "detail": detail,
                }
            )
            continue
        if len(pairs) > 1:
            report.append(
                {
                    "patient_id": pid,
                    "problem": "several RTSTRUCT/CT pairs; the first is used",
                    "detail": ", ".join(str(rt.path) for rt, _ in pairs),
                }
            )
        rtstruct, series_uid = pairs[0]
        record = by_id.loc[pid]
        if isinstance(record, pd.DataFrame):
            report.append({"patient_id": pid, "problem": "duplicate clinical rows", "detail": ""})
            continue
        if pd.isna(record["time_days"]) or pd.isna(record["event"]):
            report.append({"patient_id": pid, "problem": "no survival time or event", "detail": ""})
            continue
        folder = _common_folder(series[series_uid])
        row: dict[str, object] = {
            "patient_id": pid,
            "image": str(folder),
            "mask": str(rtstruct.path),
            "roi": roi,
            "time_days": float(record["time_days"]),
            "event": int(record["event"]),
            "center": center,
        }
        others = [
            f
            for uid, files in series.items()
            if uid != series_uid
            for f in files
            if f.path.is_relative_to(folder)
        ]
        # A folder that also holds another series needs the series named in the manifest.
        row["series_uid"] = series_uid if others else None
        for column in ("age", "sex", "histology", "t_stage", "n_stage", "m_stage", "overall_stage"):
            value = record[column]
            row[column] = None if value is None or pd.isna(value) else value
        rows.append(row)
    manifest = pd.DataFrame(rows)
    if len(manifest) and manifest["series_uid"].isna().all():
        manifest = manifest.drop(columns="series_uid")
    return ImportResult(
        manifest=manifest, report=pd.DataFrame(report, columns=list(REPORT_COLUMNS))
    )
