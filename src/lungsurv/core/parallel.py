"""Patients in parallel across processes, in input order, reporting each one as it finishes."""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import (
    FIRST_COMPLETED,
    Executor,
    Future,
    ProcessPoolExecutor,
    ThreadPoolExecutor,
    wait,
)
from functools import partial
from time import perf_counter
from typing import Any, TypeVar

import SimpleITK as sitk

Item = TypeVar("Item")
Result = TypeVar("Result")
#: Called in the calling process as each item finishes: (its index in ``items``, result, seconds).
OnResult = Callable[[int, Result, float], None]


def map_patients(
    func: Callable[[Item], Result],
    items: Iterable[Item],
    *,
    workers: int = 1,
    costs: Sequence[float] | None = None,
    on_result: OnResult | None = None,
) -> list[Result]:
    """``[func(item) for item in items]``, spread over ``workers`` processes when above 1.

    This process works through the items too, beside ``workers - 1`` processes spawned, not
    forked (ITK's thread pool in the parent must not be copied into a child mid-flight).
    ``func`` must be a module-level function and must not raise for one patient (it returns
    that patient's failure instead). ``costs`` (one estimate per item) starts the costliest
    items first, so no large patient is left running alone at the end; results come back in
    input order either way. ``on_result`` hears of each item as it finishes (progress).
    """
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    batch: Sequence[Item] = list(items)
    if costs is not None and len(costs) != len(batch):
        raise ValueError(f"costs has {len(costs)} values for {len(batch)} items")
    report = on_result or (lambda index, result, seconds: None)
    timed = partial(_timed, func)
    results: list[Result] = [None] * len(batch)  # type: ignore[list-item]
    if workers == 1 or len(batch) < 2:
        for index, item in enumerate(batch):
            results[index], seconds = timed(item)
            report(index, results[index], seconds)
        return results
    order = (
        sorted(range(len(batch)), key=lambda i: -costs[i])
        if costs is not None
        else list(range(len(batch)))
    )
    _run_spread(timed, batch, order, min(workers, len(batch)), results, report)
    return results


def _run_spread(
    timed: Callable[[Item], tuple[Result, float]],
    batch: Sequence[Item],
    order: list[int],
    processes: int,
    results: list[Result],
    report: OnResult,
) -> None:
    """``processes`` workers: this process (in a thread, since it has imported everything and
    starts at once) and ``processes - 1`` spawned ones (each first imports its stack, 1-2 s that
    a short stage does not amortise). Each worker takes the next item in ``order`` as it frees."""
    # Each process gets its share of the cores for ITK's own threads, not all of them: N
    # processes x all-core thread pools oversubscribe the machine.
    threads = max(1, (os.cpu_count() or 1) // processes)
    pending = iter(order)
    in_flight: dict[Future[Any], tuple[int | None, Executor]] = {}

    def submit(executor: Executor) -> None:
        index = next(pending, None)
        if index is not None:
            in_flight[executor.submit(timed, batch[index])] = (index, executor)

    own_threads = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(threads)
    context = multiprocessing.get_context("spawn")
    spawned = ProcessPoolExecutor(
        processes - 1, mp_context=context, initializer=_limit_threads, initargs=(threads,)
    )
    try:
        with ThreadPoolExecutor(1, thread_name_prefix="patients") as here:
            submit(here)
            # A spawned process gets its first item once it has started and imported the
            # function's module (a probe comes back), so no item waits in its queue while this
            # process runs out of work.
            for _ in range(processes - 1):
                in_flight[spawned.submit(_started, timed)] = (None, spawned)
            # Until no patient is left in flight: a probe still out when the items are done
            # is not waited for.
            while any(index is not None for index, _ in in_flight.values()):
                finished, _ = wait(in_flight, return_when=FIRST_COMPLETED)
                for future in finished:
                    index, executor = in_flight.pop(future)
                    if index is not None:
                        results[index], seconds = future.result()
                        report(index, results[index], seconds)
                    else:
                        future.result()  # a worker that cannot start raises here
                    submit(executor)
    finally:
        # Not waiting for the spawned processes to exit: one may still be importing, when this
        # process did the few items of a short stage alone; it exits once it has started.
        spawned.shutdown(wait=False, cancel_futures=True)
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(own_threads)


def _timed(func: Callable[[Item], Result], item: Item) -> tuple[Result, float]:
    started = perf_counter()
    result = func(item)
    return result, perf_counter() - started


def _started(function: Callable[..., Any]) -> None:
    """The probe that tells a spawned process has started: its argument, the patients'
    function, was unpickled there, which imported that function's module."""


def _limit_threads(threads: int) -> None:
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(threads)
