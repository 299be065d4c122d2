"""Patients in parallel across processes, in input order."""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


def map_patients(
    func: Callable[[Item], Result],
    items: Iterable[Item],
    *,
    workers: int = 1,
    costs: Sequence[float] | None = None,
) -> list[Result]:
    """``[func(item) for item in items]``, spread over ``workers`` processes when above 1.

    Processes are spawned, not forked: ITK's thread pool in the parent must not be copied into a
    child mid-flight. ``func`` must be a module-level function and must not raise for one patient
    (it returns that patient's failure instead). ``costs`` (one estimate per item) starts the
    costliest items first, so no large patient is left running alone at the end; results come
    back in input order either way.
    """
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    batch: Sequence[Item] = list(items)
    if costs is not None and len(costs) != len(batch):
        raise ValueError(f"costs has {len(costs)} values for {len(batch)} items")
    if workers == 1 or len(batch) < 2:
        return [func(item) for item in batch]
    order = (
        sorted(range(len(batch)), key=lambda i: -costs[i])
        if costs is not None
        else list(range(len(batch)))
    )
    context = multiprocessing.get_context("spawn")
    processes = min(workers, len(batch))
    # Each process gets its share of the cores for ITK's own threads, not all of them: N
    # processes x all-core thread pools oversubscribe the machine.
    threads = max(1, (os.cpu_count() or 1) // processes)
    with ProcessPoolExecutor(
        processes, mp_context=context, initializer=_limit_threads, initargs=(threads,)
    ) as pool:
        done = list(pool.map(func, [batch[i] for i in order]))
    results: list[Result] = [None] * len(batch)  # type: ignore[list-item]
    for position, result in zip(order, done, strict=True):
        results[position] = result
    return results


def _limit_threads(threads: int) -> None:
    import SimpleITK as sitk

    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(threads)
