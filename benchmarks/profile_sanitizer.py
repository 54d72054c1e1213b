"""Where the sanitizer's time goes (bench_sweep.py --profile): the fused kernels timed part by part, on one thread.

Per IFM, over the sweep's batches of window sizes (best of at least 5, each into a batch buffer already touched):
- stream_tables_s: the per-stream tables (prefix counts and sums, the float64 copy), once per IFM;
- fill_s: the window loop writing every window with its first sample (the `first` selector): loop and fill alone;
- mean_and_distance_s: the `nonzero_mean` kernel minus fill_s: the window means and the distance pass;
- short_windows_s: the part of the `nonzero_mean` kernel spent on windows shorter than the vector pass takes;
- call_overhead_s: the public call (sample_and_hold_sweep: checks, cached tables, the thread split) minus the above;
- first_touch_s: the first batch written into a fresh buffer minus the same batch into a touched one (page faults),
  which `sweep_ifm` now pays when it allocates the buffer.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def best_of(reps: int, call: Callable[[], object]) -> float:
    """The shortest of reps timed calls (the least disturbed on a shared machine)."""
    seconds = []
    for _ in range(reps):
        start = time.perf_counter()
        call()
        seconds.append(time.perf_counter() - start)
    return min(seconds)


def profile_ifm(ifm: Any, windows: list[int], *, batch_size: int, reps: int) -> dict[str, float]:
    """The parts of one IFM's sanitizer time, in seconds (see the module docstring)."""
    import numpy as np
    import torch

    from ifmsan.core import kernels as sanitize_kernels
    from ifmsan.core.sanitize import sample_and_hold_sweep
    from ifmsan.steps.sweep import even_chunks, fault_in

    reps = max(reps, 5)  # parts of a few ms: the shortest of several
    kernels = sanitize_kernels.compiled_kernels()
    if kernels is None:
        raise RuntimeError("--profile needs the fused kernels (numba installed, IFMSAN_NO_NUMBA unset)")
    stream_tables, hold_windows = kernels
    tensor = ifm.detach().cpu().contiguous()
    x = tensor.reshape(-1).numpy()
    chunks = [windows[first:stop] for first, stop in even_chunks(len(windows), batch_size)]
    buffer = fault_in(torch.empty((max(map(len, chunks)), *tensor.shape), dtype=tensor.dtype))
    rows = buffer.reshape(buffer.shape[0], -1).numpy()
    picks = np.zeros(1, dtype=np.int64)
    tables = stream_tables(x)

    def kernel(mode: int, sizes: list[int] | None = None) -> None:
        """The kernel on every chunk (or on the given sizes, as many at a time as the buffer has rows), one thread."""
        parts = chunks if sizes is None else [sizes[i : i + rows.shape[0]] for i in range(0, len(sizes), rows.shape[0])]
        for chunk in parts:
            hold_windows(x, *tables, np.asarray(chunk, dtype=np.int64), mode, picks, rows[: len(chunk)])

    def public_calls() -> None:
        """What the sweep calls, chunk by chunk."""
        for chunk in chunks:
            sample_and_hold_sweep(tensor, chunk, out=buffer[: len(chunk)])

    short = [w for w in windows if min(w, x.size) < sanitize_kernels.VECTOR_MIN_WINDOW]
    figures = {
        "stream_tables_s": best_of(reps, lambda: stream_tables(x)),
        "fill_s": best_of(reps, lambda: kernel(sanitize_kernels.KERNEL_MODES["first"])),
        "hold_s": best_of(reps, lambda: kernel(sanitize_kernels.KERNEL_MODES["nonzero_mean"])),
        "short_windows_s": best_of(reps, lambda: kernel(sanitize_kernels.KERNEL_MODES["nonzero_mean"], short))
        if short
        else 0.0,
    }
    figures["mean_and_distance_s"] = figures["hold_s"] - figures["fill_s"]
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        public_calls()  # the tables are computed and cached here: stream_tables_s counts them
        kernel_s, call_s = [], []
        for _ in range(reps):  # alternating, so that both see the same machine
            kernel_s.append(best_of(1, lambda: kernel(sanitize_kernels.KERNEL_MODES["nonzero_mean"])))
            call_s.append(best_of(1, public_calls))
        first = chunks[0]
        fresh_s = min(
            best_of(1, lambda: sample_and_hold_sweep(tensor, first, out=torch.empty((len(first), *tensor.shape))))
            for _ in range(reps)
        )
        touched_s = best_of(reps, lambda: sample_and_hold_sweep(tensor, first, out=buffer[: len(first)]))
    finally:
        torch.set_num_threads(threads)
    figures["call_overhead_s"] = min(call_s) - min(kernel_s)  # the tables are cached after the first call
    figures["first_touch_s"] = max(0.0, fresh_s - touched_s)
    figures["samples_x_windows"] = float(x.size * len(windows))
    return figures


def profile(ifms: dict[str, Any], windows: list[int], *, batch_size: int, reps: int) -> dict[str, Any]:
    """Every IFM's parts, their totals, and each part's share of the public calls' time."""
    layers = {layer: profile_ifm(ifm, windows, batch_size=batch_size, reps=reps) for layer, ifm in ifms.items()}
    keys = next(iter(layers.values())).keys()
    total = {key: sum(figures[key] for figures in layers.values()) for key in keys}
    whole = total["hold_s"] + total["call_overhead_s"]
    shares = {
        key: total[key] / whole
        for key in ("fill_s", "mean_and_distance_s", "short_windows_s", "call_overhead_s", "stream_tables_s")
    }
    shares["ns_per_sample_and_window"] = whole / total["samples_x_windows"] * 1e9
    print(
        "sanitizer profile (1 thread, "
        + ", ".join(f"{k}: {v:.2f}" if k.startswith("ns") else f"{k} {v:.0%}" for k, v in shares.items())
        + f"; first touch of fresh buffers {total['first_touch_s'] * 1e3:.1f} ms in all)",
        flush=True,
    )
    return {"layers": layers, "total": total, "shares_of_calls": shares, "reps": reps}
