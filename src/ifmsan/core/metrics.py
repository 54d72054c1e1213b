"""Privacy and granularity metrics of one sweep curve p(n), exactly as docs/definitions.md states them.

A *curve* is the probabilistic accuracy p(n) of the target class over the swept knob values n (window sizes, or
noise scales for the noise knobs), plus p0, the probability for the unsanitized IFM.

- ε(n) = ln(p0 / p(n)); p(n) = 0 gives +inf.
- γ > 0 is met at n when p(n) <= p0 / 2**γ (paper eq. 6; γ = 0 is refused, as any p(n) <= p0 meets it);
  n*(γ) is the smallest swept n where it is met, None if none.
- A trend inversion is a step between consecutive swept values n' < n with p(n) > p(n'); unsafe windows past the
  knob are the n > n*(γ) with p(n) > p0 / 2**γ.
- γ_max = log2(p0 / min p): every γ <= γ_max has an n*(γ) in the range, no γ > γ_max has one.
- eff_san (paper eq. 8) = number of distinct p(n) after rounding / number of swept values (149 for n = 2..150).

Rounding happens in one place, `round_probabilities`: numpy.round, i.e. rint(p * 10**decimals) / 10**decimals in
float64, with ties (a scaled value exactly at .5) going to the even neighbour. Because the scaling is done in
binary floating point, 0.45 at one decimal gives 0.4 (0.45 * 10 == 4.5 -> 4), unlike Python's round(0.45, 1).
Distinct counts and the Table 1 bins are always taken on the rounded values; comparisons with p0 / 2**γ use the
raw values.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ifmsan._shared.limits import MAX_GAMMA

DEFAULT_DECIMALS = 4
EXTRA_DECIMALS: tuple[int, ...] = (2, 3, 4, 6)
"""Precisions at which reports also show eff_san, since the paper leaves the precision open."""

BIN_EDGES: tuple[float, float, float, float] = (0.0, 0.2, 0.8, 1.0)
"""Table 1's ranges of probabilistic accuracy: the first two are half-open, the last one includes 1.0."""

DEFAULT_GAMMAS: tuple[float, ...] = (0.25, 0.5, 1.0, 2.0, 3.0, 4.0)


MAX_DECIMALS = 12
"""More decimals than this only round away float64 noise in p(n), and the config schema stops at 12 too."""


def check_decimals(decimals: object, *, name: str = "decimals") -> int:
    """Return decimals as int, or raise a ValueError: rounding needs a whole number of decimals in 0..12."""
    if isinstance(decimals, bool) or not isinstance(decimals, (int, np.integer)) or not 0 <= decimals <= MAX_DECIMALS:
        raise ValueError(f"{name} must be an integer in 0..{MAX_DECIMALS}, got {decimals!r}")
    return int(decimals)


def check_gamma(gamma: object, *, name: str = "gamma") -> float:
    """Return γ as float, or raise a ValueError: γ must be finite, > 0 and <= MAX_GAMMA (64: ifmsan._shared.limits).

    The one rule for γ everywhere (report, figures, gamma, GammaSanitizer, the config schema): γ = 0 gives the
    bound p0 / 2**0 = p0, which every n with p(n) <= p0 meets, so it guarantees no privacy at all.
    """
    if isinstance(gamma, bool) or not isinstance(gamma, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name} must be a finite number > 0, got {gamma!r}")
    try:
        value = float(gamma)
    except OverflowError:  # an int past float's range
        value = math.inf
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0 (0 would be met by any p(n) <= p0), got {gamma}")
    if value > MAX_GAMMA:
        raise ValueError(
            f"{name} must be a finite number > 0 and <= {MAX_GAMMA:g}, got {value:g}: p0 / 2**gamma past that is "
            "below the float32 resolution of any softmax, so never met"
        )
    return value


def check_p0(p0: object) -> float:
    """Return p0 as float, or raise a ValueError: ε and γ divide by it, so it must lie in (0, 1]."""
    if isinstance(p0, bool) or not isinstance(p0, (int, float, np.integer, np.floating)):
        raise ValueError(f"p0 must be a probability in (0, 1], got {p0!r}")
    value = float(p0)
    if not (0.0 < value <= 1.0):
        raise ValueError(f"p0 must be a probability in (0, 1], got {value}")
    return value


def check_probabilities(probabilities: Any, *, name: str = "probabilities") -> np.ndarray:
    """Return the probabilities as a 1-D float64 array, or raise a ValueError (empty, not 1-D, NaN, outside [0, 1])."""
    array = np.asarray(probabilities, dtype=np.float64)
    if array.ndim != 1 or array.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D sequence, got shape {array.shape}")
    if not np.all(np.isfinite(array)) or np.any(array < 0.0) or np.any(array > 1.0):
        bad = array[~(np.isfinite(array) & (array >= 0.0) & (array <= 1.0))]
        raise ValueError(f"{name} must be probabilities in [0, 1]; found {bad[:5].tolist()}")
    return array


def check_curve(values: Any, probabilities: Any) -> tuple[np.ndarray, np.ndarray]:
    """Return (values, probabilities) sorted by increasing knob value; raise a ValueError on a malformed curve."""
    probs = check_probabilities(probabilities)
    vals = np.asarray(values)
    if vals.ndim != 1 or vals.shape != probs.shape:
        raise ValueError(f"values must be 1-D and as long as probabilities ({probs.size}), got shape {vals.shape}")
    if not np.issubdtype(vals.dtype, np.number) or not np.all(np.isfinite(vals)):
        raise ValueError(f"values must be finite numbers (window sizes or noise scales), got {vals[:5].tolist()}")
    order = np.argsort(vals, kind="stable")
    vals, probs = vals[order], probs[order]
    if np.any(np.diff(vals) == 0):
        raise ValueError(f"values must not repeat; repeated: {sorted(set(vals[1:][np.diff(vals) == 0].tolist()))}")
    return vals, probs


def _scalar(value: Any) -> int | float:
    """A numpy knob value as a plain Python int (window sizes) or float (noise scales)."""
    return int(value) if np.issubdtype(np.asarray(value).dtype, np.integer) else float(value)


def round_probabilities(probabilities: Any, *, decimals: int = DEFAULT_DECIMALS) -> np.ndarray:
    """The one rounding rule of the project (numpy.round, half to even on the scaled value); see the module doc."""
    return np.round(check_probabilities(probabilities), check_decimals(decimals))


def eff_san(probabilities: Any, *, decimals: int = DEFAULT_DECIMALS) -> float:
    """Paper eq. 8: distinct p(n) after rounding to `decimals`, divided by the number of swept values."""
    rounded = round_probabilities(probabilities, decimals=decimals)
    return np.unique(rounded).size / rounded.size


@dataclass(frozen=True)
class DistinctSummary:
    """eff_san with its numerator, denominator, and the numerator split into Table 1's three ranges."""

    eff_san: float
    n_distinct: int
    n_range: int
    bins: tuple[int, int, int]
    decimals: int


def distinct_summary(probabilities: Any, *, decimals: int = DEFAULT_DECIMALS) -> DistinctSummary:
    """Count distinct rounded p(n) overall and in [0, 0.2), [0.2, 0.8), [0.8, 1.0] (bins on the rounded values)."""
    rounded = round_probabilities(probabilities, decimals=decimals)
    distinct = np.unique(rounded)
    low = int(np.count_nonzero(distinct < BIN_EDGES[1]))
    mid = int(np.count_nonzero((distinct >= BIN_EDGES[1]) & (distinct < BIN_EDGES[2])))
    high = int(np.count_nonzero(distinct >= BIN_EDGES[2]))
    return DistinctSummary(
        eff_san=distinct.size / rounded.size,
        n_distinct=int(distinct.size),
        n_range=int(rounded.size),
        bins=(low, mid, high),
        decimals=check_decimals(decimals),
    )


def table1_row(
    probabilities: Any,
    *,
    zero_ratio: float | None = None,
    ifm_size: int | None = None,
    n_zeros: int | None = None,
    decimals: int = DEFAULT_DECIMALS,
    extra_decimals: Sequence[int] = EXTRA_DECIMALS,
) -> dict[str, float | int | None]:
    """The numbers of one Table 1 row: eff_san (n_distinct / n_range), the three bins, the ratio of zeros,
    and eff_san_<d> for each extra precision d. Without n_zeros, n_zeros = round(zero_ratio * ifm_size)."""
    summary = distinct_summary(probabilities, decimals=decimals)
    if zero_ratio is not None and not (0.0 <= float(zero_ratio) <= 1.0):
        raise ValueError(f"zero_ratio must lie in [0, 1], got {zero_ratio}")
    if ifm_size is not None and int(ifm_size) < 1:
        raise ValueError(f"ifm_size must be >= 1, got {ifm_size}")
    if n_zeros is None and zero_ratio is not None and ifm_size is not None:
        n_zeros = int(round(float(zero_ratio) * int(ifm_size)))
    row: dict[str, float | int | None] = {
        "eff_san": summary.eff_san,
        "n_distinct": summary.n_distinct,
        "n_range": summary.n_range,
        "distinct_0.0_0.2": summary.bins[0],
        "distinct_0.2_0.8": summary.bins[1],
        "distinct_0.8_1.0": summary.bins[2],
        "zero_ratio": None if zero_ratio is None else float(zero_ratio),
        "n_zeros": None if n_zeros is None else int(n_zeros),
        "ifm_size": None if ifm_size is None else int(ifm_size),
    }
    for extra in extra_decimals:
        row[f"eff_san_{check_decimals(extra)}"] = eff_san(probabilities, decimals=extra)
    return row


def privacy_loss(probabilities: Any, *, p0: float) -> np.ndarray:
    """ε(n) = ln(p0 / p(n)) for each p(n); +inf where p(n) == 0."""
    probs = check_probabilities(probabilities)
    base = check_p0(p0)
    with np.errstate(divide="ignore"):
        return np.log(base / probs)


def gamma_bound(p0: float, gamma: float) -> float:
    """p0 / 2**γ: the probability that p(n) must not exceed for γ to be met."""
    return check_p0(p0) / 2.0 ** check_gamma(gamma)


def n_star_for_gamma(values: Any, probabilities: Any, *, p0: float, gamma: float) -> int | float | None:
    """n*(γ): the smallest swept n with p(n) <= p0 / 2**γ (what the paper's Figure 3 loop returns), else None."""
    vals, probs = check_curve(values, probabilities)
    met = np.flatnonzero(probs <= gamma_bound(p0, gamma))
    return _scalar(vals[met[0]]) if met.size else None


@dataclass(frozen=True)
class Inversions:
    """Trend inversions of a curve: how many steps rise, by how much in total, and the n where each rise lands."""

    count: int
    total_rise: float
    at: tuple[int | float, ...] = field(default_factory=tuple)


def trend_inversions(values: Any, probabilities: Any) -> Inversions:
    """Steps between consecutive swept values (increasing order) where p goes up: p(n) > p(previous n)."""
    vals, probs = check_curve(values, probabilities)
    steps = np.diff(probs)
    rising = np.flatnonzero(steps > 0)
    return Inversions(
        count=int(rising.size),
        total_rise=float(steps[rising].sum()),
        at=tuple(_scalar(vals[i + 1]) for i in rising),
    )


def unsafe_past_knob(values: Any, probabilities: Any, *, p0: float, gamma: float) -> tuple[int | float, ...]:
    """The swept n > n*(γ) with p(n) > p0 / 2**γ: where γ is lost again; empty when n*(γ) is None."""
    vals, probs = check_curve(values, probabilities)
    bound = gamma_bound(p0, gamma)
    met = np.flatnonzero(probs <= bound)
    if not met.size:
        return ()
    past = np.arange(vals.size) > met[0]
    return tuple(_scalar(v) for v in vals[past & (probs > bound)])


def gamma_max(probabilities: Any, *, p0: float) -> float:
    """γ_max = log2(p0 / min p): the largest γ the knob reaches in the range (+inf if some p(n) is 0)."""
    probs = check_probabilities(probabilities)
    lowest = float(probs.min())
    return math.inf if lowest == 0.0 else math.log2(check_p0(p0) / lowest)


@dataclass(frozen=True)
class GammaCheck:
    """Everything the γ report says about one curve and one γ, with a one-line verdict."""

    gamma: float
    p0: float
    bound: float
    n_star: int | float | None
    p_at_n_star: float | None
    epsilon_at_n_star: float | None
    gamma_max: float
    inversions: Inversions
    unsafe: tuple[int | float, ...]
    parameter: str
    verdict: str

    @property
    def reachable(self) -> bool:
        """Whether some swept value meets γ."""
        return self.n_star is not None


def format_value(value: int | float) -> str:
    """A knob value as text: window sizes as integers, noise scales in their shortest exact form."""
    return str(value) if isinstance(value, (int, np.integer)) else repr(float(value))


def gamma_check(values: Any, probabilities: Any, *, p0: float, gamma: float, parameter: str = "window") -> GammaCheck:
    """Check one γ on one curve: p0, the bound, n*(γ), ε at n*, inversions, unsafe windows past n*, and a verdict."""
    vals, probs = check_curve(values, probabilities)
    gamma_value = check_gamma(gamma)
    bound = gamma_bound(p0, gamma_value)
    n_star = n_star_for_gamma(vals, probs, p0=p0, gamma=gamma_value)
    unsafe = unsafe_past_knob(vals, probs, p0=p0, gamma=gamma_value)
    top = gamma_max(probs, p0=p0)
    symbol = "n*" if parameter == "window" else f"{parameter}*"
    if n_star is None:
        p_star = eps_star = None
        verdict = (
            f"not reachable in range {format_value(_scalar(vals[0]))}..{format_value(_scalar(vals[-1]))}"
            f" (gamma_max={top:.3f})"
        )
    else:
        p_star = float(probs[np.flatnonzero(vals == n_star)[0]])
        eps_star = float(privacy_loss([p_star], p0=p0)[0])
        verdict = f"met at {symbol}={format_value(n_star)}"
        if unsafe:
            verdict += f"; UNSAFE past {symbol}: {len(unsafe)} value(s) with p > bound"
    return GammaCheck(
        gamma=gamma_value,
        p0=check_p0(p0),
        bound=bound,
        n_star=n_star,
        p_at_n_star=p_star,
        epsilon_at_n_star=eps_star,
        gamma_max=top,
        inversions=trend_inversions(vals, probs),
        unsafe=unsafe,
        parameter=parameter,
        verdict=verdict,
    )


__all__ = [
    "BIN_EDGES",
    "DEFAULT_DECIMALS",
    "DEFAULT_GAMMAS",
    "EXTRA_DECIMALS",
    "MAX_DECIMALS",
    "DistinctSummary",
    "GammaCheck",
    "Inversions",
    "check_decimals",
    "check_gamma",
    "distinct_summary",
    "eff_san",
    "format_value",
    "gamma_bound",
    "gamma_check",
    "gamma_max",
    "n_star_for_gamma",
    "privacy_loss",
    "round_probabilities",
    "table1_row",
    "trend_inversions",
    "unsafe_past_knob",
]
