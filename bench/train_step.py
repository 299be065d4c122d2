"""Training throughput of the paper's 3D SE-ResNet: samples per second at batch 32, 64^3, and
the share of the chip's peak that this is.

    .venv/bin/python bench/train_step.py [--steps 3] [--batch 32] [--size 64] [--peak-tflops T]

One training step = forward, Cox loss, backward and an Adam step, exactly as
``lungsurv.deep.train.train`` does it (augmentation excluded: it runs in the loader's workers).
On CPU: fp32. On CUDA: fp32 and bf16 autocast, channels-last-3d, cuDNN autotuning. One warm-up
step first; prints samples/s per precision, the peak GPU memory, the network's FLOPs per sample
(forward and backward, torch's ``FlopCounterMode``), the FLOP/s reached and their fraction of the
chip's peak: for a known GPU its dense bf16 peak (:data:`BF16_PEAK_TFLOPS`), on a CPU an
estimate from its cores, clock and vector width (fp32 FMA), or ``--peak-tflops``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

#: Dense (no sparsity) bf16 tensor-core peaks in TFLOP/s, from the vendors' data sheets, by a
#: part of the name torch reports; the first match wins (more specific names first).
BF16_PEAK_TFLOPS = (
    ("H100 PCIe", 756.0),
    ("H100 NVL", 835.0),
    ("H100", 989.0),  # SXM
    ("H200", 989.0),
    ("GH200", 989.0),
    ("B200", 2250.0),
    ("A100", 312.0),
    ("L40S", 362.0),
    ("L4", 121.0),
    ("A10G", 70.0),
)


def flops_per_sample(size: int) -> float:
    """Forward plus backward FLOPs of one sample through the network (a Cox loss on a batch of
    two, divided by two: the loss needs pairs)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from lungsurv.deep.network import SEResNet3D
    from lungsurv.deep.train import cox_loss

    model = SEResNet3D()
    volumes = torch.randn(2, 1, size, size, size)
    counter = FlopCounterMode(display=False)
    with counter:
        risk = model(volumes)
        cox_loss(risk.float(), torch.tensor([True, True]), torch.tensor([1.0, 2.0])).backward()
    return counter.get_total_flops() / 2


def cpu_peak_tflops() -> float:
    """An fp32 peak estimate for this CPU: cores x max clock x FLOPs per cycle (two FMA units of
    16 lanes with AVX-512, 8 with AVX2, 4 otherwise; an FMA is two FLOPs)."""
    import os

    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    flags = next((line for line in info.splitlines() if line.startswith("flags")), "")
    lanes = 16 if " avx512f" in flags else 8 if " avx2" in flags else 4
    clocks = [float(line.split(":")[1]) for line in info.splitlines() if line.startswith("cpu MHz")]
    ghz = max(clocks, default=2000.0) / 1000
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return (cores or 1) * ghz * 2 * lanes * 2 / 1000


def peak_tflops(device: str, name: str, given: float | None) -> tuple[float | None, str]:
    """The peak to compare with and what it is."""
    if given:
        return given, "given"
    if device == "cpu":
        return cpu_peak_tflops(), "fp32 estimate"
    for part, tflops in BF16_PEAK_TFLOPS:
        if part in name:
            return tflops, f"{part} dense bf16"
    return None, "unknown chip: pass --peak-tflops"


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
    parser.add_argument(
        "--peak-tflops", type=float, help="the chip's peak (default: known/estimated)"
    )
    args = parser.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    name = (
        torch.cuda.get_device_name()
        if device == "cuda"
        else f"CPU, {torch.get_num_threads()} threads"
    )
    print(f"3D SE-ResNet training step, batch {args.batch}, {args.size}^3, on {name}")
    if device == "cpu":
        print("  no GPU here: fp32 only, against an estimate of this CPU's fp32 peak")
    flops = flops_per_sample(args.size)
    peak, what = peak_tflops(device, name, args.peak_tflops)
    print(
        f"  {flops / 1e9:.1f} GFLOP per sample (forward + backward); "
        f"peak {peak or 0:.1f} TFLOP/s ({what})"
    )
    for bf16 in (False, True) if device == "cuda" else (False,):
        rate, memory_gib = measure(device, bf16, args.batch, args.size, args.steps)
        memory = f", peak GPU memory {memory_gib:.1f} GiB" if device == "cuda" else ""
        reached = rate * flops / 1e12
        share = f", {100 * reached / peak:.1f} % of peak" if peak else ""
        print(
            f"  {'bf16' if bf16 else 'fp32'}: {rate:8.1f} samples/s, {reached:.2f} TFLOP/s"
            f"{share}{memory}"
        )


if __name__ == "__main__":
    main()
