"""Training the 3D SE-ResNet: the Cox loss, the validation split, learning, seeding, resuming."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from lungsurv.deep.config import TrainConfig
from lungsurv.deep.features import deep_feature_frame, deep_features, predict_risk
from lungsurv.deep.train import (
    cox_loss,
    load_model,
    save_model,
    train,
    validation_split,
)


def _efron_nll(risk: np.ndarray, time: np.ndarray, event: np.ndarray) -> float:
    """Negative Efron partial log-likelihood, from its textbook definition, per event."""
    total = 0.0
    for t in np.unique(time[event]):
        tied = event & (time == t)
        d = tied.sum()
        at_risk = np.exp(risk[time >= t]).sum()
        tied_sum = np.exp(risk[tied]).sum()
        total += risk[tied].sum()
        total -= sum(np.log(at_risk - k / d * tied_sum) for k in range(d))
    return -total / event.sum()


def _breslow_nll(risk: np.ndarray, time: np.ndarray, event: np.ndarray) -> float:
    events = np.flatnonzero(event)
    total = sum(risk[i] - np.log(np.exp(risk[time >= time[i]]).sum()) for i in events)
    return -total / event.sum()


def test_cox_loss_equals_the_partial_likelihood_with_ties() -> None:
    risk = np.array([0.3, -0.2, 0.8, 0.1, -0.5, 0.4, 0.0, 0.6])
    time = np.array([5.0, 3.0, 3.0, 8.0, 3.0, 5.0, 9.0, 1.0])
    event = np.array([1, 1, 1, 0, 0, 1, 1, 0], dtype=bool)
    args = (torch.tensor(risk), torch.tensor(event), torch.tensor(time))
    assert float(cox_loss(*args, ties="efron")) == pytest.approx(_efron_nll(risk, time, event))
    assert float(cox_loss(*args, ties="breslow")) == pytest.approx(_breslow_nll(risk, time, event))
    # lifelines agrees: its log-likelihood at a fixed coefficient on a one-column design.
    import pandas as pd
    from lifelines import CoxPHFitter

    frame = pd.DataFrame({"x": risk, "T": time, "E": event.astype(int)})
    fitter = CoxPHFitter().fit(frame, "T", "E")
    beta = float(fitter.params_["x"])
    efron = _efron_nll(beta * risk, time, event) * event.sum()
    assert -efron == pytest.approx(fitter.log_likelihood_, rel=1e-6)


def test_a_batch_without_events_gives_zero_loss_and_finite_gradients() -> None:
    risk = torch.tensor([0.2, -0.1, 0.4], requires_grad=True)
    loss = cox_loss(risk, torch.zeros(3, dtype=torch.bool), torch.tensor([1.0, 2.0, 3.0]))
    loss.backward()
    assert float(loss.detach()) == 0.0 and torch.equal(risk.grad, torch.zeros(3))


def test_validation_split_is_stratified_by_event() -> None:
    event = np.array([1] * 30 + [0] * 10, dtype=bool)
    train_rows, validation_rows = validation_split(event, 0.2, seed=3)
    assert len(validation_rows) == 8 and not set(train_rows) & set(validation_rows)
    assert event[validation_rows].sum() == 6


@pytest.mark.parametrize(
    ("change", "message"),
    [({"ties": "exact"}, "'exact'"), ({"validation_fraction": 1.0}, "1.0"), ({"patience": 0}, "0")],
)
def test_invalid_config_names_the_value(change: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TrainConfig(**change)


def _synthetic(n: int, size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Spheres whose radius sets the hazard, in noise; z-scored like the real inputs."""
    rng = np.random.default_rng(seed)
    z, y, x = np.mgrid[:size, :size, :size] - (size - 1) / 2
    distance = np.sqrt(z**2 + y**2 + x**2)
    radius = rng.uniform(size / 8, size / 2.4, n)
    volumes = np.stack(
        [2.0 * (distance <= r) + rng.normal(0, 0.5, distance.shape) for r in radius]
    )[:, None]
    volumes = (volumes - volumes.mean(axis=(1, 2, 3, 4), keepdims=True)) / volumes.std(
        axis=(1, 2, 3, 4), keepdims=True
    )
    eta = 1.5 * (radius - radius.mean()) / radius.std()
    time = rng.exponential(np.exp(-eta)) * 500 + 1
    censor = rng.uniform(100, 2000, n)
    return volumes.astype(np.float32), np.minimum(time, censor), time <= censor


SMALL = TrainConfig(
    input_size=24,
    channels=(8, 16, 32, 64),
    se_reduction=4,
    head=(32, 16),
    dropout=0.1,
    batch_size=16,
    max_epochs=8,
    patience=8,
    learning_rate=1e-3,
    seed=0,
)


@pytest.mark.slow
def test_a_short_cpu_run_learns_tumour_size() -> None:
    """The paper's recipe in a reduced configuration (same code path): the validation loss
    falls and the validation C-index is clearly above chance."""
    volumes, time, event = _synthetic(160, 24)
    result = train(volumes, time, event, SMALL)
    history = result.history
    print(history.to_string(index=False))
    best = history.loc[history["epoch"] == result.best_epoch].iloc[0]
    assert best["validation_loss"] < history["validation_loss"].iloc[0] - 0.1
    assert best["validation_c_index"] > 0.65
    assert result.seconds < 120


TINY = replace(
    SMALL, input_size=16, channels=(4, 8), se_reduction=2, head=(8,), batch_size=8, max_epochs=2
)


def _weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_same_seed_same_weights_and_resume_after_preemption(tmp_path: Path) -> None:
    volumes, time, event = _synthetic(40, 16, seed=1)
    first = _weights(train(volumes, time, event, TINY).model)
    second = _weights(train(volumes, time, event, TINY).model)
    assert all(torch.equal(first[k], second[k]) for k in first)
    straight = train(volumes, time, event, replace(TINY, patience=99))
    # Preempted after epoch 1, then resumed from the checkpoint up to epoch 2.
    one = replace(TINY, max_epochs=1, patience=99)
    train(volumes, time, event, one, checkpoint_dir=tmp_path)
    two = replace(TINY, patience=99)
    resumed = train(volumes, time, event, two, checkpoint_dir=tmp_path)
    assert list(resumed.history["epoch"]) == [1, 2]
    assert np.allclose(resumed.history["train_loss"], straight.history["train_loss"])
    assert resumed.best_epoch == straight.best_epoch
    final = _weights(resumed.model)
    reference = _weights(straight.model)
    assert all(torch.equal(final[k], reference[k]) for k in final)


def test_saved_model_scores_and_features_like_the_trained_one(tmp_path: Path) -> None:
    volumes, time, event = _synthetic(24, 16, seed=2)
    result = train(volumes, time, event, replace(TINY, max_epochs=1))
    loaded, config = load_model(save_model(result, tmp_path / "model"))
    assert config == result.config
    assert np.array_equal(predict_risk(loaded, volumes), predict_risk(result.model, volumes))
    features = deep_features(loaded, volumes)
    assert features.shape == (24, 8)
    frame = deep_feature_frame([f"P{i}" for i in range(24)], features, [100] * 24)
    assert list(frame.columns[:4]) == ["patient_id", "roi", "n_voxels", "dl_000"]
    assert set(frame["roi"]) == {"dl"} and frame.shape == (24, 3 + 8)
    # The network's risk beside its features: one patient per pass, as serving computes it.
    risk = predict_risk(loaded, volumes, batch_size=1)
    with_risk = deep_feature_frame([f"P{i}" for i in range(24)], features, [100] * 24, risk=risk)
    assert list(with_risk.columns[-2:]) == ["dl_007", "dl_risk"]
    assert np.array_equal(with_risk["dl_risk"], risk.astype(float))
    one = np.concatenate([predict_risk(loaded, volumes[i : i + 1]) for i in range(24)])
    assert np.array_equal(one, risk)


def test_loader_workers_seed_their_augmentations() -> None:
    """The GPU path's worker processes (exercised here on CPU) repeat for the same seed."""
    volumes, time, event = _synthetic(24, 16, seed=3)
    config = replace(TINY, max_epochs=1, num_workers=2)
    first = _weights(train(volumes, time, event, config).model)
    again = _weights(train(volumes, time, event, config).model)
    assert all(torch.equal(first[k], again[k]) for k in first)


def test_a_last_batch_of_one_patient_is_dropped_not_fatal() -> None:
    """Batches of 8 over 9 training patients leave one over: with the four stages shrinking a
    32^3 input to 1 voxel, BatchNorm has a single value per channel and cannot train on it.
    That batch is dropped; a remainder of two or more is kept."""
    from lungsurv.deep.train import validation_split

    config = replace(TINY, input_size=32, channels=(4, 4, 4, 4), max_epochs=1)
    volumes, time, event = _synthetic(40, 32)
    for n in range(10, 16):  # the sizes whose training part leaves a remainder of one
        train_rows, _ = validation_split(event[:n], config.validation_fraction, config.seed)
        if len(train_rows) % config.batch_size == 1:
            result = train(volumes[:n], time[:n], event[:n], config)
            assert np.isfinite(result.history["train_loss"]).all()
            break
    else:
        pytest.fail("no cohort size between 10 and 15 leaves one patient over")
