"""Scores read back from files, checked for range and finiteness before a table, figure or verdict uses them.

A NaN compares false with every bound, so an unchecked NaN ε reads as "broken" and an infinite PSNR as a perfect
reconstruction. Every reader of attack files (io.read_attack) and of sweep curves (report.curves) checks here, and
a value out of its range is a ValueError naming the file, the variable and the value.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import xarray as xr


@dataclass(frozen=True)
class Range:
    """Where a score may lie: [low, high] (low excluded when low_open); NaN only when allow_nan."""

    low: float = -math.inf
    high: float = math.inf
    low_open: bool = False
    allow_nan: bool = False

    def holds(self, value: float) -> bool:
        """Whether `value` is finite and inside the range (or NaN where allowed)."""
        if math.isnan(value):
            return self.allow_nan
        if not math.isfinite(value):
            return False
        return (self.low < value if self.low_open else self.low <= value) and value <= self.high

    def expected(self) -> str:
        """The range in words, for messages."""
        if self.low == -math.inf and self.high == math.inf:
            text = "a finite number"
        elif self.high == math.inf:
            text = f"a finite number {'>' if self.low_open else '>='} {self.low:g}"
        else:
            text = f"a number in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}]"
        return text + (" (or NaN)" if self.allow_nan else "")


FRACTION = Range(0.0, 1.0)
"""Accuracies, probabilities, rates, chance levels, and MSEs of images whose pixels lie in [0, 1]."""
FINITE = Range()
"""PSNRs (dB) and privacy losses ε = ln(p0 / p)."""
SIMILARITY = Range(-1.0, 1.0)
"""SSIM."""
P0 = Range(0.0, 1.0, low_open=True)
"""The unsanitized probability: ε and γ divide by it."""

ATTACK_METRICS: dict[str, Range] = {
    "legit_accuracy": FRACTION, "legit_p_target": FRACTION, "epsilon_legit": FINITE,
    "adaptive_accuracy": FRACTION, "adaptive_p_target": FRACTION, "epsilon_adaptive": FINITE,
    "inversion_psnr": FINITE, "inversion_ssim": SIMILARITY, "attribute_accuracy": FRACTION,
    "inversion_mse": FRACTION, "optimization_mse": FRACTION, "optimization_mse_se": Range(0.0, 1.0, allow_nan=True),
    "optimization_psnr": FINITE, "optimization_ssim": SIMILARITY,
}  # fmt: skip
"""The range of each metric of an attack file's `scores` (attacks.options.METRICS and OPTIMIZE_METRICS)."""
EPSILON_OF: dict[str, str] = {"epsilon_legit": "legit_p_target", "epsilon_adaptive": "adaptive_p_target"}
"""ε = ln(p0 / p) is +inf exactly where its p is 0 (attacks.scores.epsilon); any other infinity is refused."""
ATTACK_ATTRS: dict[str, Range] = {
    "p0": P0, "original_accuracy": FRACTION, "label_majority": FRACTION, "attribute_chance": FRACTION,
    "attribute_majority": FRACTION, "mean_image_psnr": FINITE, "mean_image_ssim": SIMILARITY,
    "mean_image_mse": FRACTION,
}  # fmt: skip
"""The range of each numeric attribute of an attack file that the summary, figures or certificate read."""
COUNTS: tuple[str, ...] = ("n_train", "n_test")
"""Attack-file attributes that must be whole numbers >= 1."""


def number(value: Any, *, name: str, source: str, bounds: Range) -> float:
    """`value` as a float inside `bounds`, or a ValueError naming the file, the variable and the value."""
    try:
        result = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{source}: {name} = {value!r} is not a number; expected {bounds.expected()}") from None
    if not bounds.holds(result):
        raise ValueError(f"{source}: {name} = {result!r}; expected {bounds.expected()}")
    return result


def count(value: Any, *, name: str, source: str, minimum: int = 1) -> int:
    """`value` as a whole number >= minimum, or a ValueError naming the file, the variable and the value."""
    result = number(value, name=name, source=source, bounds=Range(float(minimum)))
    if not result.is_integer():
        raise ValueError(f"{source}: {name} = {result!r}; expected a whole number >= {minimum}")
    return int(result)


def check_attack_scores(dataset: xr.Dataset, *, source: str) -> xr.Dataset:
    """Every score and numeric attribute of an attack file inside its range; return the Dataset."""
    attrs: Mapping[str, Any] = dataset.attrs
    for key, bounds in ATTACK_ATTRS.items():
        if key in attrs:
            number(attrs[key], name=f"attribute {key}", source=source, bounds=bounds)
    for key in COUNTS:
        if key in attrs:
            count(attrs[key], name=f"attribute {key}", source=source)
    scores = dataset["scores"]
    if scores.dims != ("parameter", "metric"):
        raise ValueError(f"{source}: scores has dimensions {scores.dims}; expected (parameter, metric)")
    if not np.issubdtype(scores.dtype, np.number):
        raise ValueError(f"{source}: scores holds {scores.dtype} values; expected numbers")
    metrics = [str(m) for m in dataset["metric"].values]
    labels = [str(p) for p in dataset["parameter"].values]
    table = np.asarray(scores.values, dtype=np.float64)
    if "value" in dataset.coords:
        for label, value in zip(labels, np.asarray(dataset["value"].values, dtype=np.float64), strict=True):
            number(value, name=f"value of parameter {label}", source=source, bounds=Range(0.0))
    for column, metric in enumerate(metrics):
        bounds = ATTACK_METRICS.get(metric, FINITE)
        paired = EPSILON_OF.get(metric)
        for row, label in enumerate(labels):
            value = float(table[row, column])
            if paired in metrics and value == math.inf and table[row, metrics.index(paired)] == 0.0:
                continue  # ln(p0 / 0)
            number(value, name=f"scores[{metric}] at parameter {label}", source=source, bounds=bounds)
    return dataset


def check_curve_extras(values: Mapping[str, Any], *, source: str) -> None:
    """A sweep curve's zero_ratio in [0, 1], ifm_size >= 1 and n_zeros in [0, ifm_size], where present (None: absent)."""
    if values.get("zero_ratio") is not None:
        number(values["zero_ratio"], name="zero_ratio", source=source, bounds=FRACTION)
    size = None if values.get("ifm_size") is None else count(values["ifm_size"], name="ifm_size", source=source)
    if values.get("n_zeros") is not None:
        zeros = count(values["n_zeros"], name="n_zeros", source=source, minimum=0)
        if size is not None and zeros > size:
            raise ValueError(f"{source}: n_zeros = {zeros} exceeds ifm_size = {size}; expected at most ifm_size")


def check_knob_values_read(values: np.ndarray, *, parameter: str, source: str) -> None:
    """A sweep's knob values as a sanitizer takes them: windows whole numbers >= 1, noise scales >= 0."""
    bad = values[(values < 1) | (values != np.floor(values))] if parameter == "window" else values[values < 0]
    if bad.size:
        expected = "whole numbers >= 1" if parameter == "window" else "numbers >= 0"
        raise ValueError(f"{source}: {parameter} = {bad[0].item()!r}; expected {parameter}s that are {expected}")


NORM = Range(0.0)
"""Squared Jacobian norms of a certificate map file and their standard errors: finite and >= 0."""
CERTIFY_VARIABLES: tuple[str, ...] = ("g_hat", "held_norm", "held_norm_se", "full_norm", "full_norm_se")
"""The variables of a certificate map file the certificate reads."""


def check_certify_maps(dataset: xr.Dataset, *, source: str) -> xr.Dataset:
    """Every squared norm of a certificate map file finite and >= 0, the first offender named; return the Dataset."""
    for name in CERTIFY_VARIABLES:
        if name not in dataset.data_vars:
            continue
        values = np.asarray(dataset[name].values, dtype=np.float64).ravel()
        bad = ~(np.isfinite(values) & (values >= 0.0))
        if bad.any():
            number(values[int(np.argmax(bad))], name=f"{name} (value {int(np.argmax(bad))} of {values.size})",
                   source=source, bounds=NORM)  # fmt: skip
    return dataset
