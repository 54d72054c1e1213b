"""ifmsan: sanitize CNN input feature maps by sample-and-hold approximation and measure the privacy loss.

Importing ifmsan has no side effects and loads no torch: every public name is imported on first use.

Performance advice: set `OMP_WAIT_POLICY=PASSIVE` in the environment before torch is imported, so idle OpenMP threads
sleep instead of spinning and the fused sanitizer kernels' threads get the cores between torch's parallel regions
(benchmarks/README.md has the measurement). The `ifmsan` command and the benchmark set it unless you did; a library
user decides for their own process.
"""

from __future__ import annotations

from importlib import metadata as _metadata
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ifmsan.core.knobs import KNOBS, get_knob
    from ifmsan.core.sanitize import SELECTORS, sample_and_hold, sample_and_hold_sweep

try:
    __version__ = _metadata.version("ifmsan")
except _metadata.PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0+unknown"

_LAZY = {
    "KNOBS": ("ifmsan.core.knobs", "KNOBS"),
    "get_knob": ("ifmsan.core.knobs", "get_knob"),
    "SELECTORS": ("ifmsan.core.sanitize", "SELECTORS"),
    "sample_and_hold": ("ifmsan.core.sanitize", "sample_and_hold"),
    "sample_and_hold_sweep": ("ifmsan.core.sanitize", "sample_and_hold_sweep"),
    "models": ("ifmsan.models", None),
    "caffe": ("ifmsan.models.caffe", None),
    "metrics": ("ifmsan.core.metrics", None),
    "gamma": ("ifmsan.core.controller", None),
    "eff_san": ("ifmsan.core.metrics", "eff_san"),
    "GammaSanitizer": ("ifmsan.core.controller", "GammaSanitizer"),
    "GammaNotReached": ("ifmsan.core.controller", "GammaNotReached"),
}


def __getattr__(name: str) -> Any:
    """Import the heavier submodules only when they are first used."""
    if name not in _LAZY:
        raise AttributeError(f"module 'ifmsan' has no attribute {name!r}")
    import importlib

    module_name, attr = _LAZY[name]
    module = importlib.import_module(module_name)
    value = module if attr is None else getattr(module, attr)
    globals()[name] = value
    return value


__all__ = [
    "KNOBS",
    "SELECTORS",
    "GammaNotReached",
    "GammaSanitizer",
    "caffe",
    "eff_san",
    "gamma",
    "get_knob",
    "metrics",
    "models",
    "sample_and_hold",
    "sample_and_hold_sweep",
    "__version__",
]
