"""The train-3D-SE-ResNet stage over a cohort: network inputs, training, deep features.

:func:`train_cohort` reads every converted patient's GTV crop, trains on the training patients
only (and, for the SE ablation, the same network without SE), and writes every patient's 512 deep
features in the radiomics table's schema (ROI ``dl``).
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from time import perf_counter
from typing import NamedTuple

import numpy as np
import pandas as pd

from lungsurv.core.errors import Failure
from lungsurv.core.layout import GTV_FILE, IMAGE_FILE, SPLIT_COLUMN
from lungsurv.core.logs import PatientProgress
from lungsurv.core.provenance import image_digest, provenance_values
from lungsurv.core.tables import failures_frame
from lungsurv.deep.config import TrainConfig
from lungsurv.deep.features import (
    deep_feature_frame,
    deep_features,
    network_digest,
    network_engine,
    predict_risk,
)
from lungsurv.deep.train import TrainResult, train
from lungsurv.deep.transforms import config_input
from lungsurv.survival.metrics import c_index

logger = logging.getLogger(__name__)

STAGE = "train-3d-se-resnet"
#: Where a cluster mounts the checkpoint volume on the training pod (pipelines/pipeline.py).
CHECKPOINT_MOUNT = Path("/mnt/checkpoints")


def checkpoint_folder(
    requested: str, key: Sequence[str], *, mount: Path = CHECKPOINT_MOUNT
) -> Path | None:
    """Where a training run checkpoints: below ``requested``; when that is empty, below
    ``mount`` if a volume is mounted there (a cluster's PVC), else nowhere. The run's own
    subfolder is a digest of ``key`` (its configuration and inputs), so a retried step resumes
    its own run, and runs that share the volume never resume each other's."""
    if requested:
        base: Path | None = Path(requested)
    else:
        base = mount if os.path.ismount(mount) else None
    if base is None:
        return None
    digest = hashlib.sha256("\n".join(key).encode()).hexdigest()[:16]
    folder = base / digest
    logger.info("checkpoints in %s", folder)
    return folder


class NetworkInputs(NamedTuple):
    """The converted patients framed as the network's inputs."""

    ids: list[str]
    inputs: np.ndarray  # (n, 1, size, size, size)
    n_voxels: list[int]  # of each GTV
    failures: pd.DataFrame
    #: Each patient's (image, GTV mask) content digests, for the deep features' provenance.
    digests: list[tuple[str, str]]


def load_inputs(volume_roots: Sequence[Path], config: TrainConfig | None = None) -> NetworkInputs:
    """Network inputs of every converted patient below ``volume_roots`` (convert's output
    folders), framed as ``config`` says."""
    config = config or TrainConfig()
    size = config.input_size
    import SimpleITK as sitk

    loaded = NetworkInputs([], np.zeros(0), [], pd.DataFrame(), [])
    inputs: list[np.ndarray] = []
    failures: list[Failure] = []
    folders = sorted(p for root in volume_roots for p in Path(root).iterdir() if p.is_dir())
    folders = [folder for folder in folders if (folder / GTV_FILE).exists()]
    progress = PatientProgress(STAGE, len(folders), logger)
    for folder in folders:
        started = perf_counter()
        try:
            image = sitk.ReadImage(str(folder / IMAGE_FILE))
            gtv = sitk.ReadImage(str(folder / GTV_FILE))
            inputs.append(config_input(image, gtv, config))
        except Exception as error:  # the patient boundary: one patient never stops the cohort
            failures.append(Failure.from_exception(folder.name, STAGE, error))
            progress(folder.name, perf_counter() - started, failures[-1:])
            continue
        loaded.ids.append(folder.name)
        loaded.n_voxels.append(int(np.count_nonzero(sitk.GetArrayViewFromImage(gtv))))
        loaded.digests.append((image_digest(image), image_digest(gtv)))
        progress(folder.name, perf_counter() - started)
    stacked = np.stack(inputs) if inputs else np.zeros((0, 1, size, size, size), np.float32)
    return loaded._replace(inputs=stacked, failures=failures_frame(failures))


@dataclass
class CohortTraining:
    """The deep-learning stage's results for a cohort."""

    result: TrainResult
    ablation: TrainResult | None
    features: pd.DataFrame
    scores: pd.DataFrame
    failures: pd.DataFrame

    def c_index_table(self) -> pd.DataFrame:
        """Harrell's C-index of each trained network's risk per cohort (the SE ablation)."""

        rows = []
        columns = {"3D-SE-ResNet": "risk_se", "3D-ResNet": "risk_no_se"}
        for model, column in columns.items():
            if column not in self.scores.columns:
                continue
            for split, part in self.scores.groupby(SPLIT_COLUMN):
                usable = part["event"].any() and part[column].nunique() > 1
                rows.append(
                    {
                        "model": model,
                        "cohort": split,
                        "c_index": c_index(
                            time=part["time_days"], event=part["event"], risk=part[column]
                        )
                        if usable
                        else float("nan"),
                        "patients": len(part),
                    }
                )
        return pd.DataFrame(rows, columns=["model", "cohort", "c_index", "patients"])


def _deep_feature_table(
    result: TrainResult, loaded: NetworkInputs, risk: np.ndarray
) -> pd.DataFrame:
    """The network's deep features and risk for every loaded patient, with their provenance
    (torch's version, the network's digest, the image and GTV digests)."""
    shared = {"engine_version": network_engine(), "params_digest": network_digest(result.model)}
    provenance = [provenance_values(**shared, image=i, mask=m) for i, m in loaded.digests]
    features = deep_features(result.model, loaded.inputs)
    return deep_feature_frame(
        loaded.ids, features, loaded.n_voxels, risk=risk, provenance=provenance
    )


def train_cohort(
    volume_roots: Sequence[Path],
    manifest: pd.DataFrame,
    is_train: pd.Series,
    config: TrainConfig,
    *,
    ablation: bool = False,
    checkpoint_dir: Path | None = None,
) -> CohortTraining:
    """Train on the training patients only (validation carved from them), then extract the deep
    features of every patient. ``ablation``: also train the same network without SE, and score
    both (the paper: test C-index 0.74 with SE, 0.65 without)."""
    ids, inputs, voxels, failures, digests = load_inputs(volume_roots, config)
    outcomes = manifest.set_index(manifest["patient_id"].astype(str))
    known = [i for i, p in enumerate(ids) if p in outcomes.index]
    ids, inputs, voxels = [ids[i] for i in known], inputs[known], [voxels[i] for i in known]
    digests = [digests[i] for i in known]
    train_mask = np.array([bool(is_train.get(p, False)) for p in ids])
    time_days = outcomes.loc[ids, "time_days"].to_numpy(np.float32)
    event = outcomes.loc[ids, "event"].to_numpy(bool)
    if train_mask.sum() < 3 or not event[train_mask].any():
        raise ValueError(
            f"{int(train_mask.sum())} training patients with "
            f"{int(event[train_mask].sum())} deaths: too few to train the network"
        )
    fitted: dict[str, TrainResult] = {}
    for se in (True, False) if ablation else (True,):
        run = replace(config, se=se)
        where = None if checkpoint_dir is None else checkpoint_dir / ("se" if se else "no_se")
        name = "3D-SE-ResNet" if se else "3D-ResNet"
        logger.info("training %s on %d patients", name, int(train_mask.sum()))
        fitted["se" if se else "no_se"] = train(
            inputs[train_mask],
            time_days[train_mask],
            event[train_mask],
            run,
            checkpoint_dir=where,
        )
    scores = pd.DataFrame(
        {
            "patient_id": ids,
            SPLIT_COLUMN: np.where(train_mask, "train", "test"),
            "time_days": time_days,
            "event": event.astype(int),
        }
    )
    for key, result in fitted.items():
        # One patient per pass, as serving scores one patient: the same risk to the last bit.
        scores[f"risk_{key}"] = predict_risk(result.model, inputs, batch_size=1)
    loaded = NetworkInputs(ids, inputs, voxels, failures, digests)
    features = _deep_feature_table(fitted["se"], loaded, scores["risk_se"].to_numpy())
    return CohortTraining(
        result=fitted["se"],
        ablation=fitted.get("no_se"),
        features=features,
        scores=scores,
        failures=failures,
    )
