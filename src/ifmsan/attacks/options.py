"""The options of one attack run and the metrics its file holds: sizes, epochs, learning rates, the optimization attack."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from ifmsan.attacks.nets import check_resolution

METRICS: tuple[str, ...] = (
    "legit_accuracy", "legit_p_target", "epsilon_legit", "adaptive_accuracy", "adaptive_p_target", "epsilon_adaptive",
    "inversion_psnr", "inversion_ssim", "attribute_accuracy",
)  # fmt: skip
"""The `metric` coordinate of an attack file, in this order."""
OPTIMIZE_METRICS: tuple[str, ...] = (
    "inversion_mse", "optimization_mse", "optimization_mse_se", "optimization_psnr", "optimization_ssim",
)  # fmt: skip
"""Appended to METRICS when the white-box optimization attack runs (optimize_images > 0): MSEs in [0, 1] pixels."""


@dataclass(frozen=True)
class AttackOptions:
    """Sizes, epochs and learning rates of one attack run; the same options give bit-identical scores."""

    n_train: int = 300
    n_test: int = 100
    epochs_adaptive: int = 3
    epochs_inversion: int = 10
    epochs_attribute: int = 15
    lr_adaptive: float = 1e-4
    lr_attack: float = 2e-3
    resolution: int = 64
    batch_size: int = 32
    n_examples: int = 4
    seed: int = 0
    threads: int = 1
    optimize_images: int = 0
    """Held-out images the white-box optimization attack reconstructs (0: it does not run)."""
    optimize_iterations: int = 100
    optimize_lr: float = 0.05
    optimize_tv: float = 0.0

    def metrics(self) -> tuple[str, ...]:
        """The metric coordinate of the file these options make."""
        return METRICS + (OPTIMIZE_METRICS if self.optimize_images else ())

    def recorded(self) -> dict[str, Any]:
        """The options as file attributes; the optimization attack's only when it runs."""
        return {k: v for k, v in asdict(self).items() if self.optimize_images or not k.startswith("optimize_")}

    def check(self) -> AttackOptions:
        """Return self, or raise a ValueError naming the first option out of range."""
        minimum = {"n_train": 2, "n_test": 2, "epochs_adaptive": 0, "epochs_inversion": 1, "epochs_attribute": 1,
                   "batch_size": 1, "n_examples": 0, "seed": 0, "threads": 1, "optimize_images": 0,
                   "optimize_iterations": 1}  # fmt: skip
        for name, low in minimum.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"attack option {name} must be an integer >= {low}, got {value!r}")
        for name in ("lr_adaptive", "lr_attack", "optimize_lr", "optimize_tv"):
            value = getattr(self, name)
            zero_ok = name == "optimize_tv"
            bad = isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)
            if bad or value < 0 or (not zero_ok and value == 0):
                raise ValueError(
                    f"attack option {name} must be a finite number {'>=' if zero_ok else '>'} 0, got {value!r}"
                )
        if self.optimize_images > self.n_test:
            raise ValueError(
                f"attack option optimize_images ({self.optimize_images}) must not exceed n_test ({self.n_test})"
            )
        check_resolution(self.resolution)
        if self.n_examples > self.n_test:
            raise ValueError(f"attack option n_examples ({self.n_examples}) must not exceed n_test ({self.n_test})")
        return self
