"""A patients' function whose module takes 3 s to import in a spawned process (tests of
lungsurv.core.parallel: a stage must not wait for a process still starting)."""

from __future__ import annotations

import multiprocessing
import os
import time

if multiprocessing.parent_process() is not None:
    time.sleep(3.0)


def pid_of(_: object) -> int:
    return os.getpid()
