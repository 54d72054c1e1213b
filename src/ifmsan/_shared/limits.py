"""The one table of numeric limits: the config schema states the same maxima (a test keeps them equal) and the CLI
checks its options against it, so a number the code cannot honour is refused before any work, in either form."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Limit:
    """Allowed range of one kind of number, and why its maximum is where it is."""

    low: float
    high: float
    integer: bool
    why: str
    exclusive_low: bool = False

    def allowed(self) -> str:
        """'an integer in 1..4096' or 'a finite number > 0 and <= 64', for messages."""
        if self.integer:
            return f"an integer in {int(self.low)}..{int(self.high)}"
        return f"a finite number {'>' if self.exclusive_low else '>='} {self.low:g} and <= {self.high:g}"

    def problem(self, value: object) -> str | None:
        """None when `value` is allowed, else what is wrong with it (without the name)."""
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"must be {self.allowed()}, got {value!r}"
        if self.integer and not isinstance(value, int):
            return f"must be {self.allowed()} (an integer, not {value!r})"
        low_ok = value > self.low if self.exclusive_low else value >= self.low
        if not (math.isfinite(value) and low_ok and value <= self.high):
            return f"must be {self.allowed()} ({self.why}), got {value!r}"
        return None


MAX_GAMMA = 64.0
"""γ beyond 64 asks p(n) <= p0 / 2**64 ≈ 5.4e-20 p0 (ε = 44.4): below the float32 resolution of any softmax the
networks compute, so never met; 2**γ stays exact and p0 / 2**γ a normal float64 for every p0 >= 1e-288."""
MAX_WINDOW = 2**31 - 1
"""A window past the IFM's size is one window (the largest IFM of the shipped models has 802816 values); windows are
int64 coordinates and index arithmetic, so this leaves every product of two of them far from overflow."""
MAX_VALUES = 1_000_000
"""Most knob values one sweep evaluates: each is a forward pass (ifmsan._shared.values.MAX_VALUES, the CLI's limit)."""
MAX_SCALE = 1e6
"""Noise of 1e6 x the IFM's std buries any IFM; float32 IFMs overflow near 3.4e38, far above std x 1e6."""
MAX_IMAGES = 100_000
"""Generated images per split: 15 GB of 227x227 RGB at 100000; more needs more memory than a node has."""
MAX_RESOLUTION = 256
"""The attack images are 227 px: a decoded side past 256 only upsamples (and 8192 needs 800 MB per image)."""
MAX_BATCH = 4096
"""Items per forward batch; memory grows with it (the memory estimate refuses what a machine cannot hold)."""
MAX_THREADS = 1024
"""torch threads per process: more than any node's cores; 10**6 threads exhaust memory for their stacks."""
MAX_EPOCHS = 10_000
MAX_ITERATIONS = 1_000_000
MAX_SEED = 2**63 - 1
"""torch.manual_seed takes at most 2**64 - 1 and numpy's seeds are non-negative: int64 holds every seed."""
MAX_LR = 10.0
"""Adam moves each weight by about lr per step: above 10 every step leaves the data's range and training diverges."""
MAX_WEIGHT = 1e6
MAX_PSNR = 200.0
"""dB: an MSE of 1e-20 on [0, 1] pixels; a higher ceiling is never approached by a float32 decoder."""
MAX_MEM_MB = 10**8
MAX_MINUTES = 10**6

LIMITS: dict[str, Limit] = {
    "gamma": Limit(0, MAX_GAMMA, False, "2**gamma must stay a normal float", exclusive_low=True),
    "window": Limit(1, MAX_WINDOW, True, "a window past the IFM's size is one window"),
    "attack_window": Limit(2, MAX_WINDOW, True, "a window past the IFM's size is one window"),
    "scale": Limit(0, MAX_SCALE, False, "noise this large already buries any IFM"),
    "positive_scale": Limit(0, MAX_SCALE, False, "noise this large already buries any IFM", exclusive_low=True),
    "images": Limit(2, MAX_IMAGES, True, "each image is held in memory"),
    "per_class": Limit(1, MAX_IMAGES, True, "each image is held in memory"),
    "examples": Limit(1, MAX_IMAGES, True, "the grid figure needs at least one"),
    "cli_examples": Limit(0, MAX_IMAGES, True, "each image is held in memory"),
    "optimize_images": Limit(1, MAX_IMAGES, True, "each image is held in memory"),
    "cli_optimize_images": Limit(0, MAX_IMAGES, True, "each image is held in memory"),
    "resolution": Limit(32, MAX_RESOLUTION, True, "the attack images are 227 px"),
    "batch": Limit(1, MAX_BATCH, True, "memory grows with the batch"),
    "threads": Limit(1, MAX_THREADS, True, "more threads than any node has cores"),
    "epochs": Limit(1, MAX_EPOCHS, True, "epochs past this never end in a job's time"),
    "epochs0": Limit(0, MAX_EPOCHS, True, "epochs past this never end in a job's time"),
    "iterations": Limit(1, MAX_ITERATIONS, True, "steps past this never end in a job's time"),
    "probes": Limit(2, MAX_BATCH, True, "each probe is a forward-mode pass held in memory"),
    "seed": Limit(0, MAX_SEED, True, "seeds are non-negative int64"),
    "lr": Limit(0, MAX_LR, False, "a larger step diverges", exclusive_low=True),
    "weight": Limit(0, MAX_WEIGHT, False, "a prior this heavy ignores the data"),
    "psnr": Limit(0, MAX_PSNR, False, "no decoder gets near it", exclusive_low=True),
    "mem_mb": Limit(100, MAX_MEM_MB, True, "no node has 100 TB"),
    "minutes": Limit(1, MAX_MINUTES, True, "about two years"),
    "retries": Limit(0, 100, True, "retries past this only delay the error"),
    "timeout": Limit(0, 86400, False, "a day", exclusive_low=True),
}
"""Limit name -> range. Schema keys and CLI options name one of these."""

SCHEMA_LIMITS: dict[str, str] = {
    "train_mini.epochs": "epochs",
    "train_mini.train_per_class": "per_class",
    "train_mini.test_per_class": "per_class",
    "train_mini.seed": "seed",
    "train_mini.threads": "threads",
    "windows.start": "window",
    "windows.stop": "window",
    "windows.step": "window",
    "noise_scales[]": "scale",
    "gammas[]": "gamma",
    "seed": "seed",
    "batch_size": "batch",
    "threads": "threads",
    "workers": "threads",
    "attacks.windows[]": "attack_window",
    "attacks.scales[]": "positive_scale",
    "attacks.gammas[]": "gamma",
    "attacks.n_train": "images",
    "attacks.n_test": "images",
    "attacks.epochs.adaptive": "epochs0",
    "attacks.epochs.inversion": "epochs",
    "attacks.epochs.attribute": "epochs",
    "attacks.n_examples": "examples",
    "attacks.seed": "seed",
    "attacks.batch_size": "batch",
    "attacks.threads": "threads",
    "attacks.mem_mb": "mem_mb",
    "attacks.runtime": "minutes",
    "certify.windows[]": "window",
    "certify.scales[]": "positive_scale",
    "certify.probes": "probes",
    "certify.calibration_images": "images",
    "certify.gammas[]": "gamma",
    "certify.psnr_targets[]": "psnr",
    "certify.n_train": "images",
    "certify.n_test": "images",
    "certify.epochs.adaptive": "epochs0",
    "certify.epochs.inversion": "epochs",
    "certify.epochs.attribute": "epochs",
    "certify.optimize.images": "optimize_images",
    "certify.optimize.iterations": "iterations",
    "certify.optimize.lr": "lr",
    "certify.optimize.tv_weight": "weight",
    "certify.seed": "seed",
    "certify.batch_size": "batch",
    "certify.threads": "threads",
    "certify.mem_mb": "mem_mb",
    "certify.runtime": "minutes",
}
"""Config key (lists as key[]) -> limit; the schema's minimum and maximum of each key are the limit's."""

CLI_LIMITS: dict[str, str] = {
    "gammas": "gamma",
    "noise_scale": "positive_scale",
    "scale": "scale",
    "sigma": "positive_scale",
    "n_train": "images",
    "n_test": "images",
    "n_images": "images",
    "resolution": "resolution",
    "n_examples": "cli_examples",
    "optimize_images": "cli_optimize_images",
    "optimize_iterations": "iterations",
    "epochs_adaptive": "epochs0",
    "epochs_inversion": "epochs",
    "epochs_attribute": "epochs",
    "epochs": "epochs",
    "train_per_class": "per_class",
    "test_per_class": "per_class",
    "batch_size": "batch",
    "threads": "threads",
    "probes": "probes",
    "seed": "seed",
    "init_seed": "seed",
    "chain_seed": "seed",
    "workers": "threads",
    "lr_adaptive": "lr",
    "lr_attack": "lr",
    "optimize_lr": "lr",
    "optimize_tv": "weight",
    "psnr_targets": "psnr",
    "retries": "retries",
    "timeout": "timeout",
}
"""argparse dest -> limit: every verb's option of that name is checked (ifmsan.cli.main, before the verb runs)."""


def flag(dest: str) -> str:
    """--n-train from n_train."""
    return "--" + dest.replace("_", "-")


TEXT_LIMITS: dict[str, str] = {"values": "window", "windows": "window", "scales": "scale"}
"""Options given as text (START:STOP[:STEP] or a comma list): each number in them is checked against the limit; an
attack's --values are scales for a noise knob. (sanitize's --window has no limit: it writes no window coordinate.)"""
NOISE_KNOBS = ("laplace", "gaussian")


def _text_numbers(text: str) -> list[float]:
    """The numbers in a list or range option, as far as they read as numbers (the verb names any other mistake)."""
    numbers = []
    for item in text.replace(":", ",").split(","):
        try:
            numbers.append(float(item))
        except (ValueError, OverflowError):
            continue
    return numbers


def cli_problems(options: Mapping[str, Any]) -> list[str]:
    """One line per option above its limit (or out of its range), e.g. '--n-train must be an integer in 2..100000'.

    Only the maximum is checked here: each verb checks the minimum and finiteness itself, with its own message, so
    each mistake keeps one message.
    """
    problems = []
    for dest, name in CLI_LIMITS.items():
        value = options.get(dest)
        limit = LIMITS[name]
        for item in value if isinstance(value, list) else [value]:
            if item is None or isinstance(item, bool) or not isinstance(item, (int, float)):
                continue
            if math.isfinite(item) and item > limit.high:
                problems.append(f"{flag(dest)} {limit.problem(item)}")
                break
    chains = options.get("chain")
    for chain in [chains] if isinstance(chains, str) else chains if isinstance(chains, list) else []:
        if isinstance(chain, str) and (
            huge := [w for w in re.findall(r"@([0-9]+)", chain) if len(w) > 12 or int(w) > MAX_WINDOW]
        ):
            problems.append(f"--chain {chain!r}: window {huge[0]} is above the largest window, {MAX_WINDOW}")
            break
    for dest, name in TEXT_LIMITS.items():
        text = options.get(dest)
        if not isinstance(text, str):
            continue
        if dest == "values" and options.get("knob") in NOISE_KNOBS:
            name = "scale"
        limit = LIMITS[name]
        if too_large := [n for n in _text_numbers(text) if math.isfinite(n) and n > limit.high]:
            what = "window" if name == "window" else "noise scale"
            largest = f"{int(limit.high)}" if limit.integer else f"{limit.high:g}"
            problems.append(
                f"{flag(dest)} {text!r}: {too_large[0]:g} is above the largest {what}, {largest} ({limit.why})"
            )
    return problems


__all__ = ["CLI_LIMITS", "LIMITS", "Limit", "MAX_GAMMA", "MAX_VALUES", "MAX_WINDOW", "SCHEMA_LIMITS", "cli_problems"]
