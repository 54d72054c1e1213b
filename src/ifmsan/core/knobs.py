"""One interface for every sanitization knob, so sweeps, reports and the γ controller treat them alike."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, cast

import numpy as np
import torch

from ifmsan._shared.limits import MAX_SCALE
from ifmsan.core.sanitize import SELECTORS, as_tensor, check_ifm, check_seed, check_window, sample_and_hold_sweep

NOISES: tuple[str, ...] = ("laplace", "gaussian")
KNOBS: tuple[str, ...] = SELECTORS + NOISES
"""Every deterministic-parameter knob name the sweeps, the CLI and the config accept (one number turns each up)."""
RANDOMIZED: tuple[str, ...] = ("hold_gaussian",)
"""Randomized holds: sample-and-hold plus one Gaussian draw per window of an absolute σ (`HoldNoiseKnob`)."""

NOISE_STREAMS: dict[str, int] = {"laplace": 4, "gaussian": 5, "hold_gaussian": 6}
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
    """Additive Laplace or Gaussian noise whose std is the knob value × the IFM's own std, or × a fixed calibration std.

    With `calibration_std` (a number fixed before any query, e.g. the layer's std over a calibration split) the noise
    does not depend on the query: only then does the Fisher-information certificate (`ifmsan.certify`) hold.
    """

    name: str
    seed: int = 0
    parameter: str = "scale"
    default_values: tuple[float, ...] = DEFAULT_SCALES
    calibration_std: float | None = None

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
        std = ifm64.std(correction=0) if self.calibration_std is None else self.calibration_std
        noise = self._unit_noise(tensor) * std
        scale_t = torch.tensor(scales, dtype=torch.float64, device=tensor.device).view(-1, *([1] * tensor.dim()))
        result = (ifm64.unsqueeze(0) + scale_t * noise.unsqueeze(0)).to(tensor.dtype)
        if out is not None:
            out.copy_(result)
            result = out
        return cast(torch.Tensor, result.numpy() if was_numpy else result)  # numpy in, numpy out


@dataclass(frozen=True)
class HoldNoiseKnob:
    """The randomized hold: sample-and-hold, then one N(0, sigma²) draw per window added to all of its copies.

    sigma is absolute and fixed before any query (scale × the layer's calibration std): a σ computed from the query's
    own IFM would void the certificate. One draw per window, not per copy, so the server cannot average it away.
    """

    name: str = "hold_gaussian"
    sigma: float = 0.0
    select: str = "nonzero_mean"
    seed: int = 0
    parameter: str = "window"
    default_values: tuple[float, ...] = DEFAULT_WINDOWS

    def window_noise(self, size: int, window: int) -> torch.Tensor:
        """sigma × one standard normal draw per window, repeated over its copies: (size,) float64, seeded per window."""
        width = min(window, size)
        rows = -(-size // width)
        draws = np.random.default_rng([self.seed, NOISE_STREAMS[self.name], width]).standard_normal(rows)
        return torch.from_numpy(np.repeat(draws * self.sigma, width)[:size])

    def apply(self, ifm: torch.Tensor | np.ndarray, value: float) -> torch.Tensor:
        """The IFM held with one window size, plus its per-window noise."""
        return self.apply_batch(ifm, [check_window(value)])[0, ...]

    def apply_batch(
        self, ifm: torch.Tensor | np.ndarray, values: Sequence[float], *, out: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The IFM held with each window size plus that size's per-window noise: (len(values), *ifm.shape)."""
        tensor, was_numpy = as_tensor(ifm)
        windows = cast(list[int], list(values))
        held = cast(torch.Tensor, sample_and_hold_sweep(tensor, windows, select=self.select, seed=self.seed))
        flat = held.view(len(windows), -1)
        for row, window in enumerate(windows):
            noise = self.window_noise(flat.shape[1], window).to(flat.device)
            flat[row] = (flat[row].to(torch.float64) + noise).to(flat.dtype)
        if out is not None:
            out.copy_(held)
            held = out
        return cast(torch.Tensor, held.numpy() if was_numpy else held)


def knob_with(name: str, options: dict[str, float], *, seed: int = 0) -> WindowKnob | NoiseKnob | HoldNoiseKnob:
    """get_knob with its options from a dict (the attack files record them as knob_<name> attributes)."""
    unknown = sorted(set(options) - {"sigma", "calibration_std"})
    if unknown:
        raise ValueError(f"knob options must be sigma or calibration_std, got {', '.join(unknown)}")
    return get_knob(name, seed=seed, sigma=options.get("sigma"), calibration_std=options.get("calibration_std"))


MAX_SIGMA = 1e30
"""An absolute noise std past this overflows float32 IFMs (3.4e38) in a few standard deviations of its draws."""


def check_sigma(value: object, *, name: str = "sigma") -> float:
    """Return an absolute noise std as float, or raise a ValueError: a finite number > 0 and <= MAX_SIGMA."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name} must be a finite number > 0 (an absolute noise std), got {value!r}")
    sigma = float(value)
    if not (np.isfinite(sigma) and 0 < sigma <= MAX_SIGMA):
        raise ValueError(
            f"{name} must be a finite number > 0 and <= {MAX_SIGMA:g} (an absolute noise std), got {sigma}"
        )
    return sigma


def check_scale(value: object, *, name: str = "scale") -> float:
    """Return a noise scale (x the IFM's std) as float, or raise a ValueError that says what is allowed."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    scale = float(value)
    if not np.isfinite(scale) or scale < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {scale}")
    if scale > MAX_SCALE:
        raise ValueError(f"{name} must be <= {MAX_SCALE:g} (noise this large already buries any IFM), got {scale}")
    return scale


def check_knob_values(
    knob: WindowKnob | NoiseKnob | HoldNoiseKnob, values: Sequence[object], *, name: str = "values"
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


def get_knob(
    name: str, *, seed: int = 0, sigma: float | None = None, calibration_std: float | None = None
) -> WindowKnob | NoiseKnob | HoldNoiseKnob:
    """The knob called name; the seed drives `random` picks and the noise draws.

    sigma: the randomized hold's absolute noise std (required for it, refused for the others). calibration_std: the
    noise knobs' fixed reference std (the scale multiplies it instead of the query's own std).
    """
    if name in RANDOMIZED:
        if sigma is None:
            raise ValueError(f"knob {name} needs sigma, its absolute noise std (scale x the layer's calibration std)")
        if calibration_std is not None:
            raise ValueError(f"knob {name} takes sigma, not calibration_std")
        return HoldNoiseKnob(name, sigma=check_sigma(sigma), seed=check_seed(seed))
    if sigma is not None:
        raise ValueError(f"sigma applies to the randomized knobs ({', '.join(RANDOMIZED)}) only, not to {name!r}")
    if name in SELECTORS:
        if calibration_std is not None:
            raise ValueError(f"calibration_std applies to the noise knobs ({', '.join(NOISES)}) only, not to {name!r}")
        return WindowKnob(name, seed=check_seed(seed))
    if name in NOISES:
        reference = None if calibration_std is None else check_sigma(calibration_std, name="calibration_std")
        return NoiseKnob(name, seed=check_seed(seed), calibration_std=reference)
    raise ValueError(f"knob must be one of {', '.join(KNOBS + RANDOMIZED)}; got {name!r}")
