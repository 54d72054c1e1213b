"""Build synthetic sweep Datasets exactly in the format docs/netcdf.md documents for `ifmsan sweep` output."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import xarray as xr

PER_IMAGE_ATTRS = ("p0", "target", "zero_ratio", "n_zeros", "chain_p")
"""Attributes that become per-image variables when sweeps are concatenated along `image` (docs/netcdf.md names
p0, target, zero_ratio; the sweep engine also writes n_zeros and chain_p, which are per image too)."""


def make_sweep(
    probabilities: Sequence[float],
    *,
    values: Sequence[float] | None = None,
    parameter: str = "window",
    p0: float = 0.9,
    layer: str = "pool5",
    knob: str = "nonzero_mean",
    chain: str = "",
    model: str = "alexnet_mini",
    image_id: str = "img0",
    ifm_size: int = 43264,
    zero_ratio: float = 0.5,
    n_zeros: int | None = None,
    stand_in: int = 1,
    target: int = 3,
) -> xr.Dataset:
    """One sweep: `probability`, `top1`, `top1_probability` over `window` (int64) or `scale` (float64), with the
    attrs of docs/netcdf.md plus the extras src/ifmsan/steps/sweep.py writes (n_zeros, chain_p, seed, trained)."""
    probs = np.asarray(probabilities, dtype=np.float64)
    if values is None:
        values = range(2, 2 + probs.size) if parameter == "window" else np.linspace(0.0, 1.0, probs.size)
    coord = np.asarray(values, dtype=np.int64 if parameter == "window" else np.float64)
    top1 = np.where(probs >= 0.5, target, (target + 1) % 10).astype(np.int64)
    return xr.Dataset(
        {
            "probability": ((parameter,), probs),
            "top1": ((parameter,), top1),
            "top1_probability": ((parameter,), np.maximum(probs, 1.0 - probs)),
        },
        coords={parameter: coord},
        attrs={
            "p0": float(p0),
            "target": int(target),
            "target_source": "original_top1",
            "original_top1": int(target),
            "model": model,
            "image_id": image_id,
            "layer": layer,
            "knob": knob,
            "parameter": parameter,
            "chain": chain,
            "ifm_size": int(ifm_size),
            "zero_ratio": float(zero_ratio),
            "n_zeros": int(round(zero_ratio * ifm_size)) if n_zeros is None else int(n_zeros),
            "chain_p": float(p0) if chain else float("nan"),
            "seed": 0,
            "trained": 1,
            "ifmsan_version": "0.1.0",
            "weights_sha": "0" * 64,
            "image_sha256": "1" * 64,
            "stand_in": int(stand_in),
            "config_hash": "abc123",
        },
    )


def concat_images(sweeps: Sequence[xr.Dataset]) -> xr.Dataset:
    """Sweeps of several images (same layer/knob/chain) along a new `image` dimension; p0, target, zero_ratio
    become per-image variables and image_id moves into the `image` coordinate."""
    parts = []
    for sweep in sweeps:
        part = sweep.copy()
        for name in PER_IMAGE_ATTRS:
            part[name] = part.attrs.pop(name)
        part = part.expand_dims(image=[part.attrs.pop("image_id")])
        part.attrs.pop("image_sha256", None)
        parts.append(part)
    combined = xr.concat(parts, dim="image", combine_attrs="drop_conflicts")
    for name in PER_IMAGE_ATTRS:
        combined[name] = combined[name].astype(np.int64 if name in ("target", "n_zeros") else np.float64)
    return combined


def write_sweep(sweep: xr.Dataset, path: Path) -> Path:
    """Write a sweep to NetCDF the way the sweep engine does (ifmsan.steps.io.write_netcdf: compressed, atomic)."""
    from ifmsan.steps.io import write_netcdf

    return write_netcdf(sweep, path)
