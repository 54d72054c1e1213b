"""Sweep files as `Curve`s: loading, flattening to one curve per image, report order, and one (model, image).

Input: sweep xarray Datasets as docs/netcdf.md documents: one curve per (model, image, chain, layer, knob), or many
images concatenated along `image` (p0, target, zero_ratio then are per-image variables). `as_curves` flattens them
into `Curve`s, one per image, so per-image files and concatenated files mix freely; the same (model, image, layer,
knob, chain) twice is an error. The tables (ifmsan.report.tables), the γ report (ifmsan.report.gamma) and the figures
(ifmsan.report.figures) all start from here.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ifmsan.core.knobs import KNOBS
from ifmsan.core.metrics import check_curve, check_p0
from ifmsan.models.caffe_alexnet import IFM_LAYERS
from ifmsan.report.consistency import VARIANT_KEYS, check_mixture, weights_id
from ifmsan.steps.scores import check_curve_extras, check_knob_values_read

ALEXNET_LAYERS: tuple[str, ...] = IFM_LAYERS
"""Default row order (the paper's Table 1: the model's own list); layers not in it follow in first-seen order."""

VARIANT_COLUMNS: tuple[str, ...] = VARIANT_KEYS[1:]
"""weights (weights_sha, or weights_source if untrained), config_hash, target_source: a column after `model` wherever
they differ between the curves (report --allow-mixed), so rows of different networks or targets are never merged."""

PARAMETER_LABELS: dict[str, str] = {"window": "window size", "scale": "noise scale (× IFM std)"}
"""Axis/column wording for the swept parameter (the dimension of `probability`)."""


@dataclass(frozen=True)
class Curve:
    """One image's sweep: p(value) over the swept knob values (sorted increasing), with its provenance."""

    model: str
    image_id: str
    layer: str
    knob: str
    chain: str
    parameter: str
    values: np.ndarray
    probabilities: np.ndarray
    p0: float
    zero_ratio: float | None
    ifm_size: int | None
    n_zeros: int | None
    stand_in: bool
    source: str
    weights: str = ""
    config_hash: str = ""
    target_source: str = ""
    target: int | None = None
    image_sha256: str = ""

    @property
    def key(self) -> tuple[str, ...]:
        """What identifies a curve: (model, image, layer, knob, chain), then the VARIANT_COLUMNS."""
        variant = (getattr(self, k) for k in VARIANT_COLUMNS)
        return (self.model, self.image_id, self.layer, self.knob, self.chain, *variant)


def load_sweeps(paths: Iterable[str | Path]) -> list[Any]:
    """Read sweep NetCDF files into memory (files closed again); a missing or unreadable file, or one that is not a
    sweep (io.read_sweep), is a clear error naming it; missing files are found before any file is read."""
    from ifmsan.steps.io import read_sweep

    files = [Path(p) for p in paths]
    if not files:
        raise ValueError("no sweep files given; expected one or more NetCDF files written by `ifmsan sweep`")
    for path in files:
        if not path.is_file():
            raise FileNotFoundError(f"sweep file not found: {path}")
    return [read_sweep(path) for path in files]


def _per_image(sweep: Any, name: str, index: int | None) -> Any:
    """A field that is an attr for one image, or a per-image variable for sweeps concatenated along `image`."""
    if name in sweep.variables:
        variable = sweep[name]
        if "image" in variable.dims and index is not None:
            return variable.isel(image=index).values.item()
        if variable.ndim == 0:
            return variable.values.item()
    return sweep.attrs.get(name)


def _number_or_none(value: Any) -> float | None:
    """An optional numeric attribute as float; None when absent or NaN."""
    if value is None or _text(value) == "":
        return None
    number = float(value)
    return None if math.isnan(number) else number


def _text(value: Any) -> str:
    """An attribute as text (netCDF may hand back numpy strings or bytes)."""
    if isinstance(value, bytes):
        return value.decode()
    return "" if value is None else str(value)


def curves_of(sweep: Any, *, name: str = "sweep") -> list[Curve]:
    """Flatten one sweep Dataset into one Curve per image; raise a ValueError naming the sweep when it is malformed."""
    source = _text(sweep.encoding.get("source")) or name
    if "probability" not in sweep.data_vars:
        raise ValueError(f"{source}: no `probability` variable; expected a sweep written by `ifmsan sweep`")
    probability = sweep["probability"]
    dims = [d for d in probability.dims if d != "image"]
    if len(dims) != 1:
        raise ValueError(
            f"{source}: `probability` must have one swept dimension (window or scale), got {probability.dims}"
        )
    parameter = str(dims[0])
    if parameter not in sweep.coords:
        raise ValueError(f"{source}: the swept dimension {parameter!r} has no coordinate with the knob values")
    declared = _text(sweep.attrs.get("parameter")) or parameter
    if declared != parameter:
        raise ValueError(f"{source}: attr parameter={declared!r} but `probability` is swept over {parameter!r}")
    for attr in ("layer", "knob"):
        if not _text(sweep.attrs.get(attr)):
            raise ValueError(f"{source}: missing attribute {attr!r}")
    chain = _text(sweep.attrs.get("chain"))
    chain_steps(chain)
    images: list[tuple[str, int | None]]
    if "image" in probability.dims:
        images = [(_text(v), i) for i, v in enumerate(sweep["image"].values)]
    else:
        images = [(_text(sweep.attrs.get("image_id")) or "image", None)]
    values = np.asarray(sweep[parameter].values)
    result = []
    for image_id, index in images:
        where = f"{source} (image {image_id})" if index is not None else source
        raw = probability.isel(image=index).values if index is not None else probability.values
        p0 = _per_image(sweep, "p0", index)
        if p0 is None:
            raise ValueError(f"{where}: missing p0 (the unsanitized probability of the target class)")
        try:
            vals, probs = check_curve(values, raw)
            p0_value = check_p0(float(p0))
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from exc
        check_knob_values_read(vals, parameter=parameter, source=where)
        extras = {key: _per_image(sweep, key, index) for key in ("zero_ratio", "ifm_size", "n_zeros")}
        check_curve_extras({k: None if _text(v) in ("", "nan") else v for k, v in extras.items()}, source=where)
        zero_ratio, ifm_size, n_zeros = (_number_or_none(extras[key]) for key in ("zero_ratio", "ifm_size", "n_zeros"))
        raw_target = _per_image(sweep, "target", index)
        try:
            target = _number_or_none(raw_target)
        except (TypeError, ValueError):
            target = math.inf
        if target is not None and not target.is_integer():
            raise ValueError(f"{where}: target {raw_target!r} is not a class index")
        result.append(
            Curve(
                model=_text(sweep.attrs.get("model")) or "model",
                image_id=image_id,
                layer=_text(sweep.attrs["layer"]),
                knob=_text(sweep.attrs["knob"]),
                chain=chain,
                parameter=parameter,
                values=vals,
                probabilities=probs,
                p0=p0_value,
                zero_ratio=zero_ratio,
                ifm_size=None if ifm_size is None else int(ifm_size),
                n_zeros=None if n_zeros is None else int(n_zeros),
                stand_in=bool(int(sweep.attrs.get("stand_in", 0) or 0)),
                source=where,
                weights=weights_id(sweep.attrs),
                config_hash=_text(sweep.attrs.get("config_hash")),
                target_source=_text(sweep.attrs.get("target_source")),
                target=None if target is None else int(target),
                image_sha256=_text(_per_image(sweep, "image_sha256", index)),
            )
        )
    return result


def as_curves(sweeps: Sequence[Any]) -> list[Curve]:
    """Curves from sweep Datasets (or Curves, passed through); the same curve twice is a ValueError."""
    curves: list[Curve] = []
    seen: dict[tuple[str, ...], str] = {}
    for i, item in enumerate(sweeps):
        for curve in [item] if isinstance(item, Curve) else curves_of(item, name=f"sweeps[{i}]"):
            if curve.key in seen:
                raise ValueError(
                    f"the same sweep (model, image, layer, knob, chain)={curve.key[:5]} is in {seen[curve.key]} "
                    f"and {curve.source}"
                )
            seen[curve.key] = curve.source
            curves.append(curve)
    return curves


def chain_steps(chain: str) -> tuple[tuple[str, int], ...]:
    """A chain attribute like "norm2@3+pool2@4" as ((layer, window), ...), parsed by sweep.parse_chain (the one
    parser of the chain syntax); "" is no chain."""
    from ifmsan.steps.sweep import parse_chain

    return tuple((step.layer, step.window) for step in parse_chain(chain))


def chained_curve_label(layer: str, chain: str, *, original: Sequence[str] = ()) -> str:
    """Table 2 row and Figure 5 legend wording: "pool5 IFM after norm2 IFM approximated with the length-3 window", or
    for the unchained curve "pool5 IFM after original norm2 IFM" (naming the layers that other chains approximate)."""
    steps = chain_steps(chain)
    if steps:
        parts = [f"{step} IFM approximated with the length-{window} window" for step, window in steps]
        return f"{layer} IFM after " + ", then ".join(parts)
    if original:
        names = " and ".join(original)
        return f"{layer} IFM after original {names} IFM" + ("s" if len(original) > 1 else "")
    return f"{layer} IFM"


def layer_ranks(layers: Iterable[str], *, layer_order: Sequence[str] | None = None) -> dict[str, int]:
    """Rank of each layer: layer_order (default: AlexNet's) first, then the others in first-seen order."""
    order = list(layer_order) if layer_order else list(ALEXNET_LAYERS)
    ranks = {name: i for i, name in enumerate(dict.fromkeys(order))}
    for name in layers:
        ranks.setdefault(name, len(ranks))
    return ranks


def knob_rank(knob: str) -> int:
    """Knobs in the library's order (the paper's method first), unknown ones last."""
    return KNOBS.index(knob) if knob in KNOBS else len(KNOBS)


def _chain_rank(chain: str, ranks: dict[str, int]) -> tuple[Any, ...]:
    """No chain first, then by number of steps, by the layers' network order, and by window size."""
    steps = chain_steps(chain)
    return (len(steps), [(ranks.get(step, len(ranks)), window) for step, window in steps])


def sorted_curves(curves: list[Curve], ranks: dict[str, int]) -> list[Curve]:
    """Curves in report order: model and image as first seen, then layer, chain, knob."""
    models = {m: i for i, m in enumerate(dict.fromkeys(c.model for c in curves))}
    variants = {v: i for i, v in enumerate(dict.fromkeys(c.key[5:] for c in curves))}
    images = {m: i for i, m in enumerate(dict.fromkeys(c.image_id for c in curves))}
    return sorted(
        curves,
        key=lambda c: (
            models[c.model],
            variants[c.key[5:]],
            ranks[c.layer],
            _chain_rank(c.chain, ranks),
            knob_rank(c.knob),
            images[c.image_id],
        ),
    )


def select_image(sweeps: Sequence[Any], *, model: str | None = None, image: str | None = None) -> list[Curve]:
    """The curves of one (model, image); a ValueError lists the choices when there are several, or names the files
    when they mix weights, configurations or targets (consistency.check_mixture: the lines could not be told apart)."""
    curves = as_curves(sweeps)
    if model is not None:
        curves = [c for c in curves if c.model == model]
    if image is not None:
        curves = [c for c in curves if c.image_id == image]
    pairs = list(dict.fromkeys((c.model, c.image_id) for c in curves))
    if not pairs:
        raise ValueError(f"no sweeps for model={model!r}, image={image!r}")
    if len(pairs) > 1:
        listed = ", ".join(f"{m}/{i}" for m, i in pairs)
        raise ValueError(f"the sweeps hold several (model, image) pairs ({listed}); choose one with model= and image=")
    check_mixture(curves, hint="draw each set of files in its own `ifmsan figures` run")
    return curves


__all__ = [
    "ALEXNET_LAYERS",
    "PARAMETER_LABELS",
    "VARIANT_COLUMNS",
    "Curve",
    "as_curves",
    "chain_steps",
    "chained_curve_label",
    "curves_of",
    "knob_rank",
    "layer_ranks",
    "load_sweeps",
    "select_image",
    "sorted_curves",
]
