"""Provenance: how every feature value was made, recorded beside it and checked where it is used.

Every row of a feature table carries the :data:`~lungsurv.core.layout.PROVENANCE_COLUMNS`: the
engine that computed it and its version (PyRadiomics for the GTV and rings, torch for the deep
features), a digest of the effective parameter set (PyRadiomics' settings, image types and
feature classes after its defaults are filled in; the network's weights), content digests of the
converted image and of the ROI's mask, and this package's version. A content digest covers the
voxel values with their type and the grid (size, spacing, origin, direction), so two files that
hold the same volume get the same digest, and no file name, UID or patient name enters it.

The model bundle records the same of its training rows (:func:`training_provenance`), which must
agree on engine and parameters (:class:`ProvenanceError` otherwise); serving refuses a bundle
whose engine version or parameter digest is not what it would compute itself.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import SimpleITK as sitk

import lungsurv
from lungsurv.core.errors import InputError
from lungsurv.core.layout import PROVENANCE_COLUMNS

#: Hex digits kept of a SHA-256 digest: 128 bits, enough to tell any two inputs apart.
DIGEST_HEX = 32


class ProvenanceError(InputError):
    """Features or a bundle made by another engine, engine version or parameter set than the
    one they are used with."""


def project_version() -> str:
    """This package's version, as the rows and the bundle record it."""
    return lungsurv.__version__


def digest_json(value: Any) -> str:
    """The digest of a JSON-able value in canonical form (sorted keys, no whitespace)."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=_jsonable)
    return hashlib.sha256(text.encode()).hexdigest()[:DIGEST_HEX]


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, set | frozenset | tuple):
        return sorted(value, key=repr) if isinstance(value, set | frozenset) else list(value)
    return repr(value)


def image_digest(image: sitk.Image) -> str:
    """The content digest of a volume: its voxels (type and values) and its grid."""
    array = sitk.GetArrayViewFromImage(image)
    grid = {
        "dtype": array.dtype.str,
        "size": list(image.GetSize()),
        "spacing": [float(v) for v in image.GetSpacing()],
        "origin": [float(v) for v in image.GetOrigin()],
        "direction": [float(v) for v in image.GetDirection()],
        "components": image.GetNumberOfComponentsPerPixel(),
    }
    hasher = hashlib.sha256(json.dumps(grid, sort_keys=True).encode())
    hasher.update(np.ascontiguousarray(array).tobytes())
    return hasher.hexdigest()[:DIGEST_HEX]


def provenance_values(
    *, engine_version: str, params_digest: str, image: str, mask: str
) -> dict[str, str]:
    """One row's provenance columns, in :data:`PROVENANCE_COLUMNS` order."""
    values = {
        "engine_version": engine_version,
        "params_digest": params_digest,
        "image_digest": image,
        "mask_digest": mask,
        "lungsurv_version": project_version(),
    }
    return {column: values[column] for column in PROVENANCE_COLUMNS}


def training_provenance(rows: pd.DataFrame) -> dict[str, Any]:
    """What a bundle records of its training rows (one block's): the engine version, parameter
    digest and package version they share, how many rows, and a digest over their image and mask
    digests (the training data, without naming a patient). Rows that disagree on the engine or
    the parameters cannot make one model: :class:`ProvenanceError` names the values found."""
    missing = [c for c in PROVENANCE_COLUMNS if c not in rows.columns]
    if missing:
        raise ProvenanceError(
            f"the feature table has no provenance column(s) {missing}: it was written by an "
            "older version; extract the features again"
        )
    record: dict[str, Any] = {}
    for column in ("engine_version", "params_digest", "lungsurv_version"):
        values = sorted(rows[column].dropna().astype(str).unique())
        if len(values) != 1:
            raise ProvenanceError(
                f"the training rows were made with {len(values)} different {column} values "
                f"{values[:4]}: features computed by different engines or parameter sets cannot "
                "be modelled together"
            )
        record[column] = values[0]
    inputs = sorted(rows["image_digest"].astype(str) + ":" + rows["mask_digest"].astype(str))
    record["n_rows"] = len(rows)
    record["training_data_digest"] = digest_json(inputs)
    return record


def check_serving_provenance(
    recorded: Mapping[str, Any], *, engine_version: str, params_digest: str, block: str
) -> None:
    """Refuse (:class:`ProvenanceError`) a bundle block whose features were made by another
    engine version or parameter set than the ones serving would compute them with."""
    for column, current in (("engine_version", engine_version), ("params_digest", params_digest)):
        if str(recorded.get(column)) != current:
            raise ProvenanceError(
                f"the bundle's {block} features were computed with {column} "
                f"{recorded.get(column)!r}, but this server would compute them with {current!r}; "
                "serve it with the engine and parameters it was trained with, or retrain"
            )
