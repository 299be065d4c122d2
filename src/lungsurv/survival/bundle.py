"""The model bundle: the fitted combined model as a self-describing folder that serving loads.

``model.json`` (format version, library versions, each block's features and scaling, PCA, Cox
coefficients, Breslow baseline, cutoff, metadata), the radiomics parameter file the features were
computed with, and the 3D SE-ResNet when the model fuses deep features. JSON, not pickle: a
bundle is read by any version that knows its format, and loading one runs no code.
"""

from __future__ import annotations

import json
import platform
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

import lungsurv
from lungsurv.core.layout import BUNDLE_FILE, NETWORK_DIR, NETWORK_FILES, RADIOMICS_PARAMS_FILE
from lungsurv.survival.fusion import BlockParameters, ModelParameters

BUNDLE_FORMAT = 1


def _array(values: np.ndarray) -> list[Any]:
    return np.asarray(values, dtype=float).tolist()


def save_bundle(
    params: ModelParameters,
    folder: Path,
    *,
    radiomics_params: Mapping[str, Any] | None = None,
    selection_settings: Mapping[str, Any] | None = None,
    network_dir: Path | None = None,
) -> Path:
    """Write the model as ``folder/model.json``, plus the radiomics parameter file used and,
    when the model fuses deep features, the network that computes them (``folder/network``:
    the train step's ``model.pt`` and ``config.json``)."""
    import sklearn
    import sksurv
    import yaml

    folder.mkdir(parents=True, exist_ok=True)
    document = {
        "format": BUNDLE_FORMAT,
        "kind": "lungsurv combined Cox model (PCA over signature features)",
        "versions": {
            "lungsurv": lungsurv.__version__,
            "python": platform.python_version(),
            "numpy": np.__version__,
            "scikit-learn": sklearn.__version__,
            "scikit-survival": sksurv.__version__,
        },
        "metadata": params.metadata,
        "selection": dict(selection_settings or {}),
        "blocks": [
            {
                "name": b.name,
                "features": b.features,
                "mean": _array(b.mean),
                "scale": _array(b.scale),
                "signature_coef": _array(b.signature_coef),
            }
            for b in params.blocks
        ],
        "pca": {
            "mean": _array(params.pca_mean),
            "n_features": int(np.asarray(params.pca_mean).size),
            "components": np.asarray(params.pca_components, dtype=float).tolist(),
            "explained_variance_ratio": _array(params.explained_variance_ratio),
        },
        "cox": {
            "coef": _array(params.cox_coef),
            "baseline_times": _array(params.baseline_times),
            "baseline_survival": _array(params.baseline_survival),
        },
        "cutoff": params.cutoff,
    }
    (folder / BUNDLE_FILE).write_text(json.dumps(document, indent=1))
    if radiomics_params is not None:
        (folder / RADIOMICS_PARAMS_FILE).write_text(yaml.safe_dump(dict(radiomics_params)))
    if network_dir is not None:
        import shutil

        target = folder / NETWORK_DIR
        target.mkdir(exist_ok=True)
        for name in NETWORK_FILES:
            shutil.copy2(network_dir / name, target / name)
    return folder


def load_bundle(folder: Path) -> ModelParameters:
    """Read a bundle written by :func:`save_bundle`."""
    path = folder / BUNDLE_FILE
    try:
        document = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(f"not a model bundle: {path}: {error}") from error
    if document.get("format") != BUNDLE_FORMAT:
        raise ValueError(f"bundle format {document.get('format')!r}, expected {BUNDLE_FORMAT}")
    return ModelParameters(
        blocks=[
            BlockParameters(
                name=b["name"],
                features=list(b["features"]),
                mean=np.asarray(b["mean"]),
                scale=np.asarray(b["scale"]),
                signature_coef=np.asarray(b["signature_coef"]),
            )
            for b in document["blocks"]
        ],
        pca_mean=np.asarray(document["pca"]["mean"]),
        pca_components=np.asarray(document["pca"]["components"], dtype=float).reshape(
            len(document["pca"]["components"]),
            int(document["pca"].get("n_features", len(document["pca"]["mean"]))),
        ),
        explained_variance_ratio=np.asarray(document["pca"]["explained_variance_ratio"]),
        cox_coef=np.asarray(document["cox"]["coef"]),
        baseline_times=np.asarray(document["cox"]["baseline_times"]),
        baseline_survival=np.asarray(document["cox"]["baseline_survival"]),
        cutoff=float(document["cutoff"]),
        metadata=dict(document.get("metadata", {})),
    )
