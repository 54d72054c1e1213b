"""The adversaries' own networks: an adapter from any IFM to a small feature grid, a decoder and an attribute probe.

They are deliberately small, so the attack stage fits a laptop; a stronger attacker only makes the scores higher.
The adapter takes a (C, H, W) IFM through adaptive average pooling to GRID x GRID and a 1x1 convolution, or a
vector IFM through a linear layer onto an 8 x 8 grid that is upsampled to GRID x GRID.
"""

from __future__ import annotations

import math

import torch
from torch import nn

GRID = 16
WIDTH = 64


class Adapter(nn.Module):
    """Any IFM shape -> (WIDTH, GRID, GRID) features."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        super().__init__()
        if len(shape) == 3:
            self.body: nn.Module = nn.Sequential(nn.AdaptiveAvgPool2d(GRID), nn.Conv2d(shape[0], WIDTH, 1), nn.ReLU())
        else:
            features = math.prod(shape)
            self.body = nn.Sequential(
                nn.Flatten(), nn.Linear(features, 32 * 8 * 8), nn.ReLU(), nn.Unflatten(1, (32, 8, 8)),
                nn.Upsample(scale_factor=GRID // 8, mode="nearest"), nn.Conv2d(32, WIDTH, 3, padding=1), nn.ReLU(),
            )  # fmt: skip

    def forward(self, ifm: torch.Tensor) -> torch.Tensor:
        return self.body(ifm)


def check_resolution(resolution: object) -> int:
    """The decoder's output side: GRID times a power of two (32, 64, 128, ...), or a ValueError."""
    if isinstance(resolution, bool) or not isinstance(resolution, int) or resolution < 2 * GRID:
        raise ValueError(f"resolution must be an integer {2 * GRID} * 2**k (32, 64, 128, ...), got {resolution!r}")
    steps = math.log2(resolution / GRID)
    if steps != int(steps):
        raise ValueError(f"resolution must be {GRID} times a power of two (32, 64, 128, ...), got {resolution}")
    return resolution


class Decoder(nn.Module):
    """Sanitized IFM -> RGB image in [0, 1] of resolution x resolution (the inversion adversary)."""

    def __init__(self, shape: tuple[int, ...], *, resolution: int) -> None:
        super().__init__()
        layers: list[nn.Module] = [Adapter(shape)]
        channels = WIDTH
        for _ in range(int(math.log2(check_resolution(resolution) // GRID))):
            out = max(16, channels // 2)
            layers += [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(channels, out, 3, padding=1), nn.ReLU()]
            channels = out
        layers += [nn.Conv2d(channels, 3, 3, padding=1), nn.Sigmoid()]
        self.body = nn.Sequential(*layers)

    def forward(self, ifm: torch.Tensor) -> torch.Tensor:
        return self.body(ifm)


def channel_statistics(ifm: torch.Tensor) -> torch.Tensor:
    """Per channel of a (N, C, H, W) map: mean, standard deviation, and mean absolute difference along x and y."""
    dx = (
        (ifm[..., :, 1:] - ifm[..., :, :-1]).abs().mean(dim=(2, 3))
        if ifm.shape[3] > 1
        else ifm.new_zeros(ifm.shape[:2])
    )
    dy = (
        (ifm[..., 1:, :] - ifm[..., :-1, :]).abs().mean(dim=(2, 3))
        if ifm.shape[2] > 1
        else ifm.new_zeros(ifm.shape[:2])
    )
    return torch.cat([ifm.mean(dim=(2, 3)), ifm.std(dim=(2, 3), correction=0), dx, dy], dim=1)


class Probe(nn.Module):
    """Sanitized IFM -> logits over a private attribute (the attribute-inference adversary).

    Besides a small convolutional trunk on the adapter's grid it sees, for a map, each channel's texture statistics
    over the whole map (channel_statistics), which tell background photos apart and survive any pooling.
    """

    def __init__(self, shape: tuple[int, ...], *, classes: int) -> None:
        super().__init__()
        self.spatial = len(shape) == 3
        self.trunk = nn.Sequential(
            Adapter(shape), nn.Conv2d(WIDTH, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )  # fmt: skip
        statistics = 4 * shape[0] if self.spatial else 0
        self.head = nn.Sequential(nn.Linear(64 + statistics, 128), nn.ReLU(), nn.Linear(128, classes))

    def forward(self, ifm: torch.Tensor) -> torch.Tensor:
        features = [self.trunk(ifm), *([channel_statistics(ifm)] if self.spatial else [])]
        return self.head(torch.cat(features, dim=1))
