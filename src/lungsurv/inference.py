"""Scoring one patient with a fitted model bundle: the pipeline's own code, end to end.

:func:`load_serving_model` reads a bundle written by PCA-fuse (``model.json`` and
``radiomics_params.yaml``); :func:`predict_patient` takes one patient's CT and GTV mask (files,
as the pipeline reads them), converts them to 1 mm (:mod:`lungsurv.convert`), makes the one ring
the combined model uses (:mod:`lungsurv.rings`), extracts **only the radiomics features the
bundle uses** (:mod:`lungsurv.radiomics` with a parameter set restricted to their image types and
feature classes), computes the deep features with the bundled 3D SE-ResNet when the model
fuses them, and scores them (:func:`lungsurv.fusion.score`). The KServe predictor in
``serving/`` is a thin shell over this module.

The result per patient: the risk, the risk group at the training cutoff, predicted survival at 1,
2 and 3 years, each block's additive contribution to the risk (the combined model is linear in
the standardised features: PCA then Cox, so the risk splits exactly into per-feature terms), and
input QA (original spacing, GTV volume, the converter's warnings, and a warning when the GTV
volume or the slice thickness lies outside the training patients' range, stored in the bundle).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import SimpleITK as sitk
import yaml

from lungsurv.errors import InputError
from lungsurv.fusion import (
    BUNDLE_FILE,
    NETWORK_DIR,
    RADIOMICS_PARAMS_FILE,
    ModelParameters,
    load_bundle,
    score,
    survival_at,
)
from lungsurv.reporting import HORIZONS_DAYS

_LOG_TYPE = re.compile(r"log-sigma-(\d+)-(\d+)-mm-3D")


@dataclass
class ServingModel:
    """A loaded bundle and what scoring a new patient needs from it."""

    params: ModelParameters
    radiomics_params: dict[str, Any] | None
    ring_distance_mm: float | None
    #: The 3D SE-ResNet and its training config, when the model fuses deep features.
    network: tuple[Any, Any] | None = None
    name: str = "lungsurv"
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def radiomics_blocks(self) -> list[str]:
        return [b.name for b in self.params.blocks if b.name == "gtv" or b.name.startswith("ring_")]


def used_radiomics_params(
    params: Mapping[str, Any], feature_names: Sequence[str]
) -> dict[str, Any] | None:
    """``params`` restricted to the image types, LoG sigmas and feature classes and names that
    ``feature_names`` (PyRadiomics names, e.g. ``wavelet-LLH_glcm_Contrast``) need; None when
    no radiomics feature is used. Settings are kept as they are, so values are unchanged."""
    if not feature_names:
        return None
    image_types: dict[str, dict[str, Any]] = {}
    classes: dict[str, set[str]] = {}
    for name in feature_names:
        image_type, feature_class, feature = name.split("_", 2)
        classes.setdefault(feature_class, set()).add(feature)
        if image_type == "original":
            image_types["Original"] = {}
        elif image_type.startswith("wavelet"):
            image_types["Wavelet"] = {}
        elif match := _LOG_TYPE.fullmatch(image_type):
            sigma = float(f"{match.group(1)}.{match.group(2)}")
            sigmas = image_types.setdefault("LoG", {"sigma": []})["sigma"]
            if sigma not in sigmas:
                sigmas.append(sigma)
        else:
            raise InputError(f"the bundle names an unknown radiomics image type in {name!r}")
    if "LoG" in image_types:
        image_types["LoG"]["sigma"].sort()
    restricted = {k: v for k, v in params.items() if k not in ("imageType", "featureClass")}
    restricted["imageType"] = image_types
    restricted["featureClass"] = {k: sorted(v) for k, v in classes.items()}
    return restricted


def load_serving_model(folder: Path, *, name: str = "lungsurv") -> ServingModel:
    """Read a bundle folder (``model.json`` + ``radiomics_params.yaml``)."""
    if not (folder / BUNDLE_FILE).exists():
        raise InputError(f"no model bundle in {folder} (expected {BUNDLE_FILE})")
    params = load_bundle(folder)
    radiomics_path = folder / RADIOMICS_PARAMS_FILE
    names = [f for b in params.blocks if b.name != "dl" for f in b.features]
    network = None
    if any(b.name == "dl" and b.features for b in params.blocks):
        if not (folder / NETWORK_DIR / "model.pt").exists():
            raise InputError(
                f"the bundle uses deep features but holds no network ({NETWORK_DIR}/model.pt)"
            )
        from lungsurv.training import load_model

        network = load_model(folder / NETWORK_DIR)
    radiomics = None
    if names:
        if not radiomics_path.exists():
            raise InputError(
                f"the bundle uses radiomics features but has no {RADIOMICS_PARAMS_FILE}"
            )
        radiomics = used_radiomics_params(yaml.safe_load(radiomics_path.read_text()), names)
    ring = str(params.metadata.get("ring", ""))
    distance = float(ring.removeprefix("ring_").removesuffix("mm")) if ring else None
    return ServingModel(
        params=params,
        radiomics_params=radiomics,
        ring_distance_mm=distance,
        network=network,
        name=name,
        metadata=dict(params.metadata),
    )


#: Geometry columns whose training range the bundle records, with their units.
RANGE_COLUMNS: dict[str, str] = {"gtv_volume_ml_resampled": "ml", "slice_thickness_mm": "mm"}


def training_ranges(geometry: pd.DataFrame, patients: Sequence[str]) -> dict[str, list[float]]:
    """The [min, max] of the training patients' GTV volume and slice thickness (convert's
    geometry table), stored in the bundle so serving can flag an input outside them."""
    rows = geometry[geometry["patient_id"].astype(str).isin(set(map(str, patients)))]
    return {
        column: [float(rows[column].min()), float(rows[column].max())]
        for column in RANGE_COLUMNS
        if column in rows.columns and len(rows)
    }


def range_warnings(geometry: Mapping[str, Any], ranges: Mapping[str, Sequence[float]]) -> list[str]:
    """A warning per value outside its training range (the model extrapolates there)."""
    warnings = []
    for column, (low, high) in ranges.items():
        value = float(geometry[column])
        if not low <= value <= high:
            what = column.removesuffix("_resampled").removesuffix("_ml").removesuffix("_mm")
            unit = RANGE_COLUMNS[column]
            warnings.append(
                f"{what.replace('_', ' ')} {value:.3g} {unit} is outside the training range "
                f"{low:.3g}-{high:.3g} {unit}"
            )
    return warnings


def contributions(
    blocks: Mapping[str, pd.DataFrame], params: ModelParameters
) -> dict[str, np.ndarray]:
    """Each block's additive share of the risk: the risk is ``(z - pca_mean) @ V.T @ beta``, a
    sum over standardised features; the shares of all blocks add up to the risk."""
    from lungsurv.fusion import standardised_block

    if np.asarray(params.cox_coef).size == 0:
        return {b.name: np.zeros(len(next(iter(blocks.values())))) for b in params.blocks}
    weights = np.asarray(params.pca_components, float).T @ np.asarray(params.cox_coef, float)
    shares: dict[str, np.ndarray] = {}
    start = 0
    for block in params.blocks:
        stop = start + len(block.features)
        z = standardised_block(blocks[block.name], block) - params.pca_mean[start:stop]
        shares[block.name] = z @ weights[start:stop]
        start = stop
    return shares


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


def predict_patient(
    image_path: str | Path,
    mask_path: str | Path,
    model: ServingModel,
    *,
    roi: str | None = None,
    patient_id: str = "patient",
    only_used_features: bool = True,
) -> dict[str, Any]:
    """Risk, risk group, survival at 1/2/3 years, block contributions and QA for one patient
    (a CT and a GTV as NIfTI/NRRD files, or a DICOM folder and an RTSTRUCT with ``roi``; either
    may be an ``s3://`` URI, read with the pipeline's storage layer).
    ``only_used_features=False`` computes every feature of the parameter set, as the pipeline
    does (``bench/serving.py`` measures what restricting saves)."""
    from lungsurv.convert import convert_patient
    from lungsurv.errors import PatientError
    from lungsurv.radiomics import GTV_ROI, extract_patient
    from lungsurv.rings import make_rings, ring_name

    row = {"patient_id": patient_id, "image": str(image_path), "mask": str(mask_path)}
    if roi:
        row["roi"] = roi
    try:
        converted = convert_patient(row)
    except PatientError as error:
        raise InputError(str(error)) from error
    # The pipeline hands these over as NIfTI files; the values round-trip exactly (float32 CT,
    # uint8 mask) and only the geometry's float32 storage differs, which no feature uses.
    image, gtv = converted.image, converted.gtv
    rois: dict[str, sitk.Image] = {GTV_ROI: gtv}
    if model.ring_distance_mm is not None:
        (ring,) = make_rings(gtv, [model.ring_distance_mm])
        rois[ring_name(ring.distance_mm)] = ring.mask
    blocks: dict[str, pd.DataFrame] = {}
    if model.radiomics_params is not None:
        # Each ROI computes only its own block's features, on the image types they come from.
        features = {b.name: set(b.features) for b in model.params.blocks}
        values, failures = extract_patient(
            image,
            {b: rois[b] for b in model.radiomics_blocks},
            model.radiomics_params,
            wanted={b: features[b] for b in model.radiomics_blocks} if only_used_features else None,
        )
        if failures:
            raise InputError("; ".join(failures.values()))
        for block, features in values.items():
            blocks[block] = pd.DataFrame([features], index=[patient_id])
    if model.network is not None:
        from lungsurv.training import deep_feature_frame, deep_features
        from lungsurv.transforms import gtv_input

        network, config = model.network
        volume = gtv_input(image, gtv, size=config.input_size)[None]
        frame = deep_feature_frame([patient_id], deep_features(network, volume), [0])
        blocks["dl"] = frame.set_index("patient_id").drop(columns=["roi", "n_voxels"])
    for block in model.params.blocks:
        blocks.setdefault(block.name, pd.DataFrame(index=[patient_id]))
    scored = score(blocks, model.params)
    risk = float(scored["risk"][0])
    survival = survival_at(np.array([risk]), HORIZONS_DAYS, model.params)[0]
    shares = contributions(blocks, model.params)
    geometry = converted.geometry
    return {
        "patient_id": patient_id,
        "risk": risk,
        "risk_group": "high" if risk > model.params.cutoff else "low",
        "cutoff": float(model.params.cutoff),
        "survival": {
            f"{h // 365}y": float(s) for h, s in zip(HORIZONS_DAYS, survival, strict=True)
        },
        "contributions": {name: float(v[0]) for name, v in shares.items()},
        "qa": {
            "source": geometry["source"],
            "original_spacing_mm": [
                float(geometry["orig_spacing_x"]),
                float(geometry["orig_spacing_y"]),
                float(geometry["orig_spacing_z"]),
            ],
            "gtv_volume_ml": float(geometry["gtv_volume_ml_resampled"]),
            "warnings": [w for w in str(geometry["warnings"]).split("; ") if w]
            + range_warnings(geometry, model.metadata.get("training_ranges", {})),
        },
    }
