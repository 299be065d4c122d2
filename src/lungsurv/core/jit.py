"""Compiling numba kernels with numba's on-disk cache where the process may write one."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numba


def cached_njit(function: Callable[..., Any]) -> Any:
    """``numba.njit`` with numba's on-disk cache where it has somewhere to write one (next to
    the module, ``NUMBA_CACHE_DIR`` or the user's cache folder); in a read-only container with
    no writable home, numba refuses ``cache=True`` outright, so each process compiles instead."""
    try:
        return numba.njit(cache=True, nogil=True)(function)
    except RuntimeError:
        return numba.njit(nogil=True)(function)
