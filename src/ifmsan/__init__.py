"""ifmsan: sanitize CNN input feature maps by sample-and-hold approximation and measure the privacy loss."""

from __future__ import annotations

import os as _os
from importlib import metadata as _metadata
from typing import Any

# Idle OpenMP threads sleep instead of spinning, so the fused kernels' threads get the cores between torch's parallel
# regions (a 25-40 % faster sanitizer on 2 cores, benchmarks/README.md). Read when torch loads, so only if it has
# not been imported yet; a value the user set wins.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from ifmsan.knobs import KNOBS, get_knob
from ifmsan.sanitize import SELECTORS, sample_and_hold, sample_and_hold_sweep

try:
    __version__ = _metadata.version("ifmsan")
except _metadata.PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0+unknown"

_LAZY = {
    "models": ("ifmsan.models", None),
    "caffe": ("ifmsan.caffe", None),
    "metrics": ("ifmsan.metrics", None),
    "eff_san": ("ifmsan.metrics", "eff_san"),
    "GammaSanitizer": ("ifmsan.gamma", "GammaSanitizer"),
    "GammaNotReached": ("ifmsan.gamma", "GammaNotReached"),
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
    "get_knob",
    "metrics",
    "models",
    "sample_and_hold",
    "sample_and_hold_sweep",
    "__version__",
]
