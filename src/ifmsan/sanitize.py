"""Sample-and-hold approximation of an IFM stream (the paper's Algorithm 1 and its baselines)."""

from __future__ import annotations

import functools
import math
import numbers
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
import torch

from ifmsan.jit import drain_in_threads, numba_compile

SELECTORS: tuple[str, ...] = ("nonzero_mean", "first", "mean", "random")
"""Which sample represents a window: the paper's method first, then the baselines."""


def check_ifm(ifm: torch.Tensor, *, name: str = "ifm") -> None:
    """Reject IFMs that no selector can give a meaningful answer for, before any work."""
    if not isinstance(ifm, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor or numpy.ndarray, got {type(ifm).__name__}")
    if not ifm.dtype.is_floating_point:
        raise ValueError(f"{name} must have a floating-point dtype, got {ifm.dtype}")
    if ifm.numel() == 0:
        raise ValueError(f"{name} is empty (shape {tuple(ifm.shape)}); expected at least one sample")
    if not _all_finite(ifm):
        bad = int((~torch.isfinite(ifm)).sum())
        raise ValueError(f"{name} contains {bad} NaN or infinite value(s); expected finite values only")


def _all_finite(ifm: torch.Tensor) -> bool:
    """No NaN or infinity; on the CPU numpy's single-threaded check, as a threaded torch op waits on a busy machine."""
    if ifm.device.type == "cpu" and ifm.dtype in (torch.float32, torch.float64):
        return bool(np.isfinite(ifm.detach().numpy()).all())
    return bool(torch.isfinite(ifm).all())


def check_window(window: object, *, name: str = "window") -> int:
    """Return the window as an int of any size (past the IFM it is one window), or raise a ValueError.

    Floats are refused, even integral ones: 1e23 as a float is not 10**23. The CLI reads "1e23" exactly.
    """
    if isinstance(window, bool) or not isinstance(window, numbers.Integral):
        raise ValueError(f"{name} must be an integer >= 1, got {window!r} ({type(window).__name__})")
    if int(window) < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {int(window)}")
    return int(window)


def check_seed(seed: object, *, name: str = "seed") -> int:
    """Return the seed as an int, or raise a ValueError: numpy's generators take integers >= 0 only."""
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or int(seed) < 0:
        raise ValueError(f"{name} must be an integer >= 0, got {seed!r}")
    return int(seed)


def check_select(select: object) -> str:
    """Return the selector name, or raise a ValueError listing the allowed ones."""
    if select not in SELECTORS:
        raise ValueError(f"select must be one of {', '.join(SELECTORS)}; got {select!r}")
    return str(select)


def _as_tensor(ifm: torch.Tensor | np.ndarray) -> tuple[torch.Tensor, bool]:
    """Accept numpy arrays too (any byte order, 0-d kept 0-d), remembering to hand numpy back."""
    if isinstance(ifm, np.ndarray):
        if not np.issubdtype(ifm.dtype, np.floating):  # before torch, which cannot even hold object or str arrays
            raise ValueError(f"ifm must have a floating-point dtype, got {ifm.dtype}")
        native = ifm.astype(ifm.dtype.newbyteorder("="), order="C", copy=False)  # exact: only the byte order changes
        return torch.from_numpy(native), True
    return ifm, False


def _windowed(stream: torch.Tensor, window: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero-pad the float64 stream to whole windows: (rows, window) values and each row's length.

    A window past the stream is one window of the whole stream: the padding never exceeds the stream's length.
    """
    n_samples = stream.numel()
    window = min(window, n_samples)
    rows = -(-n_samples // window)
    padded = torch.nn.functional.pad(stream, (0, rows * window - n_samples)).view(rows, window)
    lengths = torch.full((rows,), window, dtype=torch.int64, device=stream.device)
    lengths[-1] = n_samples - (rows - 1) * window
    return padded, lengths


def _random_indices(lengths: torch.Tensor, *, window: int, seed: int) -> torch.Tensor:
    """A uniform pick in each window, reproducible per (seed, window) and independent of batching."""
    rng = np.random.default_rng([seed, window])
    picks = rng.integers(0, lengths.cpu().numpy())
    return torch.from_numpy(picks).to(lengths.device)


def _held_values(padded: torch.Tensor, lengths: torch.Tensor, *, select: str, window: int, seed: int) -> torch.Tensor:
    """The float64 value that holds each window, or NaN where the window stays as it is."""
    if select == "first":
        return padded[:, 0]
    if select == "mean":
        return padded.sum(dim=1) / lengths
    if select == "random":
        return padded.gather(1, _random_indices(lengths, window=window, seed=seed)[:, None])[:, 0]
    nonzero = padded != 0
    counts = nonzero.sum(dim=1)
    means = padded.sum(dim=1) / counts.clamp(min=1)
    distances = (padded - means[:, None]).abs().masked_fill_(~nonzero, float("inf"))
    held = padded.gather(1, distances.argmin(dim=1, keepdim=True))[:, 0]
    return held.masked_fill_(counts == 0, float("nan"))


def _sanitize_stream(stream: torch.Tensor, window: int, *, select: str, seed: int, out: torch.Tensor) -> None:
    """Write the sanitized stream into out (same length, any floating dtype)."""
    padded, lengths = _windowed(stream, window)
    held = _held_values(padded, lengths, select=select, window=window, seed=seed)
    filled = torch.where(held.isnan()[:, None], padded, held[:, None])
    out.copy_(filled.view(-1)[: stream.numel()])


def sample_and_hold(
    ifm: torch.Tensor | np.ndarray, window: int, *, select: str = "nonzero_mean", seed: int = 0
) -> torch.Tensor | np.ndarray:
    """Hold one representative sample per window of the C-order stream; same shape and dtype out."""
    return sample_and_hold_sweep(ifm, [check_window(window)], select=select, seed=seed)[0, ...]  # 0-d stays 0-d


def sample_and_hold_sweep(
    ifm: torch.Tensor | np.ndarray,
    windows: Iterable[int],
    *,
    select: str = "nonzero_mean",
    seed: int = 0,
    out: torch.Tensor | None = None,
) -> torch.Tensor | np.ndarray:
    """Sanitize one IFM with each window in turn: (len(windows), *ifm.shape), one pass per window."""
    tensor, was_numpy = _as_tensor(ifm)
    check_ifm(tensor)
    select = check_select(select)
    seed = check_seed(seed)
    sizes: Sequence[int] = [check_window(w, name=f"windows[{i}]") for i, w in enumerate(windows)]
    if not sizes:
        raise ValueError("windows is empty; expected at least one window size >= 1")
    shape = (len(sizes), *tensor.shape)
    if out is None:
        out = torch.empty(shape, dtype=tensor.dtype, device=tensor.device)
    elif tuple(out.shape) != shape or out.dtype != tensor.dtype:
        raise ValueError(f"out must have shape {shape} and dtype {tensor.dtype}, got {tuple(out.shape)} {out.dtype}")
    flat_out = out.view(len(sizes), -1)
    work = tensor.numel() * len(sizes)
    kernels = _compiled_kernels() if _kernel_applies(tensor, select) and _kernel_pays(work) else None
    if kernels is not None:
        _sweep_with_kernels(kernels, tensor, sizes, select=select, seed=seed, flat_out=flat_out)
    else:
        stream = tensor.reshape(-1).to(torch.float64)
        for row, window in enumerate(sizes):
            _sanitize_stream(stream, window, select=select, seed=seed, out=flat_out[row])
    return out.numpy() if was_numpy else out


# The fused CPU path: one compiled pass per window size over a float32 stream, written straight into `out`.
# Same results as the torch path above bit for bit (tests/test_sanitize_fast.py): the held value is always one of
# the samples, chosen with the same float64 mean and distances, so only the work is organised differently.
_KERNEL_MODES: dict[str, int] = {"nonzero_mean": 0, "first": 1, "random": 2}
_FAR = 1e300
"""Stands in for a zero sample in the distance pass: farther from any float32 window mean than every nonzero sample."""
_EXACT = 2**53
"""Below this many units every partial sum of a window is an exact float64, so any summation order gives the same sum."""
_PARALLEL_MIN_SAMPLES = 1 << 16
"""IFMs from this many samples on share their window sizes among torch's threads; smaller ones are not worth a thread."""
_KERNEL_MIN_WORK = 1 << 22
"""Samples × window sizes from which a call loads the compiled kernels (about 1 s, once per process); smaller calls
take the torch path until they are loaded, so short jobs on small IFMs do not pay for them."""


def _stream_tables(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, float, int]:
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


def _hold_windows(
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
def _compiled_kernels() -> tuple[Callable[..., Any], ...] | None:
    """The two kernels compiled by numba (cached on disk), or None where numba is not installed or IFMSAN_NO_NUMBA is set."""
    return numba_compile(_stream_tables, _hold_windows)


def _kernel_pays(work: int) -> bool:
    """Whether a call of this size should use (and if need be load) the compiled kernels."""
    return work >= _KERNEL_MIN_WORK or _compiled_kernels.cache_info().currsize > 0


def _kernel_applies(tensor: torch.Tensor, select: str) -> bool:
    """Whether the fused CPU path covers this call; the window mean of baseline `mean` stays on the torch path."""
    return tensor.device.type == "cpu" and tensor.dtype == torch.float32 and select in _KERNEL_MODES


def _sweep_with_kernels(
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
    tables = _cached_tables(stream_tables, x)
    rows = flat_out.detach().numpy()
    windows = np.asarray([min(w, x.shape[0]) for w in sizes], dtype=np.int64)  # past the stream = one window
    mode = _KERNEL_MODES[select]

    def picks(first: int, stop: int) -> np.ndarray:
        """The random selector's picks for rows first..stop-1, concatenated (a placeholder for the other modes)."""
        if mode != 2:
            return np.zeros(1, dtype=np.int64)
        return np.concatenate([_random_indices_np(x.shape[0], window=w, seed=seed) for w in sizes[first:stop]])

    workers = min(torch.get_num_threads(), len(sizes)) if x.shape[0] >= _PARALLEL_MIN_SAMPLES else 1
    if workers <= 1:
        hold_windows(x, *tables, windows, mode, picks(0, len(sizes)), rows)
        return

    def hold_one(row: int) -> None:
        """One window size into its row of the output."""
        hold_windows(x, *tables, windows[row : row + 1], mode, picks(row, row + 1), rows[row : row + 1])

    drain_in_threads(hold_one, len(sizes), workers=workers)


_TABLES = threading.local()
"""Per thread, the last stream and its tables: a sweep sanitizes one IFM in several batches of window sizes."""


def _cached_tables(stream_tables: Callable[..., tuple], x: np.ndarray) -> tuple:
    """stream_tables(x), reused when x holds exactly the bits of this thread's previous stream (checked, not assumed)."""
    previous = getattr(_TABLES, "entry", None)
    if previous is not None and previous[0].shape == x.shape and np.array_equal(previous[0].view(np.uint32), x.view(np.uint32)):
        return previous[1]
    tables = stream_tables(x)
    _TABLES.entry = (x.copy(), tables)
    return tables


def _random_indices_np(size: int, *, window: int, seed: int) -> np.ndarray:
    """The same picks as _random_indices, for a stream of `size` samples, as numpy."""
    span = min(window, size)
    lengths = np.full(-(-size // span), span, dtype=np.int64)
    lengths[-1] = size - (lengths.shape[0] - 1) * span
    return np.random.default_rng([seed, window]).integers(0, lengths)
