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
    func: Callable[[Item], Result], items: Iterable[Item], *, workers: int = 1
) -> list[Result]:
    """``[func(item) for item in items]``, spread over ``workers`` processes when above 1.

    Processes are spawned, not forked: ITK's thread pool in the parent must not be copied into a
    child mid-flight. ``func`` must be a module-level function and must not raise for one patient
    (it returns that patient's failure instead).
    """
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    batch: Sequence[Item] = list(items)
    if workers == 1 or len(batch) < 2:
        return [func(item) for item in batch]
    context = multiprocessing.get_context("spawn")
    processes = min(workers, len(batch))
    # Each process gets its share of the cores for ITK's own threads, not all of them: N
    # processes x all-core thread pools oversubscribe the machine.
    threads = max(1, (os.cpu_count() or 1) // processes)
    with ProcessPoolExecutor(
        processes, mp_context=context, initializer=_limit_threads, initargs=(threads,)
    ) as pool:
        return list(pool.map(func, batch))


def _limit_threads(threads: int) -> None:
    import SimpleITK as sitk

    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(threads)
