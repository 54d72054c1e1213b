"""A device's sweeps and sanitizer calls against the CPU's (--compare-cpu, for --device cuda)."""

from __future__ import annotations

from typing import Any

from .overhead import sweep_layer


def compare_with_cpu(
    net: Any,
    ifms: dict[str, Any],
    *,
    layers: list[str],
    windows: list[int],
    target: int,
    batch_size: int,
    probabilities: dict[str, Any],
) -> dict[str, Any]:
    """The same sweeps on a CPU copy of the network (max |Δp| per layer) and every sanitizer call on the CPU (how many
    windows' sanitized IFMs differ in any bit, and by how much at most)."""
    import copy

    import numpy as np
    import torch

    from ifmsan.core.sanitize import sample_and_hold_sweep

    cpu_net = copy.deepcopy(net).to("cpu")
    rows = {}
    for layer in layers:
        here = ifms[layer]
        there = here.detach().cpu()
        _, p_cpu = sweep_layer(
            cpu_net, there, layer=layer, windows=windows, target=target, batch_size=batch_size, device="cpu"
        )
        differing, largest = 0, 0.0
        for first in range(0, len(windows), batch_size):
            chunk = windows[first : first + batch_size]
            on_device = sample_and_hold_sweep(here, chunk).cpu()
            on_cpu = sample_and_hold_sweep(there, chunk)
            same = (on_device.view(torch.int32) == on_cpu.view(torch.int32)).reshape(len(chunk), -1).all(dim=1)
            differing += int((~same).sum())
            largest = max(largest, float((on_device - on_cpu).abs().max()))
        rows[layer] = {
            "max_abs_delta_p": float(np.max(np.abs(probabilities[layer] - p_cpu))),
            "windows_differing": differing,
            "max_abs_delta_sanitized": largest,
        }
    summary = {
        "max_abs_delta_p": max(row["max_abs_delta_p"] for row in rows.values()),
        "windows_differing": sum(row["windows_differing"] for row in rows.values()),
        "windows": len(windows) * len(layers),
    }
    print(
        f"{next(net.parameters()).device} against CPU: max |Δp| {summary['max_abs_delta_p']:.3g}, sanitized IFMs "
        f"differing in {summary['windows_differing']} of {summary['windows']} (layer, window) pairs",
        flush=True,
    )
    return {"layers": rows, **summary}
