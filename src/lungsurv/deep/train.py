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
import logging
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from time import perf_counter
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset

from lungsurv.core.layout import CONFIG_FILE, HISTORY_FILE, WEIGHTS_FILE
from lungsurv.deep.config import TrainConfig
from lungsurv.deep.features import predict_risk
from lungsurv.deep.network import SEResNet3D, count_parameters, network_for
from lungsurv.deep.transforms import paper_augmentations
from lungsurv.survival.metrics import c_index

logger = logging.getLogger(__name__)

LAST_CHECKPOINT = "last.pt"


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
) -> TrainResult:
    """Train on ``inputs`` (``(n, 1, s, s, s)`` float32) of the training cohort only; the
    validation set is carved from them. Resumes from ``checkpoint_dir/last.pt`` if present.
    Logs one line per epoch (losses, validation C-index, learning rate, seconds)."""
    time, event = np.asarray(time, dtype=np.float32), np.asarray(event, dtype=bool)
    if len(inputs) != len(time) or len(time) != len(event):
        raise ValueError(f"{len(inputs)} inputs, {len(time)} times, {len(event)} events differ")
    run = _Run.start(inputs, time, event, config)
    if checkpoint_dir is not None:
        run.resume(checkpoint_dir)
    started = perf_counter()
    while run.state["epoch"] < config.max_epochs:
        epoch_started = perf_counter()
        improved = run.epoch()
        _log_epoch(run.state["history"][-1], improved, perf_counter() - epoch_started, config)
        if checkpoint_dir is not None:
            run.checkpoint(checkpoint_dir, improved)
        if run.state["epoch"] - run.state["best_epoch"] >= config.patience:
            logger.info("early stop: no lower validation loss for %d epochs", config.patience)
            break
    run.model.load_state_dict(run.best_weights)
    return TrainResult(
        model=run.model,
        history=pd.DataFrame(run.state["history"]),
        best_epoch=int(run.state["best_epoch"]),
        config=config,
        parameters=run.parameters,
        seconds=perf_counter() - started,
    )


def _log_epoch(row: dict[str, float], improved: bool, seconds: float, config: TrainConfig) -> None:
    logger.info(
        "epoch %d/%d: train loss %.4f, validation loss %.4f, validation C-index %.3f, "
        "learning rate %.2e, %.1f s%s",
        row["epoch"],
        config.max_epochs,
        row["train_loss"],
        row["validation_loss"],
        row["validation_c_index"],
        row["learning_rate"],
        seconds,
        " (best)" if improved else "",
    )


@dataclass
class _Run:
    """One training run's moving parts: the network, optimiser, schedule, random states, the
    loader of the training rows, the validation rows, and the progress so far."""

    config: TrainConfig
    device: torch.device
    model: SEResNet3D
    parameters: int
    optimiser: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.StepLR
    augment: Any
    generator: torch.Generator
    loader: DataLoader
    validation: tuple[np.ndarray, np.ndarray, np.ndarray]
    state: dict[str, Any]
    best_weights: dict[str, torch.Tensor]

    @classmethod
    def start(
        cls, inputs: np.ndarray, time: np.ndarray, event: np.ndarray, config: TrainConfig
    ) -> _Run:
        """Seeded set-up (the order of the random draws is part of reproducibility)."""
        device = resolve_device(config.device)
        cuda = device.type == "cuda"
        torch.manual_seed(config.seed)
        np.random.seed(config.seed)
        if cuda:
            torch.backends.cudnn.benchmark = True
        else:
            torch.use_deterministic_algorithms(True, warn_only=True)
        train_rows, validation_rows = validation_split(
            event, config.validation_fraction, config.seed
        )
        model = network_for(config).to(device)
        if cuda:
            model = model.to(memory_format=torch.channels_last_3d)
        parameters = count_parameters(model)
        logger.info(
            "network: %s parameters (se=%s), device %s; %d training and %d validation patients",
            f"{parameters:,}",
            config.se,
            device,
            len(train_rows),
            len(validation_rows),
        )
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
            # A last batch of one patient has no batch statistics (BatchNorm refuses it) and
            # no pair to rank: drop it; any larger remainder is kept.
            drop_last=len(train_rows) % config.batch_size == 1,
            generator=generator,
            num_workers=workers,
            pin_memory=cuda,
            worker_init_fn=_worker_seed if workers else None,
            persistent_workers=bool(workers),
        )
        validation = (inputs[validation_rows], time[validation_rows], event[validation_rows])
        return cls(
            config=config,
            device=device,
            model=model,
            parameters=parameters,
            optimiser=optimiser,
            scheduler=scheduler,
            augment=augment,
            generator=generator,
            loader=loader,
            validation=validation,
            state={"epoch": 0, "best_loss": math.inf, "best_epoch": 0, "history": []},
            best_weights={k: v.detach().clone() for k, v in model.state_dict().items()},
        )

    def resume(self, checkpoint_dir: Path) -> None:
        """Continue from ``checkpoint_dir/last.pt`` (and its best weights) when they exist."""
        checkpoint_dir.mkdir(parents=True, exist_ok=True)
        last = checkpoint_dir / LAST_CHECKPOINT
        if last.exists():
            saved = torch.load(last, map_location=self.device, weights_only=False)
            self.model.load_state_dict(saved["model"])
            self.optimiser.load_state_dict(saved["optimiser"])
            self.scheduler.load_state_dict(saved["scheduler"])
            self.generator.set_state(saved["generator"])
            torch.set_rng_state(saved["torch_rng"])
            if self.augment is not None:
                _set_augment_state(self.augment, saved["augment_rng"])
            self.state = saved["state"]
            logger.info("resumed from %s after epoch %d", last, self.state["epoch"])
            self.best_weights = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        if (checkpoint_dir / WEIGHTS_FILE).exists():
            self.best_weights = torch.load(checkpoint_dir / WEIGHTS_FILE, map_location=self.device)

    def epoch(self) -> bool:
        """One pass over the training rows, then the validation loss and C-index; True when the
        validation loss is the lowest so far (those weights are kept)."""
        config, device = self.config, self.device
        cuda = device.type == "cuda"
        self.model.train()
        losses = []
        for volumes, times, events in self.loader:
            volumes = volumes.to(device, non_blocking=cuda)
            if cuda:
                volumes = volumes.to(memory_format=torch.channels_last_3d)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
                risk = self.model(volumes)
            loss = cox_loss(risk.float(), events.to(device), times.to(device), ties=config.ties)
            self.optimiser.zero_grad(set_to_none=True)
            loss.backward()
            self.optimiser.step()
            self.scheduler.step()
            losses.append(float(loss.detach()))
        validation_loss, validation_c = self._validate()
        epoch = self.state["epoch"] + 1
        self.state["history"].append(
            {
                "epoch": epoch,
                "train_loss": float(np.mean(losses)) if losses else float("nan"),
                "validation_loss": validation_loss,
                "validation_c_index": validation_c,
                "learning_rate": float(self.scheduler.get_last_lr()[0]),
            }
        )
        self.state["epoch"] = epoch
        improved = validation_loss < self.state["best_loss"]
        if improved:
            self.state["best_loss"], self.state["best_epoch"] = validation_loss, epoch
            self.best_weights = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        return improved

    def _validate(self) -> tuple[float, float]:
        inputs, time, event = self.validation
        risk = predict_risk(self.model, inputs, device=self.device)
        loss = float(
            cox_loss(
                torch.from_numpy(risk),
                torch.from_numpy(event),
                torch.from_numpy(time),
                ties=self.config.ties,
            )
        )
        has_events = event.any() and np.ptp(risk) > 0
        return loss, (c_index(time=time, event=event, risk=risk) if has_events else float("nan"))

    def checkpoint(self, checkpoint_dir: Path, improved: bool) -> None:
        """The best weights (when they changed) and everything a resumed run needs."""
        if improved:
            torch.save(self.best_weights, checkpoint_dir / WEIGHTS_FILE)
        torch.save(
            {
                "model": self.model.state_dict(),
                "optimiser": self.optimiser.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "generator": self.generator.get_state(),
                "torch_rng": torch.get_rng_state(),
                "augment_rng": _augment_state(self.augment) if self.augment is not None else None,
                "state": self.state,
            },
            checkpoint_dir / LAST_CHECKPOINT,
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
