"""Which samples a sample-and-hold release carries, as a linear map: what the certificate and the white-box attack need.

The sanitizer decides, from the IFM's own values, which sample holds each window (`ifmsan.core.sanitize`). That choice
is locally constant in the input almost everywhere, so around one IFM the release is a fixed linear map of it: a
gather (first, random, nonzero_mean), a window mean (mean), and, for nonzero_mean, the samples of an all-zero window
passed through as they are. `Holding` records that map; `Holding.apply` applies it to any vectors laid out like the
IFM (its Jacobian-vector products, or another image's IFM in the white-box attack).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ifmsan.core.sanitize import as_tensor, check_ifm, check_seed, check_select, check_window, window_picks


@dataclass(frozen=True)
class Holding:
    """The release map of one IFM at one window: `rows` windows over `size` samples of the C-order stream."""

    size: int
    window: int
    select: str
    index: torch.Tensor
    """(rows,) int64: the stream index held by each window; -1 for a window mean or an all-zero nonzero_mean window."""
    lengths: torch.Tensor
    """(rows,) int64: each window's length (the last one may be short)."""
    held: torch.Tensor
    """(rows,) bool: whether the window releases one value (held) or its samples as they are (all-zero windows)."""

    @property
    def rows(self) -> int:
        """Number of windows m = ceil(size / window)."""
        return int(self.lengths.numel())

    @property
    def released(self) -> int:
        """Number of distinct released quantities: one per held window plus every sample of a passed-through window."""
        return int(self.held.sum()) + int(self.lengths[~self.held].sum())

    def apply(self, values: torch.Tensor) -> torch.Tensor:
        """The released quantities of vectors laid out like the IFM: (..., size) -> (..., released), linear in values."""
        if values.shape[-1] != self.size:
            raise ValueError(f"values must end in the IFM's {self.size} samples, got shape {tuple(values.shape)}")
        width = min(self.window, self.size)
        lead = values.shape[:-1]
        padded = torch.nn.functional.pad(values, (0, self.rows * width - self.size)).reshape(*lead, self.rows, width)
        if self.select == "mean":
            return padded.sum(dim=-1) / self.lengths.to(values.dtype)
        index = self.index.clamp(min=0).to(values.device)
        chosen = padded.gather(-1, index.expand(*lead, self.rows).unsqueeze(-1)).squeeze(-1)
        held = self.held.to(values.device)
        if bool(held.all()):
            return chosen
        starts = torch.arange(self.rows, device=values.device) * width
        passed = torch.cat(
            [
                torch.arange(int(s), int(s) + int(n), device=values.device)
                for s, n in zip(starts[~held], self.lengths[~held], strict=True)
            ]
        )
        return torch.cat([chosen[..., held], values[..., passed]], dim=-1)


def holding(ifm: torch.Tensor | np.ndarray, window: int, *, select: str = "nonzero_mean", seed: int = 0) -> Holding:
    """The release map of one IFM at one window size, with the selector's choices made exactly as the sanitizer makes them."""
    tensor, _ = as_tensor(ifm)
    check_ifm(tensor)
    select = check_select(select)
    window = check_window(window)
    stream = tensor.reshape(-1).to(torch.float64)
    index, lengths = window_picks(stream, window, select=select, seed=check_seed(seed))
    held = index >= 0 if select != "mean" else torch.ones_like(index, dtype=torch.bool)
    return Holding(size=stream.numel(), window=window, select=select, index=index, lengths=lengths, held=held)
