"""Optional numba kernels and the thread split they share: the fused CPU paths of the sanitizer and the model."""

from __future__ import annotations

import itertools
import os
import threading
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
    """Run task(0..count-1) on `workers` threads taking one item at a time, so a thread the OS holds back delays nobody.

    The helpers are the persistent threads of `helper_pool`: starting threads anew for each call cost more than a
    small call's work (a sweep calls the sanitizer for every batch).
    """
    workers = max(1, min(workers, count))
    counter = itertools.count()

    def drain() -> None:
        """Take items until none are left."""
        while (item := next(counter)) < count:
            task(item)

    if workers == 1:
        drain()
        return
    pool = helper_pool(workers - 1)
    helpers = [pool.submit(drain) for _ in range(workers - 1)]
    try:
        drain()
    finally:
        for helper in helpers:
            if not helper.cancel():  # one that never started (its thread busy elsewhere) has nothing left to do
                helper.result()


_POOL: dict[str, tuple[int, ThreadPoolExecutor]] = {}
_POOL_LOCK = threading.Lock()


def helper_pool(size: int) -> ThreadPoolExecutor:
    """A process-wide pool of at least `size` idle threads (they sleep between calls), replaced by a larger one if need be."""
    with _POOL_LOCK:
        current = _POOL.get("helpers")
        if current is None or current[0] < size:
            if current is not None:
                current[1].shutdown(wait=False)
            _POOL["helpers"] = (size, ThreadPoolExecutor(max_workers=size, thread_name_prefix="ifmsan-kernel"))
        return _POOL["helpers"][1]
