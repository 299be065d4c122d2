"""PyRadiomics parameter sets: the paper's packaged file, overrides, feature names, and the
serving-side restriction to the features a model uses.

The paper's settings (original, wavelet and LoG sigma 1-5 images; bin width 25; normalisation)
are ``params/radiomics_paper.yaml``, 1316 features per ROI. :func:`used_radiomics_params` keeps
only the image types, LoG sigmas and feature classes that a bundle's features come from, leaving
every setting as it is, so the values do not change.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from lungsurv.core import storage
from lungsurv.core.errors import InputError
from lungsurv.core.provenance import digest_json

_LOG_TYPE = re.compile(r"log-sigma-(\d+)-(\d+)-mm-3D")


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


PAPER_PARAMS = "radiomics_paper.yaml"


def _quiet_radiomics() -> None:
    """PyRadiomics logs a warning per GLCM computation; keep errors only."""
    import radiomics

    radiomics.setVerbosity(logging.ERROR)
    logging.getLogger("radiomics").setLevel(logging.ERROR)


_quiet_radiomics()


def paper_params_path() -> Path:
    """The packaged parameter file with the paper's settings."""
    return Path(str(resources.files("lungsurv") / "params" / PAPER_PARAMS))


def load_params(
    path: str | Path | None = None, *, normalize_scale: float | None = None
) -> dict[str, Any]:
    """Read a PyRadiomics parameter file (default: the paper's) and check it with PyRadiomics.

    ``normalize_scale`` overrides ``setting: normalizeScale`` (the pipeline parameter). An
    unknown setting, image type or feature class raises :class:`InputError` naming it.
    """
    path = Path(path) if path is not None else paper_params_path()
    try:
        params = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as error:
        raise InputError(f"cannot read radiomics parameter file {path}: {error}") from error
    if normalize_scale is not None:
        if not np.isfinite(normalize_scale) or normalize_scale <= 0:
            raise ValueError(f"normalize_scale must be > 0, got {normalize_scale}")
        params.setdefault("setting", {})["normalizeScale"] = float(normalize_scale)
    make_extractor(params)  # validates
    return params


def resolve_params(params_uri: str = "", normalize_scale: float = 0.0) -> dict[str, Any]:
    """The pipeline's radiomics parameters: the file at ``params_uri`` (a path or an s3:// URI;
    empty: the paper's packaged file) with ``normalize_scale`` (0: the file's own)."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = storage.localize(params_uri, Path(tmp)) if params_uri else None
        return load_params(path, normalize_scale=normalize_scale or None)


def make_extractor(params: Mapping[str, Any]) -> Any:
    """A ``RadiomicsFeatureExtractor`` for ``params``; invalid parameters raise InputError."""
    from radiomics.featureextractor import RadiomicsFeatureExtractor

    known_settings = _known_settings()
    unknown = sorted(set(params.get("setting") or {}) - known_settings)
    if unknown:
        raise InputError(f"unknown radiomics setting(s) {unknown} in the parameter file")
    try:
        return RadiomicsFeatureExtractor(dict(params))
    except Exception as error:  # pykwalify's schema errors have their own types
        raise InputError(f"invalid radiomics parameters: {error}") from error


_extractors = threading.local()


def cached_extractor(params: Mapping[str, Any]) -> Any:
    """:func:`make_extractor`'s extractor for ``params``, made once per thread and parameter set.

    Building one validates the parameters against PyRadiomics' schema (about 0.15 s), which a
    server paid on every request and a stage on every patient. Per thread, because extraction
    switches the extractor's enabled features while it runs, and a server scores requests on
    several threads at once."""
    key = json.dumps(params, sort_keys=True, default=str)
    cache: dict[str, Any] = getattr(_extractors, "by_params", None) or {}
    _extractors.by_params = cache
    if key not in cache:
        if len(cache) >= 8:  # a long-lived process that sees many parameter sets
            cache.clear()
        cache[key] = make_extractor(params)
    return cache[key]


def engine_version() -> str:
    """The radiomics engine and its version, as a feature row's provenance records it."""
    import radiomics

    return f"pyradiomics {str(radiomics.__version__).removeprefix('v')}"


def params_digest(params: Mapping[str, Any]) -> str:
    """A digest of the *effective* parameter set: PyRadiomics' settings, image types and feature
    classes after it has filled in its defaults, with every number as a float (``100`` and
    ``100.0`` are one setting). Two files that differ only in layout, comments or spelled-out
    defaults get the same digest; any change to a value gets another."""
    extractor = make_extractor(params)
    effective = {
        "setting": extractor.settings,
        "imageType": extractor.enabledImagetypes,
        "featureClass": extractor.enabledFeatures,
    }
    return digest_json(_numbers_as_floats(effective))


def _numbers_as_floats(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _numbers_as_floats(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_numbers_as_floats(v) for v in value]
    if isinstance(value, int | float | np.number) and not isinstance(value, bool | np.bool_):
        return float(value)
    return value


def _known_settings() -> set[str]:
    import radiomics

    schema_dir = Path(radiomics.__file__).parent / "schemas" / "paramSchema.yaml"
    schema = yaml.safe_load(schema_dir.read_text())
    return set(schema["mapping"]["setting"]["mapping"])


def feature_names(params: Mapping[str, Any]) -> list[str]:
    """The feature columns ``params`` yields, in PyRadiomics' order and naming."""
    from radiomics import getFeatureClasses

    extractor = make_extractor(params)
    classes = getFeatureClasses()
    names: list[str] = []

    def class_names(name: str) -> list[str]:
        enabled = extractor.enabledFeatures[name]
        if enabled:
            return list(enabled)
        return [f for f, deprecated in classes[name].getFeatureNames().items() if not deprecated]

    if "shape" in extractor.enabledFeatures:
        names += [f"original_shape_{f}" for f in class_names("shape")]
    for image_type in _image_type_names(extractor):
        for cls in extractor.enabledFeatures:
            if cls.startswith("shape"):
                continue
            names += [f"{image_type}_{cls}_{f}" for f in class_names(cls)]
    return names


def _image_type_names(extractor: Any) -> list[str]:
    names: list[str] = []
    for image_type, custom in extractor.enabledImagetypes.items():
        if image_type == "Original":
            names.append("original")
        elif image_type == "Wavelet":
            names += [
                f"wavelet-{a}{b}{c}" for a in "LH" for b in "LH" for c in "LH" if a + b + c != "LLL"
            ] + ["wavelet-LLL"]
        elif image_type == "LoG":
            sigmas = custom.get("sigma", extractor.settings.get("sigma", []))
            names += [f"log-sigma-{str(float(s)).replace('.', '-')}-mm-3D" for s in sigmas]
        else:
            raise InputError(f"image type {image_type!r} is not supported by the fast path")
    return names
