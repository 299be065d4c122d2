"""Training throughput of the paper's 3D SE-ResNet: samples per second at batch 32, 64^3.

    .venv/bin/python bench/train_step.py [--steps 3] [--batch 32] [--size 64]

One training step = forward, Cox loss, backward and an Adam step, exactly as
``lungsurv.deep.train.train`` does it (augmentation excluded: it runs in the loader's workers).
On CPU: fp32. On CUDA: fp32 and bf16 autocast, channels-last-3d, cuDNN autotuning. One warm-up
step first; prints samples/s per precision and the peak GPU memory.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]


def measure(device: str, bf16: bool, batch: int, size: int, steps: int) -> tuple[float, float]:
    import torch

    from lungsurv.deep.network import SEResNet3D
    from lungsurv.deep.train import cox_loss

    torch.manual_seed(0)
    cuda = device == "cuda"
    model = SEResNet3D().to(device)
    if cuda:
        torch.backends.cudnn.benchmark = True
        model = model.to(memory_format=torch.channels_last_3d)
        torch.cuda.reset_peak_memory_stats()
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-4, weight_decay=1e-4)
    volumes = torch.randn(batch, 1, size, size, size, device=device)
    if cuda:
        volumes = volumes.to(memory_format=torch.channels_last_3d)
    time_days = torch.rand(batch, device=device) * 1000 + 1
    event = torch.rand(batch, device=device) < 0.7

    def step() -> None:
        with torch.autocast(device, dtype=torch.bfloat16, enabled=bf16):
            risk = model(volumes)
        loss = cox_loss(risk.float(), event, time_days)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()

    step()  # warm-up (cuDNN autotuning, allocator)
    if cuda:
        torch.cuda.synchronize()
    started = time.perf_counter()
    for _ in range(steps):
        step()
    if cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else float("nan")
    return batch * steps / seconds, peak


def main() -> None:
    import torch

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--size", type=int, default=64)
    args = parser.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    name = (
        torch.cuda.get_device_name()
        if device == "cuda"
        else f"CPU, {torch.get_num_threads()} threads"
    )
    print(f"3D SE-ResNet training step, batch {args.batch}, {args.size}^3, on {name}")
    for bf16 in (False, True) if device == "cuda" else (False,):
        rate, peak = measure(device, bf16, args.batch, args.size, args.steps)
        memory = f", peak GPU memory {peak:.1f} GiB" if device == "cuda" else ""
        print(f"  {'bf16' if bf16 else 'fp32'}: {rate:8.1f} samples/s{memory}")


if __name__ == "__main__":
    main()
