"""Independent pieces of one job on a few threads, with results in the order given, whatever order they finish in."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from typing import TypeVar

T = TypeVar("T")


def run_tasks(tasks: Sequence[Callable[[], T]], *, workers: int) -> list[T]:
    """Run every task on `workers` threads, longest first as given; the first failure (in task order) is raised.

    The tasks must not share mutable state: torch ops and the numba kernels release the GIL, so threads overlap
    where the work is. With one worker the tasks run here, one after another.
    """
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if workers == 1 or len(tasks) < 2:
        return [task() for task in tasks]
    with ThreadPoolExecutor(max_workers=min(workers, len(tasks)), thread_name_prefix="ifmsan-task") as pool:
        futures = [pool.submit(task) for task in tasks]
        wait(futures, return_when=FIRST_EXCEPTION)
        failed = [future for future in futures if future.done() and future.exception() is not None]
        if failed:
            for future in futures:
                future.cancel()  # the ones not started; running ones finish, their results are dropped
            raise failed[0].exception()  # type: ignore[misc]
        return [future.result() for future in futures]


__all__ = ["run_tasks"]
