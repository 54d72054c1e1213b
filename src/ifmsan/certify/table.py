"""The certificate per (image, layer, parametrization, knob, n, σ): dFIL, MSE floor and PSNR ceiling with their
standard errors, from the maps of `ifmsan.certify.maps` and each layer's calibration std (σ = scale x std)."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import xarray as xr

from ifmsan.core.knobs import NOISES, RANDOMIZED, check_scale
from ifmsan.core.sanitize import SELECTORS

COLUMNS: tuple[str, ...] = (
    "image_id", "layer", "space", "dims", "knob", "select", "window", "scale", "sigma", "held_norm", "held_norm_se",
    "dfil", "dfil_se", "mse_floor", "mse_floor_se", "psnr_ceiling", "psnr_ceiling_se", "bound",
)  # fmt: skip
CRAMER_RAO = "Cramér-Rao (unbiased estimators)"


def read_calibration(path: str | Path, *, layer: str, name: str = "calibration") -> float:
    """The calibration std of `layer` from an `ifmsan calibrate` JSON, or a ValueError naming the file."""
    source = Path(path)
    try:
        data = json.loads(source.read_text())
    except FileNotFoundError:
        raise ValueError(f"{name} {source} not found; expected the JSON of `ifmsan calibrate`") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{name} {source} is not a readable JSON file: {exc}") from None
    if not isinstance(data, dict) or data.get("ifmsan_kind") != "calibration":
        raise ValueError(f"{name} {source} is not a calibration file written by `ifmsan calibrate`")
    if data.get("layer") != layer:
        raise ValueError(f"{name} {source} calibrates layer {data.get('layer')!r}, not {layer!r}")
    std = data.get("calibration_std")
    if isinstance(std, bool) or not isinstance(std, (int, float)) or not math.isfinite(std) or std <= 0:
        raise ValueError(f"{name} {source}: calibration_std must be a finite number > 0, got {std!r}")
    return float(std)


def check_calibration_network(path: str | Path, net: Any, *, name: str = "calibration") -> None:
    """Refuse a calibration made with another model or other weights (or init seed) than the network it scales."""
    from ifmsan.report.consistency import weights_id
    from ifmsan.steps.extract import provenance

    data = json.loads(Path(path).read_text())  # read_calibration has checked it is a calibration file
    if data.get("model") != net.name:
        raise ValueError(f"{name} {path} was calibrated on model {data.get('model')!r}, not {net.name!r}")
    theirs, mine = weights_id(data), weights_id(provenance(net))
    if theirs != mine:
        raise ValueError(
            f"{name} {path} was calibrated with weights {theirs or 'unknown'!r}, but the network has {mine!r}: "
            "calibrate with the same --weights (or --init-seed)"
        )


def _row(held: float, se: float, *, sigma: float, dims: int, noise: str) -> dict[str, float]:
    """dFIL, floor and ceiling of one held norm, with standard errors by the delta method."""
    from ifmsan.certify.bound import dfil, mse_floor, psnr_ceiling

    value = dfil(held, sigma=sigma, dims=dims, noise=noise)
    if value is None or value <= 0:
        nan = float("nan")
        return {"dfil": 0.0 if value == 0 else nan, "dfil_se": nan, "mse_floor": math.inf, "mse_floor_se": nan,
                "psnr_ceiling": -math.inf, "psnr_ceiling_se": nan}  # fmt: skip
    value_se = value * se / held if held > 0 else float("nan")
    floor = mse_floor(value)
    ceiling = psnr_ceiling(floor)
    assert floor is not None and ceiling is not None  # a positive dFIL has both
    return {
        "dfil": value, "dfil_se": value_se, "mse_floor": floor, "mse_floor_se": floor * value_se / value,
        "psnr_ceiling": ceiling, "psnr_ceiling_se": 10.0 / math.log(10.0) * value_se / value,
    }  # fmt: skip


def certificate_table(
    maps: Sequence[xr.Dataset], *, calibration: Mapping[str, float], knobs: Sequence[str], scales: Sequence[float],
    select: str = "nonzero_mean",
) -> pd.DataFrame:  # fmt: skip
    """One row per (image, layer, space, knob, n, scale); deterministic knobs get "no bound" rows, never numbers."""
    from ifmsan.certify.bound import NO_BOUND

    unknown = [k for k in knobs if k not in (*RANDOMIZED, *NOISES, *SELECTORS)]
    if unknown or not knobs:
        raise ValueError(f"knobs must be among {', '.join((*RANDOMIZED, *NOISES, *SELECTORS))}; got {list(knobs)}")
    checked = [check_scale(s, name=f"scales[{i}]") for i, s in enumerate(scales)]
    rows: list[dict[str, Any]] = []
    for data in maps:
        layer, image = str(data.attrs["layer"]), str(data.attrs["image_id"])
        if layer not in calibration:
            raise ValueError(f"no calibration std for layer {layer} (maps of image {image})")
        std = float(calibration[layer])
        for space in data["space"].values:
            part = data.sel(space=space)
            dims = int(part["dims"])
            base = {"image_id": image, "layer": layer, "space": str(space), "dims": dims}
            for knob in knobs:
                if knob in SELECTORS:
                    rows += [
                        {**base, "knob": knob, "select": knob, "window": int(n), "bound": NO_BOUND}
                        for n in data["window"].values
                    ]
                    continue
                cells: list[tuple[int | None, float, float]]
                if knob in NOISES:
                    cells = [(None, float(part["full_norm"]), float(part["full_norm_se"]))]
                else:
                    if select not in data["select"].values:
                        raise ValueError(f"the maps of image {image}, layer {layer} hold no selector {select!r}")
                    norms = part.sel(select=select)
                    cells = [(int(n), float(norms["held_norm"].sel(window=n)), float(norms["held_norm_se"].sel(window=n)))
                             for n in data["window"].values]  # fmt: skip
                for window, held, se in cells:
                    for scale in checked:
                        if scale == 0:
                            continue
                        sigma = scale * std
                        bound = _row(held, se, sigma=sigma, dims=dims, noise=knob)
                        rows.append({**base, "knob": knob, "select": select if window else "", "window": window,
                                     "scale": scale, "sigma": sigma, "held_norm": held, "held_norm_se": se,
                                     **bound, "bound": CRAMER_RAO})  # fmt: skip
    return pd.DataFrame(rows, columns=list(COLUMNS))


def write_table(table: pd.DataFrame, path: str | Path) -> Path:
    """The table as CSV, atomically, with full float precision (bit-identical reruns)."""
    from ifmsan._shared.atomic import atomic_path

    with atomic_path(path) as tmp:
        table.to_csv(tmp, index=False, float_format="%.17g")
    return Path(path)
