"""The sweeps themselves: per layer and repetition, the sanitizer's overhead, the FLOP rate and the peak memory.

Each layer's sweep runs through `ifmsan.steps.sweep.sweep_ifm` with the network and the knob wrapped by `timing`,
under `machine_limits.OpClock` (the rate of every convolution and linear layer inside the sweep); then the same forward
batches run on the unsanitized IFM (`bare_forward_s`). After each repetition a GEMM scan over the shapes the sweeps ran
sets the GEMM limit the FLOP rates are divided by.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any

import machine_limits as limits
from timing import IdentityKnob, PeakRss, TimedKnob, TimedNet, synchronize

SUMMED = ("sanitize_s", "forward_s", "sweep_s", "bare_forward_s", "useful_flops")
"""Per-layer figures whose repetition total is their sum over the layers."""


def sweep_layer(
    net: Any, ifm: Any, *, layer: str, windows: list[int], target: int, batch_size: int, device: str, head: bool = True
) -> tuple[dict[str, float], Any]:
    """One layer's sweep through ifmsan.steps.sweep.sweep_ifm: its timings, peak RSS, and p(n)."""
    from ifmsan.core.knobs import get_knob
    from ifmsan.steps.sweep import sweep_ifm

    timed = TimedNet(net, device=device)
    knob = TimedKnob(get_knob("nonzero_mean"), device=device)
    rss = PeakRss()
    with rss.watch():
        start = time.perf_counter()
        curves = sweep_ifm(
            timed,
            ifm,
            layer=layer,
            knob=knob,
            values=windows,
            target=target,
            batch_size=batch_size,
            progress=False,
            head=head,
        )
        wall = time.perf_counter() - start
    figures = {"sanitize_s": knob.sanitize_s, "forward_s": timed.forward_s, "sweep_s": wall, "peak_rss_mb": rss.peak_mb}
    return figures, curves["probability"]


def bare_forward(net: Any, ifm: Any, *, layer: str, n_values: int, batch_size: int, device: str) -> float:
    """Forward time of the sweep's own batches (sweep_ifm: same sizes, same head) on the unsanitized IFM."""
    from ifmsan.steps.sweep import sweep_ifm

    timed = TimedNet(net, device=device)
    sweep_ifm(
        timed,
        ifm,
        layer=layer,
        knob=IdentityKnob(),
        values=list(range(2, 2 + n_values)),
        target=0,
        batch_size=batch_size,
        progress=False,
    )
    return timed.forward_s


def torch_path_sanitize(ifm: Any, windows: list[int], *, batch_size: int, device: str) -> float:
    """Seconds of the sweep's sanitizer calls with the fused path switched off (the torch path)."""
    import torch

    from ifmsan.core.sanitize import sample_and_hold_sweep

    buffer = torch.empty((min(batch_size, len(windows)), *ifm.shape), dtype=ifm.dtype, device=ifm.device)
    elapsed = 0.0
    for first in range(0, len(windows), batch_size):
        chunk = windows[first : first + batch_size]
        synchronize(device)
        start = time.perf_counter()
        sample_and_hold_sweep(ifm, chunk, out=buffer[: len(chunk)], kernel=False)
        synchronize(device)
        elapsed += time.perf_counter() - start
    return elapsed


def layer_figures(
    net: Any,
    ifm: Any,
    *,
    layer: str,
    windows: list[int],
    target: int,
    batch_size: int,
    device: str,
    flops_per_image: float,
    before: bool,
) -> tuple[dict[str, float], Any, limits.OpClock]:
    """One layer of one repetition: the timed sweep under OpClock, its bare forward, useful FLOPs and overhead, p(n),
    and the clock."""
    clock = limits.OpClock(net, synchronize=functools.partial(synchronize, device))
    with clock.watch():
        figures, probability = sweep_layer(
            net, ifm, layer=layer, windows=windows, target=target, batch_size=batch_size, device=device
        )
    figures["bare_forward_s"] = bare_forward(
        net, ifm, layer=layer, n_values=len(windows), batch_size=batch_size, device=device
    )
    figures["useful_flops"] = flops_per_image * len(windows)
    figures["overhead"] = figures["sanitize_s"] / figures["bare_forward_s"]
    if before:
        figures["sanitize_before_s"] = torch_path_sanitize(ifm, windows, batch_size=batch_size, device=device)
        figures["overhead_before"] = figures["sanitize_before_s"] / figures["bare_forward_s"]
    return figures, probability, clock


def rep_totals(
    rep_figures: dict[str, dict[str, float]], limit: dict[str, Any], peak: dict[str, Any], *, before: bool
) -> dict[str, float]:
    """A repetition's totals over the layers; adds the FLOP rates to every layer's figures and the total's."""
    summed = SUMMED + (("sanitize_before_s",) if before else ())
    totals = {key: sum(figures[key] for figures in rep_figures.values()) for key in summed}
    totals["peak_rss_mb"] = max(figures["peak_rss_mb"] for figures in rep_figures.values())
    totals["gemm_limit_gflops"] = limit["gflops"]
    totals["best_scan_gflops"] = limit["best_scan_gflops"]
    for part in [*rep_figures.values(), totals]:
        part["sweep_gflops"] = part["useful_flops"] / part["sweep_s"] / 1e9
        part["flop_efficiency"] = part["sweep_gflops"] / limit["gflops"]  # <= 1 by construction (machine_limits.py)
        if peak.get("gflops"):
            part["peak_efficiency"] = part["sweep_gflops"] / peak["gflops"]
    totals["overhead"] = totals["sanitize_s"] / totals["bare_forward_s"]
    if before:
        totals["overhead_before"] = totals["sanitize_before_s"] / totals["bare_forward_s"]
    for figures in rep_figures.values():
        figures["forward_share"] = figures["bare_forward_s"] / totals["bare_forward_s"]
    return totals


def measure(
    net: Any,
    ifms: dict[str, Any],
    *,
    layers: list[str],
    windows: list[int],
    target: int,
    batch_size: int,
    device: str,
    reps: int,
    flops: dict[str, float],
    peak: dict[str, Any],
    before: bool = False,
    each_rep: Callable[[], dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Every layer's sweep, reps times, with the GEMM limit of each repetition.

    Returns the per-layer figures and the totals as lists over the repetitions, p(n) per layer, each repetition's
    GEMM scan and the source of its limit, and what each_rep (called after every repetition: the naive comparison)
    returned; a line per repetition is printed.
    """
    per_layer: dict[str, dict[str, list[float]]] = {layer: {} for layer in layers}
    totals: dict[str, list[float]] = {}
    probabilities: dict[str, Any] = {}
    extra: list[dict[str, Any]] = []
    scans: list[list[dict[str, Any]]] = []
    limit_sources: list[str] = []
    shapes: dict[tuple[int, int, int], dict[str, Any]] = {}
    for rep in range(reps):
        in_sweep: dict[str, dict[str, float]] = {}
        rep_figures: dict[str, dict[str, float]] = {}
        for layer in layers:
            figures, probabilities[layer], clock = layer_figures(
                net,
                ifms[layer],
                layer=layer,
                windows=windows,
                target=target,
                batch_size=batch_size,
                device=device,
                flops_per_image=flops[layer],
                before=before,
            )
            in_sweep[layer] = clock.rates()
            shapes.update(clock.shapes)
            rep_figures[layer] = figures
        sync = functools.partial(synchronize, device)
        scans.append(limits.gemm_scan(list(shapes.values()), device=device, reps=3, synchronize=sync))
        limit = limits.gemm_limit(scans[-1], in_sweep)
        limit_sources.append(limit["source"])
        rep_total = rep_totals(rep_figures, limit, peak, before=before)
        for layer, figures in rep_figures.items():
            for key, value in figures.items():
                per_layer[layer].setdefault(key, []).append(value)
        for key, value in rep_total.items():
            totals.setdefault(key, []).append(value)
        if each_rep is not None:
            extra.append(each_rep())
        print_rep(rep, reps, rep_total, limit, extra)
    return {
        "per_layer": per_layer,
        "totals": totals,
        "probabilities": probabilities,
        "each_rep": extra,
        "scans": scans,
        "limit_sources": limit_sources,
    }


def print_rep(
    rep: int, reps: int, totals: dict[str, float], limit: dict[str, Any], extra: list[dict[str, Any]]
) -> None:
    """One line per repetition: sanitize, forward, overhead, FLOP rate against the limits, naive speedup."""
    speedup = f", naive_speedup {extra[-1]['naive_speedup']:.0f}x" if extra else ""
    if "sanitize_before_s" in totals:
        speedup += f", torch-path sanitize {totals['sanitize_before_s']:.2f} s ({totals['overhead_before']:.4f})"
    peak_part = f", {totals['peak_efficiency']:.3f} of the peak" if "peak_efficiency" in totals else ""
    print(
        f"rep {rep + 1}/{reps}: sanitize {totals['sanitize_s']:.2f} s, forward {totals['forward_s']:.2f} s, "
        f"bare forward {totals['bare_forward_s']:.2f} s, overhead {totals['overhead']:.4f}, "
        f"sweep {totals['sweep_gflops']:.1f} GFLOP/s = {totals['flop_efficiency']:.3f} of the GEMM limit "
        f"({limit['gflops']:.1f} GFLOP/s: {limit['source']}){peak_part}{speedup}",
        flush=True,
    )
