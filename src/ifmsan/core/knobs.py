"""One interface for every sanitization knob, so sweeps, reports and the γ controller treat them alike."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, cast

import numpy as np
import torch

from ifmsan.core.sanitize import SELECTORS, as_tensor, check_ifm, check_seed, check_window, sample_and_hold_sweep

NOISES: tuple[str, ...] = ("laplace", "gaussian")
KNOBS: tuple[str, ...] = SELECTORS + NOISES
"""Every knob name the library, the CLI and the config accept."""

NOISE_STREAMS: dict[str, int] = {"laplace": 4, "gaussian": 5}
"""Each noise knob's fixed random stream id: its draws come from numpy's generator seeded [seed, stream id], whatever
the order of any list of knob names. The ids are the knobs' old positions in KNOBS, so earlier results are unchanged."""

DEFAULT_WINDOWS: tuple[int, ...] = tuple(range(2, 151))
DEFAULT_SCALES: tuple[float, ...] = tuple(float(s) for s in np.round(np.linspace(0.0, 5.0, 51), 6))


class Knob(Protocol):
    """A way to sanitize an IFM that is turned up by one number (a window size or a noise scale)."""

    name: str
    parameter: str
    default_values: tuple[float, ...]

    def apply(self, ifm: torch.Tensor | np.ndarray, value: float) -> torch.Tensor:
        """The IFM sanitized at one knob value, same shape and dtype."""
        ...

    def apply_batch(
        self, ifm: torch.Tensor | np.ndarray, values: Sequence[float], *, out: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The IFM sanitized at each value: (len(values), *ifm.shape), written into out when given."""
        ...


@dataclass(frozen=True)
class WindowKnob:
    """Sample-and-hold with a window size as the knob (Algorithm 1 or a baseline selector)."""

    name: str
    seed: int = 0
    parameter: str = "window"
    default_values: tuple[float, ...] = DEFAULT_WINDOWS

    def apply(self, ifm: torch.Tensor | np.ndarray, value: float) -> torch.Tensor:
        """The IFM sanitized with one window size."""
        return self.apply_batch(ifm, [check_window(value)])[0, ...]  # [0, ...]: a 0-d IFM stays a 0-d array

    def apply_batch(
        self, ifm: torch.Tensor | np.ndarray, values: Sequence[float], *, out: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The IFM sanitized with each window size in one pass per size."""
        windows = cast(list[int], list(values))  # checked to be ints there
        result = sample_and_hold_sweep(ifm, windows, select=self.name, seed=self.seed, out=out)
        return cast(torch.Tensor, result)  # a numpy IFM comes back as numpy, as the README shows


@dataclass(frozen=True)
class NoiseKnob:
    """Additive Laplace or Gaussian noise whose standard deviation is the knob value × the IFM's std."""

    name: str
    seed: int = 0
    parameter: str = "scale"
    default_values: tuple[float, ...] = DEFAULT_SCALES

    def _unit_noise(self, ifm: torch.Tensor) -> torch.Tensor:
        """One seeded draw of unit-std noise, shared by every scale (common random numbers)."""
        rng = np.random.default_rng([self.seed, NOISE_STREAMS[self.name]])
        shape = tuple(ifm.shape)
        draw = rng.laplace(0.0, np.sqrt(0.5), shape) if self.name == "laplace" else rng.standard_normal(shape)
        return torch.from_numpy(draw).to(ifm.device)

    def apply(self, ifm: torch.Tensor | np.ndarray, value: float) -> torch.Tensor:
        """The IFM plus noise of scale value × std(IFM)."""
        return self.apply_batch(ifm, [check_scale(value)])[0, ...]

    def apply_batch(
        self, ifm: torch.Tensor | np.ndarray, values: Sequence[float], *, out: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The IFM plus the same unit noise at each scale: (len(values), *ifm.shape)."""
        tensor, was_numpy = as_tensor(ifm)
        check_ifm(tensor)
        scales = [check_scale(v, name=f"values[{i}]") for i, v in enumerate(values)]
        if not scales:
            raise ValueError("values is empty; expected at least one noise scale >= 0")
        ifm64 = tensor.to(torch.float64)
        std = ifm64.std(correction=0)
        noise = self._unit_noise(tensor) * std
        scale_t = torch.tensor(scales, dtype=torch.float64, device=tensor.device).view(-1, *([1] * tensor.dim()))
        result = (ifm64.unsqueeze(0) + scale_t * noise.unsqueeze(0)).to(tensor.dtype)
        if out is not None:
            out.copy_(result)
            result = out
        return cast(torch.Tensor, result.numpy() if was_numpy else result)  # numpy in, numpy out


def check_scale(value: object, *, name: str = "scale") -> float:
    """Return a noise scale as float, or raise a ValueError that says what is allowed."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    scale = float(value)
    if not np.isfinite(scale) or scale < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {scale}")
    return scale


def check_knob_values(
    knob: WindowKnob | NoiseKnob, values: Sequence[object], *, name: str = "values"
) -> list[int | float]:
    """The values of one sweep, or a ValueError: non-empty, each a valid window (or scale), none repeated."""
    values = list(values)
    if not values:
        raise ValueError(
            f"{name} is empty; expected at least one {'window size >= 1' if knob.parameter == 'window' else 'noise scale >= 0'}"
        )
    if knob.parameter == "window":
        checked: list[int | float] = [check_window(v, name=f"{name}[{i}]") for i, v in enumerate(values)]
        if max(checked) > np.iinfo(np.int64).max:
            raise ValueError(
                f"{name}: window {max(checked)} does not fit a 64-bit integer; any window >= the IFM size is one window"
            )
    else:
        checked = [check_scale(v, name=f"{name}[{i}]") for i, v in enumerate(values)]
    repeated = sorted(value for value, count in Counter(checked).items() if count > 1)
    if repeated:
        raise ValueError(
            f"{name} repeat {', '.join(map(str, repeated))}; each {knob.parameter} may appear once in a sweep"
        )
    return checked


def get_knob(name: str, *, seed: int = 0) -> WindowKnob | NoiseKnob:
    """The knob called name; the seed drives `random` picks and the noise draws."""
    if name in SELECTORS:
        return WindowKnob(name, seed=check_seed(seed))
    if name in NOISES:
        return NoiseKnob(name, seed=check_seed(seed))
    raise ValueError(f"knob must be one of {', '.join(KNOBS)}; got {name!r}")
