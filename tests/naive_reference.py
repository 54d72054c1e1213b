"""Deliberately naive transcriptions of Algorithm 1 and its baselines: the independent reference of the sanitizer tests
(and of benchmarks/bench_sweep.py's python_speedup)."""

from __future__ import annotations


def naive_algorithm1(stream: list[float], n: int) -> list[float]:
    """Algorithm 1 window by window, in plain Python, exactly as the paper and DESIGN.md state it."""
    out = list(stream)
    for start in range(0, len(stream), n):
        window = stream[start : start + n]
        nonzero = [x for x in window if x != 0]
        if not nonzero:
            continue
        mean = sum(nonzero) / len(nonzero)
        best = None
        for x in window:  # stream order, so the first of equal distances wins
            if x != 0 and (best is None or abs(x - mean) < abs(best - mean)):
                best = x
        out[start : start + len(window)] = [best] * len(window)
    return out


def naive_baseline(stream: list[float], n: int, select: str) -> list[float]:
    """The first-sample and window-mean baselines, window by window."""
    out = list(stream)
    for start in range(0, len(stream), n):
        window = stream[start : start + n]
        held = window[0] if select == "first" else sum(window) / len(window)
        out[start : start + len(window)] = [held] * len(window)
    return out
