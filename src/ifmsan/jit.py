"""Optional numba kernels and the thread split they share: the fused CPU paths of the sanitizer and the model."""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any


def numba_compile(*functions: Callable[..., Any]) -> tuple[Callable[..., Any], ...] | None:
    """The functions compiled by numba (nogil, cached on disk), or None without numba or with IFMSAN_NO_NUMBA set."""
    if os.environ.get("IFMSAN_NO_NUMBA"):
        return None
    try:
        import numba
    except ImportError:
        return None
    jit = numba.njit(cache=True, nogil=True, boundscheck=False)
    return tuple(jit(function) for function in functions)


def drain_in_threads(task: Callable[[int], None], count: int, *, workers: int) -> None:
    """Run task(0..count-1) on `workers` threads taking one item at a time, so a thread the OS holds back delays nobody."""
    workers = max(1, min(workers, count))
    counter = itertools.count()

    def drain() -> None:
        """Take items until none are left."""
        while (item := next(counter)) < count:
            task(item)

    if workers == 1:
        drain()
        return
    with ThreadPoolExecutor(max_workers=workers - 1) as pool:
        helpers = [pool.submit(drain) for _ in range(workers - 1)]
        drain()
        for helper in helpers:
            helper.result()
