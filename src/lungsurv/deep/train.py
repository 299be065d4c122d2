"""Training the 3D SE-ResNet with a Cox loss, and extracting its 512-d deep features.

The paper's recipe ("Deep learning network training and feature extraction"): Cox negative
partial log-likelihood (torchsurv, Efron ties by default), Adam with learning rate 1e-4 decayed by
0.96 every 1000 steps, an L2 penalty of 1e-4 (Adam's weight decay), batch 32, up to 100 epochs,
early stopping after 15 epochs without a lower validation loss, the validation set carved from
the training cohort and stratified by event. The best epoch is checkpointed, and a run resumes
from its last checkpoint after a preemption.

On CUDA: bf16 autocast, channels-last-3d memory format, cuDNN autotuning, pinned-memory loaders
with worker processes. On CPU the same code runs single-process and deterministically: the same
seed gives the same weights.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from time import perf_counter
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset

from lungsurv.core.layout import CONFIG_FILE, WEIGHTS_FILE
from lungsurv.deep.config import TrainConfig
from lungsurv.deep.features import predict_risk
from lungsurv.deep.network import SEResNet3D, count_parameters, network_for
from lungsurv.deep.transforms import paper_augmentations
from lungsurv.survival.metrics import c_index

LAST_CHECKPOINT = "last.pt"
HISTORY_FILE = "history.parquet"


def cox_loss(
    risk: torch.Tensor, event: torch.Tensor, time: torch.Tensor, *, ties: str = "efron"
) -> torch.Tensor:
    """Cox negative partial log-likelihood of ``risk`` (log relative hazards) per event.

    torchsurv computes the sum (Efron's or Breslow's tie handling); it is divided here by the
    number of events (torchsurv's own ``"mean"`` divides by the number of distinct event times,
    which weighs a batch's tied deaths differently). A batch without an event has no partial
    likelihood: the loss is 0 and still connected to the graph (``backward`` gives zero
    gradients), never NaN.
    """
    import warnings

    from torchsurv.loss.cox import neg_partial_log_likelihood

    risk = risk.reshape(-1).float()
    event = event.reshape(-1).bool()
    if not bool(event.any()) or risk.numel() < 2:
        return risk.sum() * 0.0
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Ties in `time` detected")
        total = neg_partial_log_likelihood(
            risk, event, time.reshape(-1).float(), ties_method=ties, reduction="sum"
        )
    return total / event.sum()


def validation_split(event: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, ...]:
    """(train, validation) row indices, stratified by event."""
    from sklearn.model_selection import train_test_split

    rows = np.arange(len(event))
    stratify = event if min(np.bincount(event.astype(int), minlength=2)) >= 2 else None
    train, validation = train_test_split(
        rows, test_size=fraction, random_state=seed, stratify=stratify
    )
    return np.sort(train), np.sort(validation)


class _Volumes(Dataset):
    def __init__(
        self, inputs: np.ndarray, time: np.ndarray, event: np.ndarray, augment: Any
    ) -> None:
        self.inputs, self.time, self.event, self.augment = inputs, time, event, augment

    def __len__(self) -> int:
        return len(self.inputs)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, float, bool]:
        volume = torch.from_numpy(self.inputs[index])
        if self.augment is not None:
            volume = torch.as_tensor(self.augment(volume)).as_subclass(torch.Tensor)
        return volume.float(), float(self.time[index]), bool(self.event[index])


def _worker_seed(worker_id: int) -> None:
    info = torch.utils.data.get_worker_info()
    dataset = info.dataset  # type: ignore[union-attr]
    if dataset.augment is not None:
        dataset.augment.set_random_state(seed=info.seed % 2**32)  # type: ignore[union-attr]


def _augment_state(augment: Any) -> list[Any]:
    """The random states of a MONAI ``Compose`` and each of its transforms."""
    return [augment.R.get_state()] + [t.R.get_state() for t in augment.transforms]


def _set_augment_state(augment: Any, states: list[Any]) -> None:
    augment.R.set_state(states[0])
    for transform, saved in zip(augment.transforms, states[1:], strict=True):
        transform.R.set_state(saved)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


@dataclass
class TrainResult:
    """The best epoch's network, the per-epoch history, and where things were written."""

    model: SEResNet3D
    history: pd.DataFrame
    best_epoch: int
    config: TrainConfig
    parameters: int
    seconds: float


def train(
    inputs: np.ndarray,
    time: np.ndarray,
    event: np.ndarray,
    config: TrainConfig,
    *,
    checkpoint_dir: Path | None = None,
    log: Callable[[str], None] = print,
) -> TrainResult:
    """Train on ``inputs`` (``(n, 1, s, s, s)`` float32) of the training cohort only; the
    validation set is carved from them. Resumes from ``checkpoint_dir/last.pt`` if present."""

    time, event = np.asarray(time, dtype=np.float32), np.asarray(event, dtype=bool)
    if len(inputs) != len(time) or len(time) != len(event):
        raise ValueError(f"{len(inputs)} inputs, {len(time)} times, {len(event)} events differ")
    device = resolve_device(config.device)
    cuda = device.type == "cuda"
    torch.manual_seed(config.seed)
    np.random.seed(config.seed)
    if cuda:
        torch.backends.cudnn.benchmark = True
    else:
        torch.use_deterministic_algorithms(True, warn_only=True)
    train_rows, validation_rows = validation_split(event, config.validation_fraction, config.seed)
    model = network_for(config).to(device)
    if cuda:
        model = model.to(memory_format=torch.channels_last_3d)
    parameters = count_parameters(model)
    log(f"network: {parameters:,} parameters (se={config.se}), device {device}")
    optimiser = torch.optim.Adam(
        model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
    )
    scheduler = torch.optim.lr_scheduler.StepLR(
        optimiser, step_size=config.lr_decay_steps, gamma=config.lr_decay
    )
    augment = paper_augmentations(seed=config.seed) if config.augment else None
    generator = torch.Generator().manual_seed(config.seed)
    workers = config.num_workers if config.num_workers is not None else (4 if cuda else 0)
    loader = DataLoader(
        _Volumes(inputs[train_rows], time[train_rows], event[train_rows], augment),
        batch_size=config.batch_size,
        shuffle=True,
        generator=generator,
        num_workers=workers,
        pin_memory=cuda,
        worker_init_fn=_worker_seed if workers else None,
        persistent_workers=bool(workers),
    )
    state = {"epoch": 0, "best_loss": math.inf, "best_epoch": 0, "history": []}
    if checkpoint_dir is not None:
        checkpoint_dir.mkdir(parents=True, exist_ok=True)
        last = checkpoint_dir / LAST_CHECKPOINT
        if last.exists():
            saved = torch.load(last, map_location=device, weights_only=False)
            model.load_state_dict(saved["model"])
            optimiser.load_state_dict(saved["optimiser"])
            scheduler.load_state_dict(saved["scheduler"])
            generator.set_state(saved["generator"])
            torch.set_rng_state(saved["torch_rng"])
            if augment is not None:
                _set_augment_state(augment, saved["augment_rng"])
            state = saved["state"]
            log(f"resumed from {last} after epoch {state['epoch']}")
    best_weights = {k: v.detach().clone() for k, v in model.state_dict().items()}
    if checkpoint_dir is not None and (checkpoint_dir / WEIGHTS_FILE).exists():
        best_weights = torch.load(checkpoint_dir / WEIGHTS_FILE, map_location=device)
    started = perf_counter()
    while state["epoch"] < config.max_epochs:
        epoch = state["epoch"] + 1
        model.train()
        losses = []
        for volumes, times, events in loader:
            volumes = volumes.to(device, non_blocking=cuda)
            if cuda:
                volumes = volumes.to(memory_format=torch.channels_last_3d)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
                risk = model(volumes)
            loss = cox_loss(risk.float(), events.to(device), times.to(device), ties=config.ties)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            scheduler.step()
            losses.append(float(loss.detach()))
        validation_risk = predict_risk(model, inputs[validation_rows], device=device)
        validation_loss = float(
            cox_loss(
                torch.from_numpy(validation_risk),
                torch.from_numpy(event[validation_rows]),
                torch.from_numpy(time[validation_rows]),
                ties=config.ties,
            )
        )
        has_events = event[validation_rows].any() and np.ptp(validation_risk) > 0
        validation_c = (
            c_index(time[validation_rows], event[validation_rows], validation_risk)
            if has_events
            else float("nan")
        )
        state["history"].append(
            {
                "epoch": epoch,
                "train_loss": float(np.mean(losses)) if losses else float("nan"),
                "validation_loss": validation_loss,
                "validation_c_index": validation_c,
                "learning_rate": float(scheduler.get_last_lr()[0]),
            }
        )
        state["epoch"] = epoch
        improved = validation_loss < state["best_loss"]
        if improved:
            state["best_loss"], state["best_epoch"] = validation_loss, epoch
            best_weights = {k: v.detach().clone() for k, v in model.state_dict().items()}
        log(
            f"epoch {epoch}: train loss {state['history'][-1]['train_loss']:.4f}, "
            f"validation loss {validation_loss:.4f}, C-index {validation_c:.3f}"
            + (" (best)" if improved else "")
        )
        if checkpoint_dir is not None:
            if improved:
                torch.save(best_weights, checkpoint_dir / WEIGHTS_FILE)
            torch.save(
                {
                    "model": model.state_dict(),
                    "optimiser": optimiser.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "generator": generator.get_state(),
                    "torch_rng": torch.get_rng_state(),
                    "augment_rng": _augment_state(augment) if augment is not None else None,
                    "state": state,
                },
                checkpoint_dir / LAST_CHECKPOINT,
            )
        if epoch - state["best_epoch"] >= config.patience:
            log(f"early stop: no lower validation loss for {config.patience} epochs")
            break
    model.load_state_dict(best_weights)
    return TrainResult(
        model=model,
        history=pd.DataFrame(state["history"]),
        best_epoch=int(state["best_epoch"]),
        config=config,
        parameters=parameters,
        seconds=perf_counter() - started,
    )


def save_model(result: TrainResult, folder: Path) -> Path:
    """``model.pt`` (weights), ``config.json`` and ``history.parquet`` in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(result.model.state_dict(), folder / WEIGHTS_FILE)
    document = {
        "config": asdict(result.config),
        "parameters": result.parameters,
        "best_epoch": result.best_epoch,
        "seconds": result.seconds,
        "torch": torch.__version__,
    }
    (folder / CONFIG_FILE).write_text(json.dumps(document, indent=1))
    result.history.to_parquet(folder / HISTORY_FILE, index=False)
    return folder


def load_model(folder: Path, *, device: str = "cpu") -> tuple[SEResNet3D, TrainConfig]:
    """The network saved by :func:`save_model`, in eval mode."""
    document = json.loads((folder / CONFIG_FILE).read_text())
    config = TrainConfig(**document["config"])
    model = network_for(config)
    model.load_state_dict(torch.load(folder / WEIGHTS_FILE, map_location=device))
    return model.eval(), config
