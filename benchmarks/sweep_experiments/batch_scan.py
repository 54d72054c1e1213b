"""The bare forward per layer at several batch sizes, contiguous and channels_last (--scan)."""

from __future__ import annotations

import time
from typing import Any

from timing import spread, synchronize


def plain_batches_forward(
    net: Any, ifm: Any, *, layer: str, n_values: int, batch_size: int, device: str, channels_last: bool = False
) -> float:
    """Whole forwards of n_values copies of the unsanitized IFM in batches of batch_size."""
    import torch

    buffer = torch.empty((min(batch_size, n_values), *ifm.shape), dtype=ifm.dtype, device=ifm.device)
    if channels_last and buffer.dim() == 4:
        buffer = buffer.contiguous(memory_format=torch.channels_last)
    buffer.copy_(ifm.expand(buffer.shape))
    elapsed = 0.0
    with torch.inference_mode():
        for start in range(0, n_values, batch_size):
            batch = buffer[: min(batch_size, n_values - start)]
            synchronize(device)
            begin = time.perf_counter()
            torch.softmax(net.forward_from(layer, batch).double(), dim=1)
            synchronize(device)
            elapsed += time.perf_counter() - begin
    return elapsed


def scan_batches(
    net: Any, ifms: dict[str, Any], *, layers: list[str], n_values: int, sizes: list[int], reps: int, device: str
) -> dict[str, Any]:
    """Bare forward seconds per layer for each batch size, with contiguous and with channels_last tensors and weights."""
    import torch

    table: dict[str, dict[str, list[float]]] = {layer: {} for layer in layers}
    for _ in range(reps):
        for channels_last in (False, True):
            net.to(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
            for size in sizes:
                key = f"{size}{'_channels_last' if channels_last else ''}"
                for layer in layers:
                    seconds = plain_batches_forward(
                        net,
                        ifms[layer],
                        layer=layer,
                        n_values=n_values,
                        batch_size=size,
                        device=device,
                        channels_last=channels_last,
                    )
                    table[layer].setdefault(key, []).append(seconds)
    net.to(memory_format=torch.contiguous_format)
    result = {layer: {key: spread(values) for key, values in row.items()} for layer, row in table.items()}
    keys = list(next(iter(table.values())))
    totals = {key: spread([sum(table[layer][key][r] for layer in layers) for r in range(reps)]) for key in keys}
    print("bare forward by batch size (median s): " + ", ".join(f"{k} {v['median']:.2f}" for k, v in totals.items()))
    return {"layers": result, "total": totals}
