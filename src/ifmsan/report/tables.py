"""Paper Table 1 and Table 2 as pandas DataFrames (CSV) and Markdown, from sweep Datasets or `curves.Curve`s.

Many images: Table 1 and Table 2 have one row per (model, knob, layer[, chain]) with `n_images`; their numeric
columns are means over the images (equal to the values themselves for one image), plus the sample standard
deviation (ddof=1, empty for one image) of eff_san and of the ratio of zeros. Count columns stay integers when
every mean is a whole number. `table1_per_image` keeps one row per image. In the Markdown, a table of several
images says "mean ± sd over N images" once in its heading; its cells hold the numbers only.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import pandas as pd

from ifmsan.core.metrics import DEFAULT_DECIMALS, EXTRA_DECIMALS, check_decimals, table1_row
from ifmsan.report.consistency import after_model, varying
from ifmsan.report.curves import (
    VARIANT_COLUMNS,
    Curve,
    as_curves,
    chain_steps,
    chained_curve_label,
    knob_rank,
    layer_ranks,
    sorted_curves,
)
from ifmsan.report.tabletext import frame_variants, markdown_table, missing, stand_in_note

BIN_COLUMNS: tuple[str, str, str] = ("distinct_0.0_0.2", "distinct_0.2_0.8", "distinct_0.8_1.0")
BIN_HEADERS: tuple[str, str, str] = ("distinct p in [0, 0.2)", "distinct p in [0.2, 0.8)", "distinct p in [0.8, 1.0]")
_COUNT_COLUMNS = ("n_distinct", "n_range", *BIN_COLUMNS, "n_zeros", "ifm_size")


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
    return _granularity_rows(sorted_curves(curves, ranks), decimals=decimals)


def table1(
    sweeps: Sequence[Any], *, decimals: int = DEFAULT_DECIMALS, layer_order: Sequence[str] | None = None
) -> pd.DataFrame:
    """Paper Table 1: one row per (model, knob, layer) over the unchained sweeps, means over images (TABLE1_COLUMNS)."""
    per_image = table1_per_image(sweeps, decimals=decimals, layer_order=layer_order)
    if per_image.empty:
        return pd.DataFrame(columns=list(TABLE1_COLUMNS))
    variants = frame_variants(per_image)
    per_image = per_image.sort_values(["model", *variants, "knob"], key=_first_seen_then(per_image), kind="stable")
    result = _aggregate(per_image, ["model", *variants, "knob", "parameter", "layer"])
    return result[after_model(TABLE1_COLUMNS, variants)]


def _first_seen_then(frame: pd.DataFrame) -> Any:
    """A sort key that keeps models in first-seen order and knobs in the library's order."""

    def key(column: pd.Series) -> pd.Series:
        """Rank of each cell of the column being sorted."""
        if column.name == "knob":
            return column.map(knob_rank)
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
    ordered = sorted_curves(curves, ranks)
    per_image = _granularity_rows(ordered, decimals=decimals)
    variants = frame_variants(per_image)
    per_image = per_image.sort_values(["model", *variants, "knob"], key=_first_seen_then(per_image), kind="stable")
    result = _aggregate(per_image, ["model", *variants, "knob", "parameter", "layer", "chain"])
    originals: dict[tuple[str, ...], list[str]] = {}
    for curve in ordered:
        group = originals.setdefault((curve.model, *(getattr(curve, k) for k in variants), curve.knob, curve.layer), [])
        for step, _ in chain_steps(curve.chain):
            if step not in group:
                group.append(step)
    keys = ["model", *variants, "knob", "layer"]
    result["label"] = [
        chained_curve_label(row["layer"], row["chain"], original=originals[tuple(row[k] for k in keys)])
        for _, row in result.iterrows()
    ]
    return result[after_model(TABLE2_COLUMNS, variants)]


def _fraction_text(mean: float, numerator: Any, denominator: Any, std: Any, n_images: int) -> str:
    """ "0.81 (120/149)" for one image; "0.81 ± 0.02" for several (the heading says over how many); "n/a" when
    unknown."""
    if missing(mean):
        return "n/a"
    if n_images > 1:
        return f"{mean:.2f}" + ("" if missing(std) else f" ± {std:.2f}")
    if missing(numerator) or missing(denominator):
        return f"{mean:.2f}"
    return f"{mean:.2f} ({int(numerator)}/{int(denominator)})"


def _count_text(value: Any) -> str:
    """A count, or a mean count with one decimal."""
    if missing(value):
        return "n/a"
    return str(int(value)) if float(value).is_integer() else f"{float(value):.1f}"


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
        count = None if missing(value) or missing(row["n_range"]) else round(float(value) * float(row["n_range"]))
        cells[f"eff_san ({d} decimals)"] = _fraction_text(value, count, row["n_range"], None, row["n_images"])
    return cells


def _zero_text(row: Any) -> str:
    """ "0.88 (38128/43264)" for one image, the mean ± sd over images otherwise, "n/a" when unknown."""
    return _fraction_text(row["zero_ratio"], row["n_zeros"], row["ifm_size"], row["zero_ratio_std"], row["n_images"])


def _precision_note(frame: pd.DataFrame) -> str:
    """How distinct probabilities were counted."""
    decimals = ", ".join(str(d) for d in dict.fromkeys(frame["decimals"].tolist())) or str(DEFAULT_DECIMALS)
    return (
        f"eff_san counts distinct p(n) after rounding to {decimals} decimals (numpy round, half to even); "
        "the three ranges count distinct rounded values. With several images, numbers are means over the images "
        "(± sample standard deviation)."
    )


def _images_heading(group: pd.DataFrame) -> tuple[str, bool]:
    """What a section heading adds for several images (": mean ± sd over 3 images"), and whether its rows need an
    `images` column because their image counts differ (stated once per table rather than in every cell)."""
    counts = sorted({int(n) for n in group["n_images"]})
    if counts[-1] <= 1:
        return "", False
    if len(counts) == 1:
        return f": mean ± sd over {counts[0]} images", False
    return ": mean ± sd over the number of images in column `images`", True


def table1_markdown(frame: pd.DataFrame) -> str:
    """Table 1 as Markdown: one section per (model, knob), the paper's columns then eff_san at 2, 3, 4, 6 decimals."""
    lines = ["# Table 1: eff_san of the IFMs and the distribution of probabilistic accuracies", ""]
    lines += stand_in_note(frame)
    if frame.empty:
        return "\n".join(lines + ["No unchained sweeps were given.", ""])
    lines += [_precision_note(frame), ""]
    keys = ["model", *frame_variants(frame), "knob"]
    for values, group in frame.groupby(keys, sort=False):
        head = _heading(keys, values)
        over, per_row = _images_heading(group)
        lines += [f"## {head['title']}, knob {head['knob']} (swept over {group['parameter'].iloc[0]}){over}", ""]
        rows = []
        for _, row in group.iterrows():
            cells = {"IFM": row["layer"], **({"images": str(int(row["n_images"]))} if per_row else {})}
            cells.update(_eff_san_cells(row))
            cells["ratio of zeros"] = _zero_text(row)
            cells.update(_extra_cells(row))
            rows.append(cells)
        lines += [markdown_table(pd.DataFrame(rows)), ""]
    return "\n".join(lines)


def table2_markdown(frame: pd.DataFrame) -> str:
    """Table 2 as Markdown: one section per (model, knob, swept layer), one row per chain."""
    lines = ["# Table 2: eff_san of a layer's IFM after earlier IFMs are approximated", ""]
    lines += stand_in_note(frame)
    if frame.empty:
        return "\n".join(lines + ["No chained sweeps were given.", ""])
    lines += [_precision_note(frame), ""]
    keys = ["model", *frame_variants(frame), "knob", "layer"]
    for values, group in frame.groupby(keys, sort=False):
        head = _heading(keys, values)
        over, per_row = _images_heading(group)
        lines += [f"## {head['title']}, knob {head['knob']}, swept layer {head['layer']}{over}", ""]
        rows = []
        for _, row in group.iterrows():
            cells = {"IFMs": row["label"], **({"images": str(int(row["n_images"]))} if per_row else {})}
            cells.update(_eff_san_cells(row))
            cells.update(_extra_cells(row))
            rows.append(cells)
        lines += [markdown_table(pd.DataFrame(rows)), ""]
    return "\n".join(lines)


__all__ = [
    "BIN_COLUMNS",
    "BIN_HEADERS",
    "TABLE1_COLUMNS",
    "TABLE2_COLUMNS",
    "table1",
    "table1_markdown",
    "table1_per_image",
    "table2",
    "table2_markdown",
]
