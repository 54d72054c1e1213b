"""The vectorized sanitizer against per-window transcriptions of Algorithm 1 on one IFM (naive_speedup)."""

from __future__ import annotations

import time
from typing import Any

from timing import spread

KEYS = ("naive_s", "python_s", "vectorized_s", "naive_speedup", "python_speedup")
"""The figures of one comparison that the summary spreads over the repetitions."""


def naive_algorithm1_torch(stream: Any, n: int) -> Any:
    """Algorithm 1 transcribed window by window with torch ops: W, X = W[W != 0], E[X], argmin |X - E[X]|, hold."""
    import torch

    out = stream.clone()
    for start in range(0, stream.numel(), n):
        window = stream[start : start + n]
        nonzero = window[window != 0]
        if nonzero.numel():
            mean = nonzero.sum() / nonzero.numel()
            out[start : start + n] = nonzero[torch.argmin((nonzero - mean).abs())]
    return out


def naive_comparison(ifm: Any, windows: list[int], *, batch_size: int) -> dict[str, Any]:
    """Seconds for two naive per-window transcriptions and for the vectorized sanitizer on one IFM (outputs checked)."""
    import numpy as np
    import torch

    from ifmsan.core.sanitize import sample_and_hold_sweep
    from ifmsan.testing import naive_algorithm1  # the plain-Python reference the tests check the sanitizer against

    cpu = ifm.detach().cpu()
    buffer = torch.zeros((min(batch_size, len(windows)), *cpu.shape), dtype=cpu.dtype)
    start = time.perf_counter()
    rows = []
    for first in range(0, len(windows), batch_size):
        chunk = windows[first : first + batch_size]
        out = sample_and_hold_sweep(cpu, chunk, out=buffer[: len(chunk)])
        rows.append(out.reshape(len(chunk), -1).numpy().copy())
    fast_s = time.perf_counter() - start
    fast = np.concatenate(rows)
    stream64 = cpu.reshape(-1).to(torch.float64)
    start = time.perf_counter()
    by_torch = [naive_algorithm1_torch(stream64, n) for n in windows]
    torch_s = time.perf_counter() - start
    stream = [float(v) for v in cpu.reshape(-1).tolist()]
    start = time.perf_counter()
    by_python = [naive_algorithm1(stream, n) for n in windows]
    python_s = time.perf_counter() - start
    same = np.array_equal(fast, torch.stack(by_torch).float().numpy()) and np.array_equal(
        fast, np.array(by_python, dtype=np.float32)
    )
    return {
        "naive_s": torch_s,
        "python_s": python_s,
        "vectorized_s": fast_s,
        "naive_speedup": torch_s / fast_s,
        "python_speedup": python_s / fast_s,
        "outputs_equal": same,
    }


def summary(runs: list[dict[str, Any]], *, layer: str) -> dict[str, Any]:
    """The comparisons of every repetition as the JSON's `naive` entry."""
    return {
        "layer": layer,
        "outputs_equal": all(n["outputs_equal"] for n in runs),
        "reference": "naive_s: Algorithm 1 window by window with torch ops (float64); "
        "python_s: the same in plain Python (ifmsan.testing, the tests' reference)",
        **{key: spread([n[key] for n in runs]) for key in KEYS},
    }
