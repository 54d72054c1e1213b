"""Seeded, deterministic torch with a fixed thread count, for training and attacks that must rerun bit for bit."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


@contextlib.contextmanager
def reproducible_torch(*, seed: int, threads: int) -> Iterator[None]:
    """Seed torch, pin the thread count and force deterministic kernels; restore the global state afterwards."""
    import torch

    old_threads = torch.get_num_threads()
    old_deterministic = torch.are_deterministic_algorithms_enabled()
    old_warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(True)
        try:
            yield
        finally:
            torch.use_deterministic_algorithms(old_deterministic, warn_only=old_warn_only)
            torch.set_num_threads(old_threads)
