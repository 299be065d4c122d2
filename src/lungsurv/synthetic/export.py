"""Writing a synthetic cohort as a hospital exports it: DICOM CT + RTSTRUCT, manifest, clinical
table, the ground truth, and the oracle C-index that the truth's log-hazard reaches.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pydicom
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.tag import Tag
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, RTStructureSetStorage

from lungsurv.core.layout import DEFAULT_ROI, SPLIT_COLUMN
from lungsurv.core.logs import PatientProgress
from lungsurv.core.parallel import map_patients
from lungsurv.core.storage import is_s3_uri
from lungsurv.survival.metrics import c_index
from lungsurv.synthetic.phantom import GeneratorConfig, Patient, _lungs, draw_cohort
from lungsurv.synthetic.rendering import Geometry, ellipse_contour, render_ct, tumour_contours

logger = logging.getLogger(__name__)


def oracle_c_index_for(cohort_uri: str, scores: pd.DataFrame, split: str = "test") -> float | None:
    """For a synthetic cohort (``truth.parquet`` beside its manifest): the C-index of the true
    log-hazard on the ``split`` patients, the best any model could reach there."""
    from pathlib import Path

    if not cohort_uri or is_s3_uri(cohort_uri):
        return None
    truth_path = Path(cohort_uri).parent / TRUTH_FILE
    if not truth_path.exists():
        return None
    truth = pd.read_parquet(truth_path).set_index("patient_id")["log_hazard"]
    part = scores[(scores[SPLIT_COLUMN] == split) & scores["patient_id"].isin(truth.index)]
    if part.empty:
        return None
    return c_index(
        time=part["time_days"],
        event=part["event"],
        risk=truth.loc[part["patient_id"]].to_numpy(),
    )


MANIFEST_FILE = "manifest.csv"
CLINICAL_FILE = "clinical.csv"
TRUTH_FILE = "truth.parquet"
SUMMARY_FILE = "cohort.json"
UID_ROOT = "1.2.826.0.1.3680043.10.1432."


# ---------------------------------------------------------------------------------------------
# Rendering and DICOM


def _uid(*parts: object) -> str:
    digest = hashlib.sha256("/".join(str(p) for p in parts).encode()).hexdigest()
    return UID_ROOT + str(int(digest[:30], 16))[:30]


def _identity(patient: Patient) -> dict[str, str]:
    """Identifying header values a hospital export carries (and outputs must never show)."""
    rng = np.random.default_rng(patient.seed + 7)
    first = ["Jan", "Piet", "Marie", "Anna", "Wei", "Li", "Karin", "Joost"]
    last = ["Jansen", "deVries", "Bakker", "Zhang", "Wang", "Visser", "Smit", "Meijer"]
    month, day = int(rng.integers(1, 13)), int(rng.integers(1, 28))
    return {
        "PatientName": f"{rng.choice(last)}^{rng.choice(first)}^Synthetic{patient.index:04d}",
        "PatientBirthDate": f"{int(2008 - patient.age)}{month:02d}{day:02d}",
        "AccessionNumber": str(int(rng.integers(10**11, 10**12))),
        "InstitutionName": f"{patient.center.name} Radiotherapy Department",
        "ReferringPhysicianName": "Doctor^Referring",
    }


def _base_dataset(patient: Patient, sop_class: str, sop_uid: str, modality: str) -> Dataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_uid
    ds.Modality = modality
    ds.StudyDate = "20150312"
    ds.StudyTime = "101500"
    ds.Manufacturer = patient.center.manufacturer
    for key, value in _identity(patient).items():
        setattr(ds, key, value)
    ds.PatientID = patient.patient_id
    ds.PatientSex = "M" if patient.sex == "male" else "F"
    ds.StudyInstanceUID = _uid(patient.patient_id, "study")
    ds.FrameOfReferenceUID = _uid(patient.patient_id, "frame")
    ds.StudyID = "1"
    return ds


def write_ct_series(
    volume: np.ndarray, geometry: Geometry, patient: Patient, folder: Path
) -> list[str]:
    """Write the CT slices; return their SOPInstanceUIDs (by slice index)."""
    folder.mkdir(parents=True, exist_ok=True)
    intercept = patient.center.rescale_intercept
    stored = np.clip(np.round(volume - intercept), -32768, 32767).astype(np.int16)
    series_uid = _uid(patient.patient_id, "ct-series")
    uids = []
    for k in range(geometry.shape[0]):
        sop_uid = _uid(patient.patient_id, "ct", k)
        ds = _base_dataset(patient, CTImageStorage, sop_uid, "CT")
        ds.SeriesInstanceUID = series_uid
        ds.SeriesNumber = 2
        ds.InstanceNumber = k + 1
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        z = geometry.origin[2] + geometry.thickness * k
        ds.ImagePositionPatient = [
            f"{geometry.origin[0]:.6f}",
            f"{geometry.origin[1]:.6f}",
            f"{z:.4f}",
        ]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.SliceLocation = f"{z:.4f}"
        ds.SliceThickness = geometry.thickness
        ds.PixelSpacing = [f"{geometry.spacing_xy:.6f}", f"{geometry.spacing_xy:.6f}"]
        ds.Rows, ds.Columns = geometry.shape[1], geometry.shape[2]
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated = 16
        ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = 1
        ds.RescaleIntercept = intercept
        ds.RescaleSlope = 1
        ds.RescaleType = "HU"
        ds.KVP = 120
        ds.GantryDetectorTilt = 0
        ds.PatientPosition = "HFS"
        ds.PixelData = stored[k].tobytes()
        ds.save_as(folder / f"1-{k + 1:03d}.dcm", enforce_file_format=True)
        uids.append(sop_uid)
    return uids


CONTOUR_DATA = Tag(0x3006, 0x0050)


def _contour_item(points_xy: np.ndarray, z: float, sop_uid: str) -> Dataset:
    item = Dataset()
    image = Dataset()
    image.ReferencedSOPClassUID = CTImageStorage
    image.ReferencedSOPInstanceUID = sop_uid
    item.ContourImageSequence = DicomSequence([image])
    item.ContourGeometricType = "CLOSED_PLANAR"
    item.NumberOfContourPoints = len(points_xy)
    xyz = np.column_stack([points_xy, np.full(len(points_xy), z)])
    # Written as the encoded text: pydicom would otherwise validate every number as a DS object
    # (a third of the cohort's generation time); reading it back parses the same values.
    text = "\\".join(f"{v:.3f}" for v in xyz.ravel())
    encoded = (text + " " * (len(text) % 2)).encode("ascii")
    item[CONTOUR_DATA] = RawDataElement(CONTOUR_DATA, "DS", len(encoded), encoded, 0, False, True)
    return item


def write_rtstruct(
    patient: Patient, geometry: Geometry, ct_uids: list[str], config: GeneratorConfig, path: Path
) -> None:
    """Write the RTSTRUCT with GTV-1 and both lungs, contoured on every CT slice they cross."""
    sop_uid = _uid(patient.patient_id, "rtstruct")
    ds = _base_dataset(patient, RTStructureSetStorage, sop_uid, "RTSTRUCT")
    ds.SeriesInstanceUID = _uid(patient.patient_id, "rt-series")
    ds.SeriesNumber = 3
    ds.InstanceNumber = 1
    ds.StructureSetLabel = "RTPLAN"
    ds.StructureSetDate = "20150312"
    ds.StructureSetTime = "120000"
    ds.ReferencedFrameOfReferenceSequence = _referenced_frame(ds, patient, ct_uids)
    ds.StructureSetROISequence = DicomSequence()
    ds.ROIContourSequence = DicomSequence()
    ds.RTROIObservationsSequence = DicomSequence()
    outlines = _roi_outlines(patient, geometry, config)
    for number, (name, contours) in enumerate(outlines.items(), start=1):
        _add_roi(ds, number, name, contours, geometry, ct_uids)
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)


def _referenced_frame(ds: Dataset, patient: Patient, ct_uids: list[str]) -> DicomSequence:
    """The frame of reference -> study -> CT series -> every CT slice the contours lie on."""
    series = Dataset()
    series.SeriesInstanceUID = _uid(patient.patient_id, "ct-series")
    series.ContourImageSequence = DicomSequence()
    for uid in ct_uids:
        ref = Dataset()
        ref.ReferencedSOPClassUID = CTImageStorage
        ref.ReferencedSOPInstanceUID = uid
        series.ContourImageSequence.append(ref)
    study = Dataset()
    study.ReferencedSOPClassUID = "1.2.840.10008.3.1.2.3.1"
    study.ReferencedSOPInstanceUID = ds.StudyInstanceUID
    study.RTReferencedSeriesSequence = DicomSequence([series])
    frame = Dataset()
    frame.FrameOfReferenceUID = ds.FrameOfReferenceUID
    frame.RTReferencedStudySequence = DicomSequence([study])
    return DicomSequence([frame])


def _roi_outlines(
    patient: Patient, geometry: Geometry, config: GeneratorConfig
) -> dict[str, list[tuple[np.ndarray, int]]]:
    """Each ROI's outlines (points, slice index): the tumour and both lungs on every slice."""
    rois: dict[str, list[tuple[np.ndarray, int]]] = {DEFAULT_ROI: []}
    lungs = _lungs(config.anatomy_scale)
    for name in lungs:
        rois[name] = []
    for k in range(geometry.shape[0]):
        z = geometry.origin[2] + geometry.thickness * k
        for outline in tumour_contours(patient.tumour, z):
            rois[DEFAULT_ROI].append((outline, k))
        for name, (centre, semi) in lungs.items():
            outline = ellipse_contour(centre, semi, z)
            if outline is not None:
                rois[name].append((outline, k))
    return rois


ROI_COLOURS = {DEFAULT_ROI: [255, 0, 0], "Lung-Left": [0, 128, 255], "Lung-Right": [0, 200, 120]}


def _add_roi(
    ds: Dataset,
    number: int,
    name: str,
    outlines: list[tuple[np.ndarray, int]],
    geometry: Geometry,
    ct_uids: list[str],
) -> None:
    """One ROI's three entries: its definition, its contours, its observation."""
    roi = Dataset()
    roi.ROINumber = number
    roi.ReferencedFrameOfReferenceUID = ds.FrameOfReferenceUID
    roi.ROIName = name
    roi.ROIGenerationAlgorithm = "MANUAL"
    ds.StructureSetROISequence.append(roi)
    contour = Dataset()
    contour.ReferencedROINumber = number
    contour.ROIDisplayColor = ROI_COLOURS[name]
    contour.ContourSequence = DicomSequence(
        [
            _contour_item(o, geometry.origin[2] + geometry.thickness * k, ct_uids[k])
            for o, k in outlines
        ]
    )
    ds.ROIContourSequence.append(contour)
    observation = Dataset()
    observation.ObservationNumber = number
    observation.ReferencedROINumber = number
    observation.RTROIInterpretedType = "GTV" if name.startswith("GTV") else "ORGAN"
    observation.ROIInterpreter = ""
    ds.RTROIObservationsSequence.append(observation)


def _series_folder(patient: Patient, number: int, kind: str) -> str:
    """A TCIA-style folder name that says nothing reliable (the importer reads headers)."""
    tag = _uid(patient.patient_id, kind)[-5:]
    return f"{number:.6f}-NA-{tag}"


def write_patient(patient: Patient, config: GeneratorConfig, root: Path) -> dict[str, Any]:
    """Render and write one patient's DICOM; return its manifest row."""
    volume, geometry = render_ct(patient, config)
    study = root / "images" / patient.patient_id / f"03-12-2015-NA-{patient.index:05d}"
    ct_folder = study / _series_folder(patient, 2, "ct-series")
    ct_uids = write_ct_series(volume, geometry, patient, ct_folder)
    rtstruct = study / _series_folder(patient, 3, "rt-series") / "1-1.dcm"
    write_rtstruct(patient, geometry, ct_uids, config, rtstruct)
    return {
        "patient_id": patient.patient_id,
        "image": str(ct_folder.relative_to(root)),
        "mask": str(rtstruct.relative_to(root)),
        "roi": DEFAULT_ROI,
        "time_days": patient.time_days,
        "event": patient.event,
        "center": patient.center.name,
        "age": round(patient.age, 1),
        "sex": patient.sex,
        "histology": patient.histology,
        "t_stage": f"T{patient.t_stage}",
        "n_stage": f"N{patient.n_stage}",
        "m_stage": f"M{patient.m_stage}",
        "overall_stage": patient.overall_stage,
    }


def _write_one(args: tuple[Patient, GeneratorConfig, Path]) -> dict[str, Any]:
    return write_patient(*args)


def truth_frame(patients: list[Patient]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "patient_id": [p.patient_id for p in patients],
            "log_hazard": [p.log_hazard for p in patients],
            "texture_hu": [p.tumour.texture_hu for p in patients],
            "halo_hu": [p.tumour.halo_hu for p in patients],
            "volume_ml": [p.volume_ml for p in patients],
            "overall_stage": [p.overall_stage for p in patients],
            "lung_side": [p.lung_side for p in patients],
            "event_time_days": [p.event_time_days for p in patients],
            "censor_time_days": [p.censor_time_days for p in patients],
        }
    )


def clinical_frame(manifest: pd.DataFrame) -> pd.DataFrame:
    """The manifest's clinical columns in TCIA NSCLC-Radiomics' clinical CSV layout."""
    return pd.DataFrame(
        {
            "PatientID": manifest["patient_id"],
            "age": manifest["age"],
            "clinical.T.Stage": manifest["t_stage"].str[1:],
            "Clinical.N.Stage": manifest["n_stage"].str[1:],
            "Clinical.M.Stage": manifest["m_stage"].str[1:],
            "Overall.Stage": manifest["overall_stage"],
            "Histology": manifest["histology"],
            "gender": manifest["sex"],
            "Survival.time": manifest["time_days"].astype(int),
            "deadstatus.event": manifest["event"],
        }
    )


def oracle_c_index(time: np.ndarray, event: np.ndarray, log_hazard: np.ndarray) -> float:
    """Harrell's C-index of the true log-hazard: the best a model can do on this cohort.

    NaN when it is undefined: fewer than two patients, no event, or no comparable pair (every
    event after every other patient's time, as a small cohort can draw).
    """
    from sksurv.exceptions import NoComparablePairException
    from sksurv.metrics import concordance_index_censored

    if len(time) < 2 or not np.any(event):
        return float("nan")
    try:
        return float(concordance_index_censored(event.astype(bool), time, log_hazard)[0])
    except NoComparablePairException:
        return float("nan")


def generate_cohort(
    root: Path, config: GeneratorConfig | None = None, *, n_jobs: int = 1
) -> dict[str, Any]:
    """Generate a cohort below ``root``; return its summary (also written to cohort.json)."""
    config = config or GeneratorConfig()
    root.mkdir(parents=True, exist_ok=True)
    patients = draw_cohort(config)
    jobs = [(p, config, root) for p in patients]
    progress = PatientProgress("synth", len(jobs), logger)
    rows = map_patients(
        _write_one,
        jobs,
        workers=n_jobs,
        on_result=lambda index, row, seconds: progress(patients[index].patient_id, seconds),
    )
    manifest = pd.DataFrame(rows)
    manifest.to_csv(root / MANIFEST_FILE, index=False)
    clinical_frame(manifest).to_csv(root / CLINICAL_FILE, index=False, na_rep="NA")
    truth = truth_frame(patients)
    truth.to_parquet(root / TRUTH_FILE, index=False)
    summary = {
        "n_patients": len(patients),
        "seed": config.seed,
        "events": int(manifest["event"].sum()),
        "centers": manifest["center"].value_counts().sort_index().to_dict(),
        "median_time_days": float(manifest["time_days"].median()),
        "oracle_c_index": oracle_c_index(
            manifest["time_days"].to_numpy(float),
            manifest["event"].to_numpy(int),
            truth["log_hazard"].to_numpy(float),
        ),
        "config": json.loads(json.dumps(asdict(config), default=str)),
    }
    if not np.isfinite(summary["oracle_c_index"]):
        summary["oracle_c_index"] = None  # JSON has no NaN
    (root / SUMMARY_FILE).write_text(json.dumps(summary, indent=2))
    return summary


def read_dicom_identity(path: Path) -> dict[str, str]:
    """The identifying header values of one written DICOM file (for checks that they leak not)."""
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    keys = [
        "PatientName",
        "PatientBirthDate",
        "AccessionNumber",
        "StudyInstanceUID",
        "SeriesInstanceUID",
        "SOPInstanceUID",
        "FrameOfReferenceUID",
        "InstitutionName",
    ]
    return {k: str(ds.get(k, "")) for k in keys if ds.get(k)}
