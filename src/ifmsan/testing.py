"""Deliberately naive plain-Python transcriptions of Algorithm 1 and its baselines, kept independent of the sanitizer.

The reference the sanitizer tests compare against (tests/test_sanitize*.py) and the plain-Python timing of
benchmarks/bench_sweep.py; slow by design, not for production use.
"""

from __future__ import annotations


def naive_algorithm1(stream: list[float], n: int) -> list[float]:
    """Algorithm 1 window by window, in plain Python, exactly as the paper and docs/definitions.md state it."""
    out = list(stream)
    for start in range(0, len(stream), n):
        window = stream[start : start + n]
        nonzero = [x for x in window if x != 0]
        if not nonzero:
            continue
        mean = sum(nonzero) / len(nonzero)
        best = nonzero[0]
        for x in nonzero[1:]:  # stream order, so the first of equal distances wins
            if abs(x - mean) < abs(best - mean):
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
