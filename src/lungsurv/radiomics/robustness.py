"""How much of a feature's spread between patients survives perturbation: the intraclass
correlation over perturbed versions of each patient, and the filter that keeps robust features.

Values of one feature form a table of patients (rows) by versions (columns: the original and
its perturbations). :func:`intraclass_correlation` computes, for every feature at once, the
ICC of Shrout and Fleiss (1979) from the two-way ANOVA mean squares:

- ``"1,1"`` (one-way random effects, absolute agreement, single measurement; the default): the
  perturbations are drawn at random per patient (:mod:`lungsurv.imaging.perturbation`), so
  the k-th version of one patient and the k-th of another share nothing: there is no "rater"
  effect to separate, which is the one-way model. Zwanenburg et al. 2019 use it for the same
  reason.
- ``"3,1"`` (two-way mixed effects, consistency): for fixed perturbations applied alike to
  every patient (a test-retest design with the same two scanners, say).

Both equal pingouin's ``ICC(1,1)`` and ``ICC(C,1)`` (tests). A feature constant over every
patient and version has no between-patient spread to keep: its ICC is NaN, and
:func:`robust_features` treats it as not robust.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

#: The ICC forms :func:`intraclass_correlation` computes.
ICC_KINDS = ("1,1", "3,1")


def intraclass_correlation(values: np.ndarray, kind: str = "1,1") -> np.ndarray:
    """ICC per feature of ``values`` shaped (patients, versions, features); NaN where a
    feature has no variance at all."""
    if kind not in ICC_KINDS:
        raise ValueError(f"kind must be one of {ICC_KINDS}, got {kind!r}")
    values = np.asarray(values, dtype=float)
    if values.ndim != 3:
        raise ValueError(f"values must be (patients, versions, features), got {values.shape}")
    n, k, _ = values.shape
    if n < 2 or k < 2:
        raise ValueError(f"the ICC needs >= 2 patients and >= 2 versions, got {n} and {k}")
    grand = values.mean(axis=(0, 1))
    patient_means = values.mean(axis=1)
    version_means = values.mean(axis=0)
    ss_patients = k * ((patient_means - grand) ** 2).sum(axis=0)
    ss_total = ((values - grand) ** 2).sum(axis=(0, 1))
    ms_patients = ss_patients / (n - 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        if kind == "1,1":
            ms_within = (ss_total - ss_patients) / (n * (k - 1))
            icc = (ms_patients - ms_within) / (ms_patients + (k - 1) * ms_within)
        else:
            ss_versions = n * ((version_means - grand) ** 2).sum(axis=0)
            ms_error = (ss_total - ss_patients - ss_versions) / ((n - 1) * (k - 1))
            icc = (ms_patients - ms_error) / (ms_patients + (k - 1) * ms_error)
    return np.where(ss_total > 0, icc, np.nan)


def icc_table(
    versions: pd.DataFrame, *, kind: str = "1,1", version_column: str = "version"
) -> pd.DataFrame:
    """The ICC of every feature of every ROI: ``roi, feature, icc, patients, versions``.

    ``versions``: the long feature table of the original and the perturbed versions, one row
    per (patient, ROI, version), with ``version_column`` numbering the versions; only patients
    with every version of a ROI count for it."""
    rows = []
    for roi, block in versions.groupby("roi", sort=True):
        counts = block.groupby("patient_id")[version_column].nunique()
        k = int(counts.max())
        complete = counts.index[counts == k]
        block = block[block["patient_id"].isin(complete)]
        block = block.sort_values(["patient_id", version_column])
        features = [
            c
            for c in block.columns
            if c not in ("patient_id", "roi", version_column)
            and pd.api.types.is_float_dtype(block[c])
            and block[c].notna().all()
        ]
        if len(complete) < 2 or k < 2 or not features:
            continue
        cube = block[features].to_numpy(float).reshape(len(complete), k, len(features))
        rows.append(
            pd.DataFrame(
                {
                    "roi": str(roi),
                    "feature": features,
                    "icc": intraclass_correlation(cube, kind),
                    "patients": len(complete),
                    "versions": k,
                }
            )
        )
    columns = ["roi", "feature", "icc", "patients", "versions"]
    return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(columns=columns)


def icc_summary(icc: pd.DataFrame) -> pd.DataFrame:
    """The ICC's distribution per ROI, image type and feature class (PyRadiomics' names,
    ``<image type>_<class>_<feature>``): features, ICC quartiles, and the share kept (where the
    table has the stage's ``kept`` column)."""
    columns = ["roi", "image_type", "feature_class", "features", "icc_q1", "icc_median", "icc_q3"]
    if icc.empty:
        return pd.DataFrame(columns=[*columns, "kept"])
    parts = icc["feature"].astype(str).str.split("_", n=2, expand=True)
    table = icc.assign(
        image_type=parts[0]
        .str.replace(r"^wavelet-.*", "wavelet", regex=True)
        .str.replace(r"^log-sigma-.*", "log", regex=True),
        feature_class=parts[1],
    )
    grouped = table.groupby(["roi", "image_type", "feature_class"], sort=True)
    summary = grouped["icc"].agg(
        features="size",
        icc_q1=lambda v: v.quantile(0.25),
        icc_median="median",
        icc_q3=lambda v: v.quantile(0.75),
    )
    if "kept" in table.columns:
        summary["kept"] = grouped["kept"].mean()
    return summary.reset_index()


def robust_features(icc: pd.DataFrame, min_icc: float) -> dict[str, set[str]]:
    """The features of each ROI whose ICC is at least ``min_icc`` (a NaN ICC is not)."""
    if not 0.0 <= min_icc <= 1.0:
        raise ValueError(f"min_icc must be in [0, 1], got {min_icc}")
    kept = icc[icc["icc"].fillna(-np.inf) >= min_icc]
    return {str(roi): set(rows["feature"]) for roi, rows in kept.groupby("roi")}


def drop_unrobust(
    features: pd.DataFrame, icc: pd.DataFrame, min_icc: float
) -> tuple[pd.DataFrame, dict[str, int]]:
    """The feature table with every feature of an assessed ROI whose ICC is below ``min_icc``
    emptied (NaN) in that ROI's rows, so that the ROI's block no longer has it (a block keeps
    only columns with values); ROIs the ICC table does not cover (the deep features) are left
    as they are. Returns the table and the number of features dropped per ROI."""
    keep = robust_features(icc, min_icc)
    assessed: Mapping[str, set[str]] = {
        str(roi): set(rows["feature"]) for roi, rows in icc.groupby("roi")
    }
    out = features.copy()
    dropped: dict[str, int] = {}
    for roi, candidates in assessed.items():
        removed = sorted(candidates - keep.get(roi, set()))
        rows = out["roi"] == roi
        if removed:
            out.loc[rows, removed] = np.nan
        dropped[roi] = len(removed)
    return out, dropped
