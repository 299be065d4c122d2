"""What a trained 3D SE-ResNet gives: risks and 512-d deep features, one patient per pass.

One patient per forward pass in evaluation mode, so a patient's features do not depend on which
other patients share its batch (serving computes exactly what the pipeline did).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from lungsurv.core.layout import DL_RISK_FEATURE, DL_ROI, PROVENANCE_COLUMNS
from lungsurv.core.provenance import DIGEST_HEX
from lungsurv.deep.network import SEResNet3D


@torch.no_grad()
def _batched(
    model: SEResNet3D,
    inputs: np.ndarray,
    method: Callable[[torch.Tensor], torch.Tensor],
    device: torch.device,
    batch_size: int,
) -> np.ndarray:
    model.eval()
    outputs = []
    for start in range(0, len(inputs), batch_size):
        batch = torch.from_numpy(np.ascontiguousarray(inputs[start : start + batch_size]))
        batch = batch.to(device)
        if device.type == "cuda":
            batch = batch.to(memory_format=torch.channels_last_3d)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            outputs.append(method(batch).float().cpu().numpy())
    return np.concatenate(outputs) if outputs else np.zeros((0, 1), np.float32)


def predict_risk(
    model: SEResNet3D, inputs: np.ndarray, *, device: torch.device | None = None, batch_size=16
) -> np.ndarray:
    """The network's risk (tanh output) per input, shape (n,)."""
    device = device or next(model.parameters()).device
    return _batched(model, inputs, model, device, batch_size).reshape(-1)


def deep_features(
    model: SEResNet3D, inputs: np.ndarray, *, device: torch.device | None = None, batch_size=1
) -> np.ndarray:
    """The global-average-pooled deep features per input, shape (n, 512).

    One patient per forward pass by default: convolution kernels round differently for
    different batch sizes (2.8e-7 in a risk, measured), and a patient's features must not depend
    on which patients share the batch, so serving one patient reproduces the pipeline exactly.
    """
    device = device or next(model.parameters()).device
    return _batched(model, inputs, model.features, device, batch_size)


def deep_feature_frame(
    patient_ids: Sequence[str],
    features: np.ndarray,
    n_voxels: Sequence[int],
    risk: np.ndarray | None = None,
    *,
    provenance: Sequence[Mapping[str, str]] | None = None,
) -> pd.DataFrame:
    """Deep features in the radiomics table's schema: ``patient_id, roi ("dl"), n_voxels,
    dl_000 ... dl_511``, so select-features treats them as one more block; with ``risk`` (the
    network's output, :func:`predict_risk` one patient per pass) also ``dl_risk``; with
    ``provenance`` (one row's :func:`~lungsurv.core.provenance.provenance_values` per patient)
    the provenance columns after the ids."""
    columns = [f"dl_{i:03d}" for i in range(features.shape[1])]
    frame = pd.DataFrame(np.asarray(features, dtype=float), columns=columns)
    if risk is not None:
        frame[DL_RISK_FEATURE] = np.asarray(risk, dtype=float).reshape(-1)
    if provenance is not None:
        if len(provenance) != len(frame):
            raise ValueError(f"{len(provenance)} provenance rows for {len(frame)} patients")
        known = pd.DataFrame(list(provenance), columns=list(PROVENANCE_COLUMNS))
        frame = pd.concat([known, frame], axis=1)
    frame.insert(0, "n_voxels", np.asarray(n_voxels, dtype=int))
    frame.insert(0, "roi", DL_ROI)
    frame.insert(0, "patient_id", [str(p) for p in patient_ids])
    return frame


def network_engine() -> str:
    """The deep features' engine and its version, as their rows' provenance records it."""
    # Without the local build tag: a CUDA build trains, a CPU build serves the same network.
    return f"torch {str(torch.__version__).split('+')[0]}"


def network_digest(model: SEResNet3D) -> str:
    """A digest of the trained network (every parameter and buffer, by name): the deep
    features' "parameter set"."""
    hasher = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        values = tensor.detach().cpu().contiguous().reshape(-1)  # 0-d buffers too
        hasher.update(f"{name}:{values.dtype}:{tuple(tensor.shape)};".encode())
        hasher.update(values.view(torch.uint8).numpy().tobytes() if values.numel() else b"")
    return hasher.hexdigest()[:DIGEST_HEX]
