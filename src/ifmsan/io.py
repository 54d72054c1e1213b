"""NetCDF in and out: labelled IFMs and sweep curves with provenance, written atomically and compressed."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from ifmsan.atomic import atomic_path

SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
"""Ids that become file names: letters, digits, '_', '.', '-', not starting with a dot, no path separators."""


def check_id(value: str, *, name: str = "id") -> str:
    """Return an id that is safe as a path component, or raise a ValueError that says what is allowed."""
    if not isinstance(value, str) or not SAFE_ID.match(value) or ".." in value:
        raise ValueError(
            f"{name} {value!r} is not a safe id: expected 1-128 letters, digits, '_', '.' or '-', "
            "starting with a letter or digit and without '..'"
        )
    return value


def config_hash(config: Mapping[str, Any]) -> str:
    """A short stable hash of a configuration, recorded in every output for provenance."""
    text = json.dumps(config, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _clean_attrs(attrs: Mapping[str, Any]) -> dict[str, Any]:
    """NetCDF attributes accept str and numbers only: booleans become 0/1 and None becomes ''."""
    cleaned: dict[str, Any] = {}
    for key, value in attrs.items():
        if isinstance(value, bool | np.bool_):
            cleaned[key] = int(value)
        elif value is None:
            cleaned[key] = ""
        elif isinstance(value, str | int | float | np.integer | np.floating):
            cleaned[key] = value
        else:
            cleaned[key] = json.dumps(value, default=str)
    return cleaned


def write_netcdf(dataset: xr.Dataset, path: str | Path) -> Path:
    """Write a Dataset with zlib compression on every numeric variable, atomically."""
    encoding = {
        name: {"zlib": True, "complevel": 4, "shuffle": True}
        for name, var in dataset.data_vars.items()
        if np.issubdtype(var.dtype, np.number)
    }
    dataset = dataset.copy()
    dataset.attrs = _clean_attrs(dataset.attrs)
    for var in dataset.variables.values():
        var.attrs = _clean_attrs(var.attrs)
    target = Path(path)
    with atomic_path(target, suffix=".part.nc") as tmp:
        dataset.to_netcdf(tmp, engine="netcdf4", format="NETCDF4", encoding=encoding)
    return target


def read_netcdf(path: str | Path) -> xr.Dataset:
    """Read a whole NetCDF file into memory and close it, with a clear error for missing or foreign files."""
    source = Path(path)
    if not source.is_file():
        raise FileNotFoundError(f"NetCDF file not found: {source}")
    try:
        with xr.open_dataset(source, engine="netcdf4") as dataset:
            return dataset.load()
    except (OSError, ValueError) as exc:
        raise ValueError(f"{source} is not a readable NetCDF file: {exc}") from exc
