"""lungsurv.core.parallel: patients across processes, costliest first, results in input order."""

from __future__ import annotations

import os
import time

import pytest

from lungsurv.core.parallel import map_patients


def _square_with_pid(value: int) -> tuple[int, int]:
    return value * value, os.getpid()


def _slow_pid(seconds: float) -> int:
    time.sleep(seconds)
    return os.getpid()


@pytest.mark.parametrize("costs", [None, [1.0, 5.0, 2.0, 9.0, 0.0]])
def test_results_come_back_in_input_order(costs: list[float] | None) -> None:
    values = [3, 1, 4, 1, 5]
    results = map_patients(_square_with_pid, values, workers=2, costs=costs)
    assert [square for square, _ in results] == [9, 1, 16, 1, 25]
    assert len({pid for _, pid in results} - {os.getpid()}) <= 1  # here and one spawned


def test_this_process_works_beside_the_spawned_one() -> None:
    """This process starts at once; the spawned one takes items once it has started (1-2 s),
    so of 8 one-second items both do some."""
    pids = map_patients(_slow_pid, [1.0] * 8, workers=2)
    assert os.getpid() in pids
    assert len(set(pids)) == 2


def test_one_worker_runs_in_this_process() -> None:
    results = map_patients(_square_with_pid, [2, 3], workers=1, costs=[1.0, 2.0])
    assert results == [(4, os.getpid()), (9, os.getpid())]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"workers": 0}, "workers must be >= 1, got 0"), ({"costs": [1.0]}, "1 values for 2 items")],
)
def test_invalid_arguments_are_named(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        map_patients(_square_with_pid, [1, 2], **{"workers": 2, **kwargs})


@pytest.mark.parametrize("workers", [1, 2])
def test_each_item_is_reported_once_as_it_finishes(workers: int) -> None:
    heard: list[tuple[int, int, float]] = []
    values = [3, 1, 4]
    results = map_patients(
        _square_with_pid,
        values,
        workers=workers,
        on_result=lambda index, result, seconds: heard.append((index, result[0], seconds)),
    )
    assert sorted((i, square) for i, square, _ in heard) == [(0, 9), (1, 1), (2, 16)]
    assert all(seconds >= 0 for *_, seconds in heard)
    assert [square for square, _ in results] == [9, 1, 16]


def test_a_short_stage_does_not_wait_for_a_process_still_starting() -> None:
    """Its items are done here long before the spawned process has imported the function's
    module (3 s): none is queued there, and the call returns without waiting for it."""
    from tests.core.slow_to_import import pid_of

    started = time.perf_counter()
    pids = map_patients(pid_of, range(4), workers=2)
    assert pids == [os.getpid()] * 4
    assert time.perf_counter() - started < 2.5
