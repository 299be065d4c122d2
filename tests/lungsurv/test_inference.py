"""Scoring one patient with a bundle: the parameter restriction, and deep features served with
the bundled network exactly as the pipeline computes them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from lungsurv.inference import load_serving_model, predict_patient
from lungsurv.radiomics.params import used_radiomics_params


def test_used_radiomics_params_keep_only_what_the_bundle_needs() -> None:
    from lungsurv.radiomics.params import load_params

    params = load_params(normalize_scale=100.0)
    names = [
        "original_shape_Sphericity",
        "wavelet-LLH_glcm_Contrast",
        "log-sigma-3-0-mm-3D_firstorder_Mean",
        "log-sigma-1-0-mm-3D_firstorder_Median",
    ]
    restricted = used_radiomics_params(params, names)
    assert restricted["imageType"] == {"Original": {}, "Wavelet": {}, "LoG": {"sigma": [1.0, 3.0]}}
    assert restricted["featureClass"] == {
        "shape": ["Sphericity"],
        "glcm": ["Contrast"],
        "firstorder": ["Mean", "Median"],
    }
    assert restricted["setting"] == params["setting"]
    assert used_radiomics_params(params, []) is None


@pytest.mark.slow
@pytest.mark.parametrize(("crop", "intensity"), [("bbox", "zscore"), ("fixed", "window")])
def test_deep_features_are_served_with_the_bundled_network(
    small_cohort_dir: Path, tmp_path: Path, crop: str, intensity: str
) -> None:
    from lungsurv.core.provenance import provenance_values
    from lungsurv.deep.config import TrainConfig
    from lungsurv.deep.features import (
        deep_feature_frame,
        deep_features,
        network_digest,
        network_engine,
        predict_risk,
    )
    from lungsurv.deep.train import save_model, train
    from lungsurv.radiomics.params import load_params
    from lungsurv.stages.convert import convert_cohort
    from lungsurv.stages.fusion import bundle_provenance
    from lungsurv.stages.radiomics import extract_cohort
    from lungsurv.stages.rings import segment_cohort
    from lungsurv.stages.training import load_inputs
    from lungsurv.survival.bundle import save_bundle
    from lungsurv.survival.fusion import BlockParameters, ModelParameters, feature_blocks, score

    manifest = pd.read_csv(small_cohort_dir / "manifest.csv").head(4)
    for column in ("image", "mask"):
        manifest[column] = [str(small_cohort_dir / v) for v in manifest[column]]
    convert_cohort(manifest, tmp_path / "volumes")
    segment_cohort(tmp_path / "volumes", tmp_path / "rings", write_qa=False)
    radiomics = load_params(normalize_scale=100.0)
    table, _ = extract_cohort(tmp_path / "volumes", tmp_path / "rings", radiomics)
    # The pipeline's deep features: a (tiny) trained network over every converted patient.
    config = TrainConfig(
        input_size=16,
        channels=(4, 8),
        se_reduction=2,
        head=(8,),
        batch_size=2,
        max_epochs=1,
        crop=crop,
        field_of_view_mm=40.0,
        intensity=intensity,
    )
    ids, inputs, voxels, _, digests = load_inputs([tmp_path / "volumes"], config)
    result = train(inputs, np.arange(1.0, 5.0) * 100, np.array([1, 0, 1, 1], bool), config)
    network_dir = save_model(result, tmp_path / "network")
    # As train-3D-SE-ResNet writes them: the deep features, the network's risk, provenance.
    risk = predict_risk(result.model, inputs, batch_size=1)
    shared = {"engine_version": network_engine(), "params_digest": network_digest(result.model)}
    provenance = [provenance_values(**shared, image=i, mask=m) for i, m in digests]
    deep = deep_feature_frame(
        ids, deep_features(result.model, inputs), voxels, risk=risk, provenance=provenance
    )
    blocks = feature_blocks(pd.concat([table, deep]), ["gtv", "ring_6mm", "dl"])
    chosen = {
        "gtv": ["original_firstorder_Mean"],
        "ring_6mm": [],
        "dl": ["dl_000", "dl_005", "dl_risk"],
    }
    parameters = [
        BlockParameters(
            name=name,
            features=features,
            mean=blocks[name][features].mean().to_numpy(),
            scale=blocks[name][features].std().to_numpy() + 1e-6,
            signature_coef=np.ones(len(features)),
        )
        for name, features in chosen.items()
    ]
    params = ModelParameters(
        blocks=parameters,
        pca_mean=np.zeros(4),
        pca_components=np.eye(4),
        explained_variance_ratio=np.full(4, 1 / 4),
        cox_coef=np.array([0.5, -0.4, 0.3, 0.8]),
        baseline_times=np.array([200.0, 900.0]),
        baseline_survival=np.array([0.9, 0.6]),
        cutoff=0.0,
        metadata={"ring": "ring_6mm"},
    )
    params.metadata["provenance"] = bundle_provenance(
        pd.concat([table, deep]), list(chosen), ids, radiomics
    )
    bundle = save_bundle(
        params, tmp_path / "bundle", radiomics_params=radiomics, network_dir=network_dir
    )
    reference = pd.Series(score(blocks, params)["risk"], index=blocks["gtv"].index)
    model = load_serving_model(bundle)
    assert model.network is not None
    for row in manifest.head(2).itertuples():
        served = predict_patient(Path(row.image), Path(row.mask), model, roi=row.roi)
        assert abs(served["risk"] - reference[row.patient_id]) <= 1e-9
        assert set(served["contributions"]) == {"gtv", "ring_6mm", "dl"}
    _served_only_as_trained(bundle, tmp_path, result, inputs, config)
    # Without the network the bundle cannot serve its deep features, and says so.
    import shutil

    shutil.rmtree(bundle / "network")
    from lungsurv.core.errors import InputError

    with pytest.raises(InputError, match="holds no network"):
        load_serving_model(bundle)


def _served_only_as_trained(
    bundle: Path, tmp_path: Path, result: Any, inputs: np.ndarray, config: Any
) -> None:
    """A bundle whose radiomics parameters, engine version or network are not those its
    features were made with is refused by name, and loads again once restored."""
    import json
    import shutil

    import yaml

    from lungsurv.core.layout import BUNDLE_FILE, NETWORK_DIR, RADIOMICS_PARAMS_FILE
    from lungsurv.core.provenance import ProvenanceError
    from lungsurv.deep.train import save_model, train

    params_file, model_file = bundle / RADIOMICS_PARAMS_FILE, bundle / BUNDLE_FILE
    original_params, original_model = params_file.read_text(), model_file.read_text()
    changed = yaml.safe_load(original_params)
    changed["setting"]["binWidth"] = 10
    params_file.write_text(yaml.safe_dump(changed))
    with pytest.raises(ProvenanceError, match="gtv features were computed with params_digest"):
        load_serving_model(bundle)
    params_file.write_text(original_params)
    document = json.loads(original_model)
    document["metadata"]["provenance"]["gtv"]["engine_version"] = "pyradiomics 3.0.1"
    model_file.write_text(json.dumps(document))
    with pytest.raises(ProvenanceError, match=r"engine_version 'pyradiomics 3\.0\.1'"):
        load_serving_model(bundle)
    model_file.write_text(original_model)
    # Another network (trained on other outcomes) in the bundle's place.
    other = train(inputs, np.arange(4.0, 0.0, -1.0) * 100, np.ones(4, bool), config)
    saved = bundle / NETWORK_DIR
    shutil.move(saved, tmp_path / "kept")
    save_model(other, saved)
    with pytest.raises(ProvenanceError, match="dl features were computed with params_digest"):
        load_serving_model(bundle)
    shutil.rmtree(saved)
    shutil.move(tmp_path / "kept", saved)
    assert load_serving_model(bundle).network is not None


def test_inputs_outside_the_training_ranges_are_flagged() -> None:
    from lungsurv.imaging.qa import range_warnings, training_ranges

    geometry = pd.DataFrame(
        {
            "patient_id": ["A", "B", "C"],
            "gtv_volume_ml_resampled": [5.0, 80.0, 400.0],
            "slice_thickness_mm": [2.0, 3.0, 5.0],
        }
    )
    ranges = training_ranges(geometry, ["A", "B"])
    assert ranges == {"gtv_volume_ml_resampled": [5.0, 80.0], "slice_thickness_mm": [2.0, 3.0]}
    inside = {"gtv_volume_ml_resampled": 40.0, "slice_thickness_mm": 2.5}
    assert range_warnings(inside, ranges) == []
    outside = {"gtv_volume_ml_resampled": 400.0, "slice_thickness_mm": 5.0}
    assert range_warnings(outside, ranges) == [
        "gtv volume 400 ml is outside the training range 5-80 ml",
        "slice thickness 5 mm is outside the training range 2-3 mm",
    ]
