"""Sample-and-hold approximation of an IFM stream (the paper's Algorithm 1 and its baselines).

This module holds the API and the torch reference path; the fused numba kernels that give the same bits faster on
the CPU live in `ifmsan.core.kernels`.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterable, Sequence

import numpy as np
import torch

from ifmsan.core import kernels as sanitize_kernels

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


def as_tensor(ifm: torch.Tensor | np.ndarray) -> tuple[torch.Tensor, bool]:
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


def window_picks(stream: torch.Tensor, window: int, *, select: str, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The stream index that holds each window, and the windows' lengths; -1 where no one sample holds the window.

    -1 marks a `mean` window (the mean holds it) and an all-zero `nonzero_mean` window (its samples stay as they are).
    The choices are those of `_held_values`: the sample gathered here is the value the sanitizer holds.
    """
    padded, lengths = _windowed(stream.to(torch.float64), window)
    if select == "mean":
        return torch.full_like(lengths, -1), lengths
    if select == "first":
        return torch.zeros_like(lengths), lengths
    if select == "random":
        return _random_indices(lengths, window=window, seed=seed), lengths
    nonzero = padded != 0
    counts = nonzero.sum(dim=1)
    means = padded.sum(dim=1) / counts.clamp(min=1)
    distances = (padded - means[:, None]).abs().masked_fill_(~nonzero, float("inf"))
    return distances.argmin(dim=1).masked_fill_(counts == 0, -1), lengths


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
    kernel: bool = True,
) -> torch.Tensor | np.ndarray:
    """Sanitize one IFM with each window in turn: (len(windows), *ifm.shape), one pass per window.

    kernel=False always takes the torch reference path (same bits, slower): for benchmarks and tests that compare them.
    """
    tensor, was_numpy = as_tensor(ifm)
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
    fused = kernel and sanitize_kernels.kernel_applies(tensor, select) and sanitize_kernels.kernel_pays(work)
    kernels = sanitize_kernels.compiled_kernels() if fused else None
    if kernels is not None:
        sanitize_kernels.sweep_with_kernels(kernels, tensor, sizes, select=select, seed=seed, flat_out=flat_out)
    else:
        stream = tensor.reshape(-1).to(torch.float64)
        for row, window in enumerate(sizes):
            _sanitize_stream(stream, window, select=select, seed=seed, out=flat_out[row])
    return out.numpy() if was_numpy else out
