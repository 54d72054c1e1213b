"""Today's forward path against the one before the fused layers, back to back (--forward-before).

Before the fused layers the network ran nn.LocalResponseNorm and torch max pooling, and the sweep had no gathered
head; `forward_before` swaps those back in for a block, and `experiment` times both sweeps per layer and compares
their p(n) and eff_san.
"""

from __future__ import annotations

import contextlib
import statistics
from collections.abc import Callable, Iterator
from typing import Any

from timing import spread

from .overhead import sweep_layer


@contextlib.contextmanager
def forward_before(net: Any) -> Iterator[int]:
    """Inside the block, the forward path before the fused layers: nn.LocalResponseNorm, torch max pooling.

    The sweeps run inside it also pass head=False (no gathered head), as the forward path was before.
    """
    import torch
    import torch.nn.functional as F

    from ifmsan.models.fused import CaffeLRN, CaffeMaxPool

    lrns = [m for m in net.modules() if isinstance(m, CaffeLRN)]
    pools = [m for m in net.modules() if isinstance(m, CaffeMaxPool)]
    for module in lrns:
        module.forward = lambda x, m=module: F.local_response_norm(x, m.size, alpha=m.alpha, beta=m.beta, k=m.k)
    for module in pools:
        flatten = type(module).__name__ == "MaxPoolFlatten"
        module.forward = lambda x, m=module, flat=flatten: (
            torch.flatten(torch.nn.MaxPool2d.forward(m, x), 1) if flat else torch.nn.MaxPool2d.forward(m, x)
        )
    try:
        yield len(lrns) + len(pools)
    finally:
        for module in lrns + pools:
            del module.forward


def experiment(
    net: Any,
    ifms: dict[str, Any],
    *,
    layers: list[str],
    windows: list[int],
    target: int,
    batch_size: int,
    device: str,
    baseline: dict[str, Any],
    eff_san: Callable[..., float],
    reps: int,
) -> dict[str, Any]:
    """Per layer, the sweep now and with the earlier forward path back to back: sweep times, max |Δp|, eff_san changes."""
    import numpy as np

    now: list[float] = []
    before: list[float] = []
    max_delta, changes, modules = 0.0, {}, 0
    for _ in range(reps):
        rep_now = rep_before = 0.0
        for layer in layers:
            figures, _ = sweep_layer(
                net, ifms[layer], layer=layer, windows=windows, target=target, batch_size=batch_size, device=device
            )
            rep_now += figures["sweep_s"]
            with forward_before(net) as swapped:
                modules = swapped
                figures, probability = sweep_layer(
                    net,
                    ifms[layer],
                    layer=layer,
                    windows=windows,
                    target=target,
                    batch_size=batch_size,
                    device=device,
                    head=False,
                )
            rep_before += figures["sweep_s"]
            max_delta = max(max_delta, float(np.max(np.abs(probability - baseline[layer]))))
            old, new = eff_san(probability), eff_san(baseline[layer])
            if old != new:
                changes[layer] = {"before": old, "now": new}
        now.append(rep_now)
        before.append(rep_before)
    ratios = [n / b for n, b in zip(now, before, strict=False)]
    print(
        f"forward path ({modules} modules swapped back): sweep {statistics.median(now):.2f} s now against "
        f"{statistics.median(before):.2f} s before, back to back; max |Δp| {max_delta:.3g}, "
        f"eff_san changes: {changes or 'none'}",
        flush=True,
    )
    return {
        "modules": modules,
        "sweep_s": spread(now),
        "before_sweep_s": spread(before),
        "sweep_ratio": spread(ratios),
        "max_abs_delta_p": max_delta,
        "eff_san_changes": changes,
        "eff_san_decimals": 4,
    }
