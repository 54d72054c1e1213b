"""The sanitizer's fused CPU path: numba kernels (optional) that give the torch path's results bit for bit, faster.

`ifmsan.sanitize` keeps the API and the torch reference path and calls `sweep_with_kernels` where `kernel_applies`.
Same results as the torch path bit for bit (tests/test_sanitize_fast.py): the held value is always one of the samples,
chosen with the same float64 mean and distances, so only the work is organised differently.
"""

from __future__ import annotations

import functools
import math
import threading
from collections.abc import Callable, Sequence

import numpy as np
import torch

from ifmsan.jit import drain_in_threads, numba_compile

KERNEL_MODES: dict[str, int] = {"nonzero_mean": 0, "first": 1, "random": 2}
_FAR = 1e300
"""Stands in for a zero sample in the distance pass: farther from any float32 window mean than every nonzero sample."""
_EXACT = 2**53
"""Below this many units every partial sum of a window is an exact float64, so any summation order gives the same sum."""
PARALLEL_MIN_SAMPLES = 1 << 16
"""IFMs from this many samples on share their window sizes among torch's threads; smaller ones are not worth a thread."""
KERNEL_MIN_WORK = 1 << 22
"""Samples × window sizes from which a call loads the compiled kernels (about 1 s, once per process); smaller calls
take the torch path until they are loaded, so short jobs on small IFMs do not pay for them."""


def stream_tables(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, float, int]:
    """Per-stream tables that make each window's nonzero count and (when exact) sum an O(1) lookup.

    Every nonzero float32 is an integer multiple of `unit`, the spacing of the smallest binade present; `sums` and
    `magnitudes` are prefix sums of those integers (wrapping int64: window differences stay exact), `counts` is the
    prefix count of nonzeros, and `near` is the stream in float64 with zeros moved out of reach (_FAR).
    """
    size = x.shape[0]
    bits = x.view(np.uint32)
    lowest, highest = 255, 1
    for i in range(size):
        magnitude = np.int64(bits[i]) & 0x7FFFFFFF
        if magnitude != 0:
            exponent = max(magnitude >> 23, 1)
            lowest = min(lowest, exponent)
            highest = max(highest, exponent)
    lowest = min(lowest, highest)
    near = np.empty(size, np.float64)
    sums = np.empty(size + 1, np.int64)
    magnitudes = np.empty(size + 1, np.int64)
    counts = np.empty(size + 1, np.int64)
    sums[0] = magnitudes[0] = counts[0] = 0
    for i in range(size):
        word = np.int64(bits[i])
        magnitude = word & 0x7FFFFFFF
        units = np.int64(0)
        if magnitude != 0:
            exponent = magnitude >> 23
            significand = (magnitude & 0x7FFFFF) | (0x800000 if exponent > 0 else 0)
            units = significand << min(max(exponent, 1) - lowest, 31)
        sums[i + 1] = sums[i] + (-units if word >> 31 else units)
        magnitudes[i + 1] = magnitudes[i] + units
        counts[i + 1] = counts[i] + (magnitude != 0)
        near[i] = np.float64(x[i]) if magnitude != 0 else _FAR
    return near, sums, magnitudes, counts, math.ldexp(1.0, lowest - 150), highest - lowest


def hold_windows(
    x: np.ndarray,
    near: np.ndarray,
    sums: np.ndarray,
    magnitudes: np.ndarray,
    counts: np.ndarray,
    unit: float,
    spread: int,
    windows: np.ndarray,
    mode: int,
    picks: np.ndarray,
    out: np.ndarray,
) -> None:
    """Write each window size's sanitized stream into its row of out: per window, pick the held sample and fill."""
    size = x.shape[0]
    pick = 0
    for row in range(windows.shape[0]):
        window = windows[row]
        bit_length = 0
        while window >> bit_length:
            bit_length += 1
        lookup = spread <= 31 and 24 + spread + bit_length <= 62  # no window's units can wrap past int64
        target = out[row]
        for start in range(0, size, window):
            stop = min(start + window, size)
            held = start
            if mode == 2:
                held = start + picks[pick]
                pick += 1
            elif mode == 0:
                count = counts[stop] - counts[start]
                if count == 0:
                    target[start:stop] = x[start:stop]
                    continue
                if lookup and magnitudes[stop] - magnitudes[start] < _EXACT:
                    total = np.float64(sums[stop] - sums[start]) * unit
                else:
                    total = 0.0
                    for i in range(start, stop):
                        total += np.float64(x[i])
                mean = total / count
                best = np.inf
                for i in range(start, stop):
                    distance = abs(near[i] - mean)
                    if distance < best:
                        best = distance
                        held = i
            target[start:stop] = x[held]


@functools.cache
def compiled_kernels() -> tuple[Callable[..., tuple], Callable[..., None]] | None:
    """The two kernels compiled by numba (cached on disk), or None where numba is not installed or IFMSAN_NO_NUMBA is set."""
    kernels = numba_compile(stream_tables, hold_windows)
    return None if kernels is None else (kernels[0], kernels[1])


def kernel_pays(work: int) -> bool:
    """Whether a call of this size should use (and if need be load) the compiled kernels."""
    return work >= KERNEL_MIN_WORK or compiled_kernels.cache_info().currsize > 0


def kernel_applies(tensor: torch.Tensor, select: str) -> bool:
    """Whether the fused CPU path covers this call; the window mean of baseline `mean` stays on the torch path."""
    return tensor.device.type == "cpu" and tensor.dtype == torch.float32 and select in KERNEL_MODES


def sweep_with_kernels(
    kernels: tuple[Callable[..., tuple], Callable[..., None]],
    tensor: torch.Tensor,
    sizes: Sequence[int],
    *,
    select: str,
    seed: int,
    flat_out: torch.Tensor,
) -> None:
    """Run the fused path for every window size; large IFMs spread the sizes over torch's CPU threads (no GIL held)."""
    stream_tables, hold_windows = kernels
    x = tensor.detach().reshape(-1).contiguous().numpy()
    tables = cached_tables(stream_tables, x)
    rows = flat_out.detach().numpy()
    windows = np.asarray([min(w, x.shape[0]) for w in sizes], dtype=np.int64)  # past the stream = one window
    mode = KERNEL_MODES[select]

    def picks(first: int, stop: int) -> np.ndarray:
        """The random selector's picks for rows first..stop-1, concatenated (a placeholder for the other modes)."""
        if mode != 2:
            return np.zeros(1, dtype=np.int64)
        return np.concatenate([random_indices_np(x.shape[0], window=w, seed=seed) for w in sizes[first:stop]])

    workers = min(torch.get_num_threads(), len(sizes)) if x.shape[0] >= PARALLEL_MIN_SAMPLES else 1
    if workers <= 1:
        hold_windows(x, *tables, windows, mode, picks(0, len(sizes)), rows)
        return

    def hold_one(row: int) -> None:
        """One window size into its row of the output."""
        hold_windows(x, *tables, windows[row : row + 1], mode, picks(row, row + 1), rows[row : row + 1])

    drain_in_threads(hold_one, len(sizes), workers=workers)


_TABLES = threading.local()
"""Per thread, the last stream and its tables: a sweep sanitizes one IFM in several batches of window sizes."""


def cached_tables(stream_tables: Callable[..., tuple], x: np.ndarray) -> tuple:
    """stream_tables(x), reused when x holds exactly the bits of this thread's previous stream (checked, not assumed)."""
    previous = getattr(_TABLES, "entry", None)
    if (
        previous is not None
        and previous[0].shape == x.shape
        and np.array_equal(previous[0].view(np.uint32), x.view(np.uint32))
    ):
        return previous[1]
    tables = stream_tables(x)
    _TABLES.entry = (x.copy(), tables)
    return tables


def random_indices_np(size: int, *, window: int, seed: int) -> np.ndarray:
    """The same picks as ifmsan.sanitize._random_indices, for a stream of `size` samples, as numpy."""
    span = min(window, size)
    lengths = np.full(-(-size // span), span, dtype=np.int64)
    lengths[-1] = size - (lengths.shape[0] - 1) * span
    return np.random.default_rng([seed, window]).integers(0, lengths)
