"""Scoring one patient with a fitted model bundle: the pipeline's own code, end to end.

:func:`load_serving_model` reads a bundle written by PCA-fuse (``model.json`` and
``radiomics_params.yaml``); :func:`predict_patient` takes one patient's CT and GTV mask (files,
as the pipeline reads them), converts them to 1 mm (:mod:`lungsurv.imaging.convert`), makes the
one ring the combined model uses (:mod:`lungsurv.imaging.rings`), extracts **only the radiomics
features the bundle uses** (:mod:`lungsurv.radiomics.extract` with a parameter set restricted to
their image types and feature classes), computes the deep features with the bundled 3D SE-ResNet
when the model fuses them, and scores them (:func:`lungsurv.survival.fusion.score`). The KServe
predictor in ``serving/`` is a thin shell over this module.

The result per patient: the risk, the risk group at the training cutoff, predicted survival at 1,
2 and 3 years, each block's additive contribution to the risk (the combined model is linear in
the standardised features: PCA then Cox, so the risk splits exactly into per-feature terms), and
input QA (original spacing, GTV volume, the converter's warnings, and a warning when the GTV
volume or the slice thickness lies outside the training patients' range, stored in the bundle).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import SimpleITK as sitk
import yaml

from lungsurv.core.errors import InputError, PatientError, problem_of
from lungsurv.core.layout import (
    BUNDLE_FILE,
    CLINICAL_ROI,
    DL_RISK_FEATURE,
    DL_ROI,
    GTV_ROI,
    HORIZONS_DAYS,
    NETWORK_DIR,
    RADIOMICS_PARAMS_FILE,
    STAGE_FEATURE,
    WEIGHTS_FILE,
    feature_columns,
    is_radiomics_roi,
    is_ring,
    ring_distance,
    ring_name,
)
from lungsurv.core.provenance import ProvenanceError, check_serving_provenance
from lungsurv.imaging.convert import ConvertSettings, convert_patient
from lungsurv.imaging.plausibility import PLACEMENT
from lungsurv.imaging.qa import range_warnings
from lungsurv.imaging.rings import make_rings
from lungsurv.radiomics.extract import extract_patient
from lungsurv.radiomics.extract import warm_up as warm_up_radiomics
from lungsurv.radiomics.params import engine_version, params_digest, used_radiomics_params
from lungsurv.stages.selection import STAGE_ORDER, overall_stage_number
from lungsurv.survival.bundle import load_bundle
from lungsurv.survival.fusion import ModelParameters, contributions, score, survival_at
from lungsurv.survival.harmonization import harmonize_row
from lungsurv.survival.reliability import assess

logger = logging.getLogger(__name__)

#: Largest CT or mask a request may send or declare (a 512 x 512 x 300 int16 CT is 150 MB).
SERVING_MAX_IMAGE_BYTES = 512 * 2**20
#: The pipeline's conversion, except that a request's voxels must come in the request (a NRRD or
#: MetaImage header naming any other file is refused: the server would read that file) and its
#: ROI is a name, never a regular expression (a crafted one can take exponential time).
SERVING_CONVERT = ConvertSettings(
    external_data="refuse", roi_regex=False, max_image_bytes=SERVING_MAX_IMAGE_BYTES
)


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
        return [b.name for b in self.params.blocks if is_radiomics_roi(b.name)]


def load_serving_model(folder: Path, *, name: str = "lungsurv") -> ServingModel:
    """Read a bundle folder (``model.json`` + ``radiomics_params.yaml``)."""
    if not (folder / BUNDLE_FILE).exists():
        raise InputError(f"no model bundle in {folder} (expected {BUNDLE_FILE})")
    params = load_bundle(folder)
    radiomics_path = folder / RADIOMICS_PARAMS_FILE
    names = [f for b in params.blocks if is_radiomics_roi(b.name) for f in b.features]
    network = None
    if any(b.name == DL_ROI and b.features for b in params.blocks):
        if not (folder / NETWORK_DIR / WEIGHTS_FILE).exists():
            raise InputError(
                f"the bundle uses deep features but holds no network ({NETWORK_DIR}/{WEIGHTS_FILE})"
            )
        from lungsurv.deep.train import load_model  # torch: the optional dl extra

        network = load_model(folder / NETWORK_DIR)
    radiomics = shipped = None
    if names:
        if not radiomics_path.exists():
            raise InputError(
                f"the bundle uses radiomics features but has no {RADIOMICS_PARAMS_FILE}"
            )
        shipped = yaml.safe_load(radiomics_path.read_text())
        radiomics = used_radiomics_params(shipped, names)
    check_bundle_provenance(params, shipped, network)
    # The ring the model fuses is its ring block (none for a GTV-only model).
    ring = next((b.name for b in params.blocks if is_ring(b.name)), None)
    distance = ring_distance(ring) if ring else None
    # The numba kernels (from numba's cache, or compiled) now, not in the first request.
    warm_up_radiomics()
    return ServingModel(
        params=params,
        radiomics_params=radiomics,
        ring_distance_mm=distance,
        network=network,
        name=name,
        metadata=dict(params.metadata),
    )


def check_bundle_provenance(
    params: ModelParameters, radiomics_params: dict[str, Any] | None, network: Any
) -> None:
    """Refuse (:class:`~lungsurv.core.provenance.ProvenanceError`) a bundle whose features this
    server would compute otherwise than they were computed for training: another radiomics
    engine version or parameter set than the bundle records, or a network other than the one
    its deep features came from. A bundle that records no provenance (made before it was
    recorded, or from a hand-made table) is served with a warning."""
    recorded = params.metadata.get("provenance")
    # The clinical block is the request's stage, not a computed feature: nothing to check.
    used = [b.name for b in params.blocks if b.features and b.name != CLINICAL_ROI]
    if not recorded:
        logger.warning("the bundle records no provenance: its features' origin is not checked")
        return
    for block in used:
        if block not in recorded:
            raise ProvenanceError(f"the bundle records no provenance for its {block} block")
        if is_radiomics_roi(block) and radiomics_params is not None:
            current = {
                "engine_version": engine_version(),
                "params_digest": params_digest(radiomics_params),
            }
        elif block == DL_ROI and network is not None:
            from lungsurv.deep.features import network_digest, network_engine

            current = {
                "engine_version": network_engine(),
                "params_digest": network_digest(network[0]),
            }
        else:
            continue
        check_serving_provenance(recorded[block], **current, block=block)


def predict_patient(
    image_path: str | Path,
    mask_path: str | Path,
    model: ServingModel,
    *,
    roi: str | None = None,
    patient_id: str = "patient",
    center: str | None = None,
    overall_stage: str | None = None,
    only_used_features: bool = True,
) -> dict[str, Any]:
    """Risk, risk group, survival at 1/2/3 years, block contributions and QA for one patient
    (a CT and a GTV as NIfTI/NRRD files, or a DICOM folder and an RTSTRUCT with ``roi``; either
    may be an ``s3://`` URI, read with the pipeline's storage layer).
    ``only_used_features=False`` computes every feature of the parameter set, as the pipeline
    does (``bench/serving.py`` measures what restricting saves). ``center``: for a model with
    harmonised features; none, or an unknown one, makes the prediction unreliable.
    ``overall_stage`` (``"IIIa"``, say): for a model that fuses the stage as a clinical block,
    which refuses a request without it (:func:`clinical_block_of`)."""
    clinical = clinical_block_of(model, overall_stage, patient_id)  # before any image work
    converted, blocks = _image_blocks(
        image_path, mask_path, model, roi, patient_id, only_used_features
    )
    if clinical is not None:
        blocks[CLINICAL_ROI] = clinical
    blocks, harmonization = harmonize_row(blocks, model.metadata.get("harmonization", {}), center)
    scored = score(blocks, model.params)
    risk = float(scored["risk"][0])
    survival = survival_at(np.array([risk]), HORIZONS_DAYS, model.params)[0]
    shares = contributions(blocks, model.params)
    qa = _qa(converted.geometry, model)
    by_horizon = {f"{h // 365}y": float(v) for h, v in zip(HORIZONS_DAYS, survival, strict=True)}
    reliability = assess(
        risk=risk,
        survival=by_horizon,
        blocks=blocks,
        params=model.params,
        # Outside the training ranges, or not placed like a lung tumour: no reliable answer.
        warnings=range_warnings(converted.geometry, model.metadata.get("training_ranges", {}))
        + [w for w in qa["warnings"] if w.startswith(PLACEMENT)]
        + harmonization,
    )
    return {
        "patient_id": patient_id,
        "risk": risk,
        "risk_group": "high" if risk > model.params.cutoff else "low",
        "cutoff": float(model.params.cutoff),
        "survival": by_horizon,
        "contributions": {name: float(v[0]) for name, v in shares.items()},
        "reliable": reliability.pop("reliable"),
        "reliability": reliability,
        "qa": qa,
    }


def _image_blocks(
    image_path: str | Path,
    mask_path: str | Path,
    model: ServingModel,
    roi: str | None,
    patient_id: str,
    only_used_features: bool,
) -> tuple[Any, dict[str, pd.DataFrame]]:
    """The patient converted to 1 mm, and the blocks computed from its images; what is wrong
    with the images is an :class:`~lungsurv.core.errors.InputError` (a 400, not a 500)."""
    row = {"patient_id": patient_id, "image": str(image_path), "mask": str(mask_path)}
    row |= {"roi": roi} if roi else {}
    try:
        converted = convert_patient(row, SERVING_CONVERT)
    except PatientError as error:
        raise InputError(str(error)) from error
    # The pipeline hands these over as NIfTI files; the values round-trip exactly (float32 CT,
    # uint8 mask) and only the geometry's float32 storage differs, which no feature uses.
    try:
        blocks = feature_blocks_of(
            converted.image,
            converted.gtv,
            model,
            patient_id,
            only_used_features=only_used_features,
            ct_statistics=(converted.geometry["ct_mean_hu"], converted.geometry["ct_std_hu"]),
        )
    except InputError:
        raise
    except Exception as error:  # the patient's images, not the server: a 400 with the reason
        raise InputError(f"cannot compute the features: {problem_of(error)}") from error
    return converted, blocks


#: The overall stages a request may name, as the manifest's ``overall_stage`` does.
STAGE_NAMES = ", ".join(sorted(k.upper() for k in STAGE_ORDER))


def clinical_block_of(
    model: ServingModel, overall_stage: str | None, patient_id: str
) -> pd.DataFrame | None:
    """The clinical block's row (the ordinal overall stage) for a model that fuses it; None for
    one that does not. Its stage missing or not one of :data:`STAGE_NAMES` is an
    :class:`~lungsurv.core.errors.InputError`: the model cannot score the patient without it."""
    if not any(b.name == CLINICAL_ROI and b.features for b in model.params.blocks):
        return None
    if overall_stage is None:
        raise InputError(
            "this model fuses the overall stage (TNM) with the images: send the patient's "
            f"'overall_stage' ({STAGE_NAMES})"
        )
    number = float(overall_stage_number(pd.Series([overall_stage], dtype="string")).iloc[0])
    if not np.isfinite(number):
        raise InputError(f"'overall_stage' is not an overall stage: send one of {STAGE_NAMES}")
    return pd.DataFrame({STAGE_FEATURE: [number]}, index=[patient_id])


def feature_blocks_of(
    image: sitk.Image,
    gtv: sitk.Image,
    model: ServingModel,
    patient_id: str,
    *,
    only_used_features: bool = True,
    ct_statistics: tuple[float, float] | None = None,
) -> dict[str, pd.DataFrame]:
    """Every block the model scores, one row each: the GTV's and the ring's radiomics features
    (only those the bundle uses, unless ``only_used_features`` is False) and the deep features.
    ``ct_statistics``: the whole scan's HU mean and SD, which radiomics normalises with."""
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
            ct_statistics=ct_statistics,
        )
        if failures:
            raise InputError("; ".join(failures.values()))
        for block, features in values.items():
            blocks[block] = pd.DataFrame([features], index=[patient_id])
    if model.network is not None:
        # Lazily: torch is the optional ``dl`` extra, needed only by bundles with deep features.
        from lungsurv.deep.features import deep_feature_frame, deep_features, predict_risk
        from lungsurv.deep.transforms import config_input

        network, config = model.network
        volume = config_input(image, gtv, config)[None]
        # A second forward pass for the network's risk only when the bundle's DL block uses it.
        used = {f for b in model.params.blocks if b.name == DL_ROI for f in b.features}
        risk = predict_risk(network, volume, batch_size=1) if DL_RISK_FEATURE in used else None
        frame = deep_feature_frame([patient_id], deep_features(network, volume), [0], risk=risk)
        frame = frame.set_index("patient_id")
        blocks[DL_ROI] = frame[feature_columns(frame.columns)]
    for block in model.params.blocks:
        blocks.setdefault(block.name, pd.DataFrame(index=[patient_id]))
    return blocks


def _qa(geometry: dict[str, Any], model: ServingModel) -> dict[str, Any]:
    """What the converter saw, its warnings, and the values outside the training ranges."""
    return {
        "source": geometry["source"],
        "original_spacing_mm": [
            float(geometry["orig_spacing_x"]),
            float(geometry["orig_spacing_y"]),
            float(geometry["orig_spacing_z"]),
        ],
        "gtv_volume_ml": float(geometry["gtv_volume_ml_resampled"]),
        "warnings": [w for w in str(geometry["warnings"]).split("; ") if w]
        + range_warnings(geometry, model.metadata.get("training_ranges", {})),
    }
