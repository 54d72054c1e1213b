"""The fused sanitizer against the torch path, bit for bit, on every IFM and window (--check)."""

from __future__ import annotations

from typing import Any


def check_paths(ifms: dict[str, Any], windows: list[int], *, batch_size: int) -> dict[str, Any]:
    """Compare the fused sanitizer with the torch path bit for bit on every IFM and window (nonzero_mean, first, random)."""
    import torch

    import ifmsan.core.sanitize as sanitize
    from ifmsan.core.kernels import compiled_kernels

    kernels = compiled_kernels()
    mismatches = []
    for select in ("nonzero_mean", "first", "random"):
        for layer, ifm in ifms.items():
            cpu = ifm.detach().cpu()
            for first in range(0, len(windows), batch_size):
                chunk = windows[first : first + batch_size]
                fused = sanitize.sample_and_hold_sweep(cpu, chunk, select=select, seed=1)
                plain = sanitize.sample_and_hold_sweep(cpu, chunk, select=select, seed=1, kernel=False)
                if not torch.equal(fused.view(torch.int32), plain.view(torch.int32)):
                    mismatches.append(f"{select} {layer} windows {chunk[0]}..{chunk[-1]}")
    return {"fused_path_active": kernels is not None, "bit_identical": not mismatches, "mismatches": mismatches}
