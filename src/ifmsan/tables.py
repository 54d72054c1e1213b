"""Paper Table 1 / Table 2 and the γ-bound report, as pandas DataFrames (CSV) and Markdown, from sweep Datasets.

Input: a list of sweep xarray Datasets in the format INTERFACES.md ("Sweep datasets") documents: one curve per
(model, image, chain, layer, knob), or many images concatenated along `image` (p0, target, zero_ratio then are
per-image variables). Every function here first flattens them into `Curve`s, one per image, so per-image files and
concatenated files mix freely; the same (model, image, layer, knob, chain) twice is an error.

Many images: Table 1 and Table 2 have one row per (model, knob, layer[, chain]) with `n_images`; their numeric
columns are means over the images (equal to the values themselves for one image), plus the sample standard
deviation (ddof=1, empty for one image) of eff_san and of the ratio of zeros. Count columns stay integers when
every mean is a whole number. `table1_per_image` keeps one row per image. The γ report has one row per
(image, layer, chain, knob, γ); `gamma_summary` aggregates it over images (mean, std, min, max of n*, the fraction
of images where γ is reachable, mean ε at n*, inversions, images with unsafe windows past n*).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ifmsan.consistency import VARIANT_KEYS, after_model, varying, weights_id
from ifmsan.knobs import KNOBS
from ifmsan.metrics import (
    DEFAULT_DECIMALS,
    DEFAULT_GAMMAS,
    EXTRA_DECIMALS,
    check_curve,
    check_decimals,
    check_gamma,
    check_p0,
    format_value,
    gamma_check,
    table1_row,
)

ALEXNET_LAYERS: tuple[str, ...] = (
    "conv1", "norm1", "pool1", "conv2", "norm2", "pool2", "conv3", "conv4", "conv5", "pool5", "fc6", "fc7", "fc8",
)  # fmt: skip
"""Default row order (the paper's Table 1); layers not in it follow in the order they first appear."""

VARIANT_COLUMNS: tuple[str, ...] = VARIANT_KEYS[1:]
"""weights (weights_sha, or weights_source if untrained), config_hash, target_source: a column after `model` wherever
they differ between the curves (report --allow-mixed), so rows of different networks or targets are never merged."""

PARAMETER_LABELS: dict[str, str] = {"window": "window size", "scale": "noise scale (× IFM std)"}
"""Axis/column wording for the swept parameter (the dimension of `probability`)."""

BIN_COLUMNS: tuple[str, str, str] = ("distinct_0.0_0.2", "distinct_0.2_0.8", "distinct_0.8_1.0")
BIN_HEADERS: tuple[str, str, str] = ("distinct p in [0, 0.2)", "distinct p in [0.2, 0.8)", "distinct p in [0.8, 1.0]")
_COUNT_COLUMNS = ("n_distinct", "n_range", *BIN_COLUMNS, "n_zeros", "ifm_size")

FIXED_N_NOTE = (
    "Unsafe windows past n*: window sizes n > n*(γ) whose p(n) rises back above p0/2^γ (trend inversions). "
    "The γ controller of the paper's Figure 3 stops at the first n that meets γ, so they do not affect it; "
    "they matter for a deployment that fixes one window size n >= n*(γ) in advance, which then does not "
    "guarantee γ."
)


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
        return (self.model, self.image_id, self.layer, self.knob, self.chain, *(getattr(self, k) for k in VARIANT_COLUMNS))


def load_sweeps(paths: Iterable[str | Path]) -> list[Any]:
    """Read sweep NetCDF files into memory (files closed again); a missing or unreadable file, or one that is not a
    sweep (io.read_sweep), is a clear error naming it; missing files are found before any file is read."""
    from ifmsan.io import read_sweep

    paths = [Path(p) for p in paths]
    if not paths:
        raise ValueError("no sweep files given; expected one or more NetCDF files written by `ifmsan sweep`")
    for path in paths:
        if not path.is_file():
            raise FileNotFoundError(f"sweep file not found: {path}")
    sweeps = []
    for path in paths:
        sweeps.append(read_sweep(path))
    return sweeps


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
    parse_chain(chain)
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
        zero_ratio = _number_or_none(_per_image(sweep, "zero_ratio", index))
        ifm_size = _number_or_none(_per_image(sweep, "ifm_size", index))
        n_zeros = _number_or_none(_per_image(sweep, "n_zeros", index))
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


def parse_chain(chain: str) -> tuple[tuple[str, int], ...]:
    """Split a chain attr like "norm2@3+pool2@4" into ((layer, window), ...) with the sweep engine's own parser;
    "" is no chain."""
    from ifmsan.sweep import parse_chain as parse_steps

    return tuple((step.layer, step.window) for step in parse_steps(chain))


def chain_label(layer: str, chain: str, *, original: Sequence[str] = ()) -> str:
    """Table 2 wording: "pool5 IFM after norm2 IFM approximated with the length-3 window", or for the unchained
    curve "pool5 IFM after original norm2 IFM" (naming the layers that other chains approximate)."""
    steps = parse_chain(chain)
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


def _knob_rank(knob: str) -> int:
    """Knobs in the library's order (the paper's method first), unknown ones last."""
    return KNOBS.index(knob) if knob in KNOBS else len(KNOBS)


def _chain_rank(chain: str, ranks: dict[str, int]) -> tuple[Any, ...]:
    """No chain first, then by number of steps, by the layers' network order, and by window size."""
    steps = parse_chain(chain)
    return (len(steps), [(ranks.get(step, len(ranks)), window) for step, window in steps])


def _sorted_curves(curves: list[Curve], ranks: dict[str, int]) -> list[Curve]:
    """Curves in report order: model and image as first seen, then layer, chain, knob."""
    models = {m: i for i, m in enumerate(dict.fromkeys(c.model for c in curves))}
    variants = {v: i for i, v in enumerate(dict.fromkeys(c.key[5:] for c in curves))}
    images = {m: i for i, m in enumerate(dict.fromkeys(c.image_id for c in curves))}
    return sorted(
        curves,
        key=lambda c: (
            models[c.model], variants[c.key[5:]], ranks[c.layer], _chain_rank(c.chain, ranks), _knob_rank(c.knob),
            images[c.image_id],
        ),
    )


def _frame_variants(frame: pd.DataFrame) -> list[str]:
    """The VARIANT_COLUMNS a table carries."""
    return [key for key in VARIANT_COLUMNS if key in frame.columns]


def _heading(keys: Sequence[str], values: Any) -> dict[str, Any]:
    """A groupby key as a dict, and its model with the differing provenance: "alexnet_mini (weights ab…)"."""
    row = dict(zip(keys, values if isinstance(values, tuple) else (values,), strict=True))
    extra = ", ".join(f"{k} {row[k] or 'none'}" for k in keys if k in VARIANT_COLUMNS)
    row["title"] = f"{row['model']} ({extra})" if extra else str(row["model"])
    return row


def _granularity_rows(curves: list[Curve], *, decimals: int) -> pd.DataFrame:
    """One row per curve: keys (with the differing VARIANT_COLUMNS) plus the Table 1 numbers (metrics.table1_row)."""
    rows = []
    variants = varying(curves, VARIANT_COLUMNS)
    for curve in curves:
        row: dict[str, Any] = {
            "model": curve.model,
            **{key: getattr(curve, key) for key in variants},
            "image_id": curve.image_id,
            "layer": curve.layer,
            "knob": curve.knob,
            "chain": curve.chain,
            "parameter": curve.parameter,
        }
        row.update(
            table1_row(
                curve.probabilities,
                zero_ratio=curve.zero_ratio,
                ifm_size=curve.ifm_size,
                n_zeros=curve.n_zeros,
                decimals=decimals,
            )
        )
        row["decimals"] = decimals
        row["stand_in"] = int(curve.stand_in)
        rows.append(row)
    return pd.DataFrame(rows)


def _whole_numbers(frame: pd.DataFrame, columns: Iterable[str]) -> pd.DataFrame:
    """Cast count columns to nullable integers when every value is a whole number (always so for one image)."""
    for column in columns:
        values = pd.to_numeric(frame[column], errors="coerce").astype("Float64")
        present = values.dropna()
        if bool(((present % 1) == 0).all()):
            frame[column] = values.astype("Int64")
        else:
            frame[column] = values.astype("float64")
    return frame


_MEASURES = (
    "eff_san", "n_distinct", "n_range", *BIN_COLUMNS, "zero_ratio", "n_zeros", "ifm_size",
    *(f"eff_san_{d}" for d in EXTRA_DECIMALS),
)  # fmt: skip


def _aggregate(per_image: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Means over images per key, plus n_images and the sample std of eff_san and zero_ratio."""
    numeric = per_image.copy()
    for column in _MEASURES:
        numeric[column] = pd.to_numeric(numeric[column], errors="coerce").astype("float64")
    grouped = numeric.groupby(keys, sort=False, dropna=False)
    result = grouped[list(_MEASURES)].mean()
    result["eff_san_std"] = grouped["eff_san"].std(ddof=1)
    result["zero_ratio_std"] = grouped["zero_ratio"].std(ddof=1)
    result["n_images"] = grouped.size()
    result["decimals"] = grouped["decimals"].first()
    result["stand_in"] = grouped["stand_in"].max()
    return _whole_numbers(result.reset_index(), _COUNT_COLUMNS)


TABLE1_COLUMNS: tuple[str, ...] = (
    "layer", "eff_san", "n_distinct", "n_range", *BIN_COLUMNS, "zero_ratio", "n_zeros", "ifm_size",
    *(f"eff_san_{d}" for d in EXTRA_DECIMALS), "eff_san_std", "zero_ratio_std", "n_images", "model", "knob",
    "parameter", "decimals", "stand_in",
)  # fmt: skip
"""Table 1 CSV columns: the paper's order (IFM, eff_san, the three ranges, ratio of zeros), then the extras."""

TABLE2_COLUMNS: tuple[str, ...] = (
    "label", "eff_san", "n_distinct", "n_range", *BIN_COLUMNS, *(f"eff_san_{d}" for d in EXTRA_DECIMALS),
    "eff_san_std", "n_images", "layer", "chain", "zero_ratio", "n_zeros", "ifm_size", "zero_ratio_std", "model",
    "knob", "parameter", "decimals", "stand_in",
)  # fmt: skip
"""Table 2 CSV columns: the paper's order (IFMs, eff_san, the three ranges), then the extras."""


def table1_per_image(
    sweeps: Sequence[Any], *, decimals: int = DEFAULT_DECIMALS, layer_order: Sequence[str] | None = None
) -> pd.DataFrame:
    """Table 1 numbers for every unchained curve, one row per (model, knob, layer, image)."""
    decimals = check_decimals(decimals)
    curves = [c for c in as_curves(sweeps) if c.chain == ""]
    ranks = layer_ranks((c.layer for c in curves), layer_order=layer_order)
    return _granularity_rows(_sorted_curves(curves, ranks), decimals=decimals)


def table1(
    sweeps: Sequence[Any], *, decimals: int = DEFAULT_DECIMALS, layer_order: Sequence[str] | None = None
) -> pd.DataFrame:
    """Paper Table 1: one row per (model, knob, layer) over the unchained sweeps, means over images (TABLE1_COLUMNS)."""
    per_image = table1_per_image(sweeps, decimals=decimals, layer_order=layer_order)
    if per_image.empty:
        return pd.DataFrame(columns=list(TABLE1_COLUMNS))
    variants = _frame_variants(per_image)
    per_image = per_image.sort_values(["model", *variants, "knob"], key=_first_seen_then(per_image), kind="stable")
    return _aggregate(per_image, ["model", *variants, "knob", "parameter", "layer"])[after_model(TABLE1_COLUMNS, variants)]


def _first_seen_then(frame: pd.DataFrame) -> Any:
    """A sort key that keeps models in first-seen order and knobs in the library's order."""

    def key(column: pd.Series) -> pd.Series:
        """Rank of each cell of the column being sorted."""
        if column.name == "knob":
            return column.map(_knob_rank)
        order = {v: i for i, v in enumerate(dict.fromkeys(frame[column.name]))}
        return column.map(order)

    return key


def table2(
    sweeps: Sequence[Any], *, decimals: int = DEFAULT_DECIMALS, layer_order: Sequence[str] | None = None
) -> pd.DataFrame:
    """Paper Table 2: for each swept layer that has chained sweeps, one row per chain ("" first), means over images."""
    decimals = check_decimals(decimals)
    curves = as_curves(sweeps)
    chained = {(*c.key[5:], c.model, c.knob, c.layer) for c in curves if c.chain}
    curves = [c for c in curves if (*c.key[5:], c.model, c.knob, c.layer) in chained]
    if not curves:
        return pd.DataFrame(columns=list(TABLE2_COLUMNS))
    ranks = layer_ranks((c.layer for c in curves), layer_order=layer_order)
    ordered = _sorted_curves(curves, ranks)
    per_image = _granularity_rows(ordered, decimals=decimals)
    variants = _frame_variants(per_image)
    per_image = per_image.sort_values(["model", *variants, "knob"], key=_first_seen_then(per_image), kind="stable")
    result = _aggregate(per_image, ["model", *variants, "knob", "parameter", "layer", "chain"])
    originals: dict[tuple[str, ...], list[str]] = {}
    for curve in ordered:
        group = originals.setdefault((curve.model, *(getattr(curve, k) for k in variants), curve.knob, curve.layer), [])
        for step, _ in parse_chain(curve.chain):
            if step not in group:
                group.append(step)
    result["label"] = [
        chain_label(row["layer"], row["chain"], original=originals[tuple(row[k] for k in ["model", *variants, "knob", "layer"])])
        for _, row in result.iterrows()
    ]
    return result[after_model(TABLE2_COLUMNS, variants)]


def _missing(value: Any) -> bool:
    """True for None, NaN and pandas NA."""
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))


def _fraction_text(mean: float, numerator: Any, denominator: Any, std: Any, n_images: int) -> str:
    """"0.81 (120/149)" for one image; "0.81 ± 0.02 (mean of 3 images)" for several; "n/a" when unknown."""
    if _missing(mean):
        return "n/a"
    if n_images > 1:
        spread = "" if _missing(std) else f" ± {std:.2f}"
        return f"{mean:.2f}{spread} (mean of {n_images} images)"
    if _missing(numerator) or _missing(denominator):
        return f"{mean:.2f}"
    return f"{mean:.2f} ({int(numerator)}/{int(denominator)})"


def _count_text(value: Any) -> str:
    """A count, or a mean count with one decimal."""
    if _missing(value):
        return "n/a"
    return str(int(value)) if float(value).is_integer() else f"{float(value):.1f}"


def _markdown(frame: pd.DataFrame) -> str:
    """A GitHub Markdown table; cells are taken as text, never re-parsed as numbers."""
    return frame.to_markdown(index=False, disable_numparse=True)


def _stand_in_note(frame: pd.DataFrame) -> list[str]:
    """A warning line when any row was made with a stand-in model."""
    if "stand_in" in frame and bool((pd.to_numeric(frame["stand_in"]) == 1).any()):
        models = ", ".join(dict.fromkeys(frame.loc[pd.to_numeric(frame["stand_in"]) == 1, "model"].astype(str)))
        return [f"**Stand-in:** made with {models}, not the paper's BVLC AlexNet.", ""]
    return []


def _eff_san_cells(row: Any) -> dict[str, str]:
    """The eff_san column and the extra-precision columns of one Table 1/2 row, as text."""
    eff = _fraction_text(row["eff_san"], row["n_distinct"], row["n_range"], row["eff_san_std"], row["n_images"])
    cells = {"eff_san": eff}
    for header, column in zip(BIN_HEADERS, BIN_COLUMNS, strict=True):
        cells[header] = _count_text(row[column])
    return cells


def _extra_cells(row: Any) -> dict[str, str]:
    """eff_san at each extra precision, as "0.81 (120/149)"."""
    cells = {}
    for d in EXTRA_DECIMALS:
        value = row[f"eff_san_{d}"]
        count = None if _missing(value) or _missing(row["n_range"]) else round(float(value) * float(row["n_range"]))
        cells[f"eff_san ({d} decimals)"] = _fraction_text(value, count, row["n_range"], None, row["n_images"])
    return cells


def _zero_text(row: Any) -> str:
    """"0.88 (38128/43264)" for one image, the mean (± std) over images otherwise, "n/a" when unknown."""
    return _fraction_text(row["zero_ratio"], row["n_zeros"], row["ifm_size"], row["zero_ratio_std"], row["n_images"])


def _precision_note(frame: pd.DataFrame) -> str:
    """How distinct probabilities were counted."""
    decimals = ", ".join(str(d) for d in dict.fromkeys(frame["decimals"].tolist())) or str(DEFAULT_DECIMALS)
    return (
        f"eff_san counts distinct p(n) after rounding to {decimals} decimals (numpy round, half to even); "
        "the three ranges count distinct rounded values. With several images, numbers are means over the images "
        "(± sample standard deviation)."
    )


def table1_markdown(frame: pd.DataFrame) -> str:
    """Table 1 as Markdown: one section per (model, knob), the paper's columns then eff_san at 2, 3, 4, 6 decimals."""
    lines = ["# Table 1: eff_san of the IFMs and the distribution of probabilistic accuracies", ""]
    lines += _stand_in_note(frame)
    if frame.empty:
        return "\n".join(lines + ["No unchained sweeps were given.", ""])
    lines += [_precision_note(frame), ""]
    keys = ["model", *_frame_variants(frame), "knob"]
    for values, group in frame.groupby(keys, sort=False):
        head = _heading(keys, values)
        lines += [f"## {head['title']}, knob {head['knob']} (swept over {group['parameter'].iloc[0]})", ""]
        rows = []
        for _, row in group.iterrows():
            cells = {"IFM": row["layer"]}
            cells.update(_eff_san_cells(row))
            cells["ratio of zeros"] = _zero_text(row)
            cells.update(_extra_cells(row))
            rows.append(cells)
        lines += [_markdown(pd.DataFrame(rows)), ""]
    return "\n".join(lines)


def table2_markdown(frame: pd.DataFrame) -> str:
    """Table 2 as Markdown: one section per (model, knob, swept layer), one row per chain."""
    lines = ["# Table 2: eff_san of a layer's IFM after earlier IFMs are approximated", ""]
    lines += _stand_in_note(frame)
    if frame.empty:
        return "\n".join(lines + ["No chained sweeps were given.", ""])
    lines += [_precision_note(frame), ""]
    keys = ["model", *_frame_variants(frame), "knob", "layer"]
    for values, group in frame.groupby(keys, sort=False):
        head = _heading(keys, values)
        lines += [f"## {head['title']}, knob {head['knob']}, swept layer {head['layer']}", ""]
        rows = []
        for _, row in group.iterrows():
            cells = {"IFMs": row["label"]}
            cells.update(_eff_san_cells(row))
            cells.update(_extra_cells(row))
            rows.append(cells)
        lines += [_markdown(pd.DataFrame(rows)), ""]
    return "\n".join(lines)


GAMMA_REPORT_COLUMNS: tuple[str, ...] = (
    "model", "image_id", "layer", "chain", "knob", "parameter", "gamma", "p0", "bound", "epsilon_bound", "n_star",
    "reachable", "p_at_n_star", "epsilon_at_n_star", "gamma_max", "range_min", "range_max", "n_range", "inversions",
    "inversion_rise", "n_unsafe", "unsafe", "verdict", "stand_in",
)  # fmt: skip
"""γ report CSV columns; n_star (and range_*, unsafe) are window sizes, or noise scales for the noise knobs."""


def check_gammas(gammas: Sequence[float], *, name: str = "gammas") -> list[float]:
    """The γ list as floats, or a ValueError: at least one, each as metrics.check_gamma allows (finite, > 0)."""
    values = [check_gamma(g, name=f"{name} value") for g in gammas]
    if not values:
        raise ValueError(f"{name} is empty; expected at least one degree of sanitization > 0")
    return values


def gamma_report(
    sweeps: Sequence[Any], *, gammas: Sequence[float] = DEFAULT_GAMMAS, layer_order: Sequence[str] | None = None
) -> pd.DataFrame:
    """The γ-bound verification: one row per (image, layer, chain, knob, γ) with p0, p0/2^γ, n*(γ), ε at n*,
    inversions, unsafe windows past n* and a verdict (GAMMA_REPORT_COLUMNS)."""
    gamma_values = check_gammas(gammas)
    curves = as_curves(sweeps)
    ranks = layer_ranks((c.layer for c in curves), layer_order=layer_order)
    variants = varying(curves, VARIANT_COLUMNS)
    rows = []
    for curve in _sorted_curves(curves, ranks):
        for gamma in gamma_values:
            check = gamma_check(curve.values, curve.probabilities, p0=curve.p0, gamma=gamma, parameter=curve.parameter)
            rows.append(
                {
                    "model": curve.model,
                    **{key: getattr(curve, key) for key in variants},
                    "image_id": curve.image_id,
                    "layer": curve.layer,
                    "chain": curve.chain,
                    "knob": curve.knob,
                    "parameter": curve.parameter,
                    "gamma": check.gamma,
                    "p0": check.p0,
                    "bound": check.bound,
                    "epsilon_bound": check.gamma * math.log(2.0),
                    "n_star": check.n_star,
                    "reachable": check.reachable,
                    "p_at_n_star": check.p_at_n_star,
                    "epsilon_at_n_star": check.epsilon_at_n_star,
                    "gamma_max": check.gamma_max,
                    "range_min": curve.values[0].item(),
                    "range_max": curve.values[-1].item(),
                    "n_range": int(curve.values.size),
                    "inversions": check.inversions.count,
                    "inversion_rise": check.inversions.total_rise,
                    "n_unsafe": len(check.unsafe),
                    "unsafe": " ".join(format_value(v) for v in check.unsafe),
                    "verdict": check.verdict,
                    "stand_in": int(curve.stand_in),
                }
            )
    columns = after_model(GAMMA_REPORT_COLUMNS, variants)
    return _frame_keeping_values(rows, columns, ("n_star", "range_min", "range_max"))


def _frame_keeping_values(rows: list[dict[str, Any]], columns: Sequence[str], mixed: Sequence[str]) -> pd.DataFrame:
    """A DataFrame whose knob-value columns keep Python ints (windows), floats (scales) and None as they are,
    so the CSV shows 12 rather than 12.0."""
    frame = pd.DataFrame(rows, columns=list(columns))
    for column in mixed:
        frame[column] = pd.Series([row[column] for row in rows], index=frame.index, dtype=object)
    return frame


GAMMA_SUMMARY_COLUMNS: tuple[str, ...] = (
    "model", "layer", "chain", "knob", "parameter", "gamma", "n_images", "n_reachable", "reachable_fraction",
    "n_star_mean", "n_star_std", "n_star_min", "n_star_max", "p0_mean", "p0_std", "epsilon_at_n_star_mean",
    "gamma_max_min", "inversions_total", "inversions_mean", "inversion_rise_mean", "images_with_unsafe",
    "n_unsafe_total", "verdict", "stand_in",
)  # fmt: skip
"""γ summary CSV columns: statistics over images; n* statistics are over the images where γ is reachable."""


def gamma_summary(report: pd.DataFrame) -> pd.DataFrame:
    """Aggregate a γ report over images per (model, layer, chain, knob, γ): reachability, n* spread, mean ε at n*."""
    keys = ["model", *_frame_variants(report), "layer", "chain", "knob", "parameter", "gamma"]
    if report.empty:
        return pd.DataFrame(columns=list(GAMMA_SUMMARY_COLUMNS))
    rows = []
    for key, group in report.groupby(keys, sort=False):
        reached_values = [v for v in group["n_star"] if not _missing(v)]
        n_star = pd.Series(reached_values, dtype="float64")
        reached = int(group["reachable"].astype(bool).sum())
        total = len(group)
        unsafe_images = int((group["n_unsafe"] > 0).sum())
        row = dict(zip(keys, key, strict=True))
        symbol = "n*" if row["parameter"] == "window" else f"{row['parameter']}*"
        if reached == 0:
            verdict = f"not reachable in range in any of {total} image(s)"
        else:
            verdict = (
                f"met in {reached}/{total} image(s); {symbol} mean {n_star.mean():.4g} "
                f"(min {format_value(min(reached_values))}, max {format_value(max(reached_values))})"
            )
            if unsafe_images:
                verdict += f"; UNSAFE values past {symbol} in {unsafe_images}/{total} image(s)"
        epsilons = pd.to_numeric(group["epsilon_at_n_star"], errors="coerce").dropna()
        row.update(
            {
                "n_images": total,
                "n_reachable": reached,
                "reachable_fraction": reached / total,
                "n_star_mean": n_star.mean() if reached else math.nan,
                "n_star_std": n_star.std(ddof=1) if reached > 1 else math.nan,
                "n_star_min": min(reached_values) if reached else None,
                "n_star_max": max(reached_values) if reached else None,
                "p0_mean": group["p0"].mean(),
                "p0_std": group["p0"].std(ddof=1) if total > 1 else math.nan,
                "epsilon_at_n_star_mean": epsilons.mean() if reached else math.nan,
                "gamma_max_min": group["gamma_max"].min(),
                "inversions_total": int(group["inversions"].sum()),
                "inversions_mean": group["inversions"].mean(),
                "inversion_rise_mean": group["inversion_rise"].mean(),
                "images_with_unsafe": unsafe_images,
                "n_unsafe_total": int(group["n_unsafe"].sum()),
                "verdict": verdict,
                "stand_in": int(group["stand_in"].max()),
            }
        )
        rows.append(row)
    columns = after_model(GAMMA_SUMMARY_COLUMNS, _frame_variants(report))
    return _frame_keeping_values(rows, columns, ("n_star_min", "n_star_max"))


def _num(value: Any, spec: str) -> str:
    """Format a number, or "—" when missing; +inf as "inf"."""
    if _missing(value):
        return "—"
    return "inf" if math.isinf(float(value)) else format(float(value), spec)


def _unsafe_text(n_unsafe: int, unsafe: str, *, limit: int = 8) -> str:
    """"0", or the count and the first few values past n*."""
    if not n_unsafe:
        return "0"
    values = unsafe.split()
    shown = ", ".join(values[:limit]) + (", …" if len(values) > limit else "")
    return f"{n_unsafe}: {shown}"


def gamma_report_markdown(frame: pd.DataFrame) -> str:
    """The per-image γ report as Markdown, with the note on unsafe windows for fixed-n deployments."""
    lines = ["# γ-bound verification per image, layer, chain and knob", ""]
    lines += _stand_in_note(frame)
    lines += [
        "γ is met at n when p(n) <= p0/2^γ, i.e. ε(n) = ln(p0/p(n)) >= γ·ln 2; n*(γ) is the smallest swept value "
        "that meets it (for noise knobs the swept value is a scale).",
        "",
        FIXED_N_NOTE,
        "",
    ]
    if frame.empty:
        return "\n".join(lines + ["No sweeps were given.", ""])
    rows = []
    for _, row in frame.iterrows():
        rows.append(
            {
                "image": row["image_id"],
                **{key: row[key] for key in _frame_variants(frame)},
                "layer": row["layer"],
                "chain": row["chain"] or "—",
                "knob": row["knob"],
                "γ": format(row["gamma"], "g"),
                "p0": _num(row["p0"], ".6g"),
                "p0/2^γ": _num(row["bound"], ".6g"),
                "n*": "—" if _missing(row["n_star"]) else format_value(row["n_star"]),
                "ε at n*": _num(row["epsilon_at_n_star"], ".4f"),
                "γ·ln2": _num(row["epsilon_bound"], ".4f"),
                "inversions (rise)": f"{int(row['inversions'])} ({float(row['inversion_rise']):.4f})",
                "unsafe past n*": _unsafe_text(int(row["n_unsafe"]), str(row["unsafe"])),
                "verdict": row["verdict"],
            }
        )
    return "\n".join(lines + [_markdown(pd.DataFrame(rows)), ""])


def gamma_summary_markdown(frame: pd.DataFrame) -> str:
    """The γ summary over images as Markdown, with the same note."""
    lines = ["# γ-bound verification aggregated over images", ""]
    lines += _stand_in_note(frame)
    lines += [
        "n* statistics are over the images where γ is reachable in the swept range; std is the sample standard "
        "deviation (— for fewer than two images).",
        "",
        FIXED_N_NOTE,
        "",
    ]
    if frame.empty:
        return "\n".join(lines + ["No sweeps were given.", ""])
    rows = []
    for _, row in frame.iterrows():
        rows.append(
            {
                "model": row["model"],
                **{key: row[key] for key in _frame_variants(frame)},
                "layer": row["layer"],
                "chain": row["chain"] or "—",
                "knob": row["knob"],
                "γ": format(row["gamma"], "g"),
                "images": str(int(row["n_images"])),
                "reachable": f"{int(row['n_reachable'])}/{int(row['n_images'])} ({row['reachable_fraction']:.2f})",
                "n* mean ± std": _num(row["n_star_mean"], ".4g")
                + ("" if _missing(row["n_star_std"]) else f" ± {row['n_star_std']:.3g}"),
                "n* min–max": "—"
                if _missing(row["n_star_min"])
                else f"{format_value(row['n_star_min'])}–{format_value(row['n_star_max'])}",
                "mean ε at n*": _num(row["epsilon_at_n_star_mean"], ".4f"),
                "inversions (total)": str(int(row["inversions_total"])),
                "images with unsafe past n*": str(int(row["images_with_unsafe"])),
                "verdict": row["verdict"],
            }
        )
    return "\n".join(lines + [_markdown(pd.DataFrame(rows)), ""])


__all__ = [
    "ALEXNET_LAYERS",
    "BIN_COLUMNS",
    "GAMMA_REPORT_COLUMNS",
    "GAMMA_SUMMARY_COLUMNS",
    "PARAMETER_LABELS",
    "TABLE1_COLUMNS",
    "TABLE2_COLUMNS",
    "VARIANT_COLUMNS",
    "Curve",
    "as_curves",
    "chain_label",
    "check_gammas",
    "curves_of",
    "gamma_report",
    "gamma_report_markdown",
    "gamma_summary",
    "gamma_summary_markdown",
    "layer_ranks",
    "load_sweeps",
    "parse_chain",
    "table1",
    "table1_markdown",
    "table1_per_image",
    "table2",
    "table2_markdown",
]
