"""The γ-bound verification report: one row per (image, layer, chain, knob, γ), and its summary over images.

`gamma_report` checks, for every curve and γ, p0, the bound p0/2^γ, n*(γ), ε at n*, inversions and the unsafe
windows past n* (docs/definitions.md); `gamma_summary` aggregates it over images (mean, std, min, max and quantiles
of n* over the images where γ is reachable, the fraction of images where it is, mean ε at n*, inversions, images
with unsafe windows past n*), over all images and, given a mapping image id -> class group, per group too. Both come
as DataFrames (CSV) and Markdown.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from ifmsan.core.metrics import DEFAULT_GAMMAS, check_gamma, format_value, gamma_check
from ifmsan.report.consistency import after_model, varying
from ifmsan.report.curves import VARIANT_COLUMNS, as_curves, layer_ranks, sorted_curves
from ifmsan.report.tabletext import frame_variants, markdown_table, missing, stand_in_note

FIXED_N_NOTE = (
    "Unsafe windows past n*: window sizes n > n*(γ) whose p(n) rises back above p0/2^γ (trend inversions). "
    "The γ controller of the paper's Figure 3 stops at the first n that meets γ, so they do not affect it; "
    "they matter for a deployment that fixes one window size n >= n*(γ) in advance, which then does not "
    "guarantee γ."
)


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
    for curve in sorted_curves(curves, ranks):
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
    "model", "layer", "chain", "knob", "parameter", "gamma", "group", "n_images", "n_reachable", "reachable_fraction",
    "n_star_mean", "n_star_std", "n_star_min", "n_star_max", "n_star_q05", "n_star_q25", "n_star_median",
    "n_star_q75", "n_star_q95", "p0_mean", "p0_std", "epsilon_at_n_star_mean", "gamma_max_min", "inversions_total",
    "inversions_mean", "inversion_rise_mean", "images_with_unsafe", "n_unsafe_total", "verdict", "stand_in",
)  # fmt: skip
"""γ summary CSV columns: statistics over the images of a group ("all": every image); n* statistics (mean, std, min,
max, quantiles) are over the images where γ is reachable."""

ALL_IMAGES = "all"
"""The `group` of the summary rows over every image; no class group may take this name."""
N_STAR_QUANTILES: tuple[tuple[str, float], ...] = (
    ("n_star_q05", 0.05),
    ("n_star_q25", 0.25),
    ("n_star_median", 0.5),
    ("n_star_q75", 0.75),
    ("n_star_q95", 0.95),
)
"""Quantile columns of n* and their probabilities: numpy.quantile's default "linear" method (Hyndman & Fan type 7,
also pandas' and R's default), h = (k - 1)·q, interpolating between the sorted values x[floor h] and x[floor h + 1]."""


def check_groups(groups: Mapping[str, str], image_ids: Sequence[str]) -> dict[str, str]:
    """The image id -> class group mapping restricted to `image_ids`, or a ValueError: every image needs a group,
    each a non-empty string other than "all" (ALL_IMAGES)."""
    missing_ids = [image for image in dict.fromkeys(image_ids) if image not in groups]
    if missing_ids:
        shown = ", ".join(map(repr, missing_ids[:5])) + (", ..." if len(missing_ids) > 5 else "")
        raise ValueError(
            f"image groups: {len(missing_ids)} image(s) of the report have no group: {shown}; give every image a "
            "group (or no groups at all)"
        )
    for image in dict.fromkeys(image_ids):
        group = groups[image]
        if not isinstance(group, str) or not group.strip():
            raise ValueError(f"image groups: image {image!r} has the group {group!r}; expected a non-empty name")
        if group == ALL_IMAGES:
            raise ValueError(
                f"image groups: image {image!r} has the group {ALL_IMAGES!r}, which names the rows over every image; "
                "choose another name"
            )
    return {image: groups[image] for image in dict.fromkeys(image_ids)}


def load_image_groups(path: str | os.PathLike[str]) -> dict[str, str]:
    """Image id -> class group from a YAML (or JSON) file: a mapping {image_id: group}, or a workflow config whose
    images carry a `group` (e.g. config/imagenet1000.yaml); a ValueError names what is wrong."""
    import yaml

    where = os.fspath(path)
    with open(path, encoding="utf-8") as handle:
        try:
            data = yaml.safe_load(handle)
        except yaml.YAMLError as exc:
            raise ValueError(f"{where}: not valid YAML: {' '.join(str(exc).split())}") from None
    if isinstance(data, Mapping) and "images" in data and isinstance(data["images"], list):
        groups: dict[str, str] = {}
        for i, image in enumerate(data["images"]):
            if not isinstance(image, Mapping) or "id" not in image:
                raise ValueError(f"{where}: images[{i}] is not an image entry with an id")
            if "group" not in image:
                raise ValueError(f"{where}: images[{i}] ({image['id']!r}) has no group; give every image a group")
            groups[str(image["id"])] = image["group"]
        if not groups:
            raise ValueError(f"{where}: the config lists no images")
        return groups
    if isinstance(data, Mapping) and data and all(isinstance(v, str) for v in data.values()):
        return {str(key): value for key, value in data.items()}
    raise ValueError(
        f"{where}: expected a mapping image_id: group, or a workflow config whose images have a group; got "
        f"{type(data).__name__}"
    )


CONTROLLER_COLUMNS = ("image_id", "model", "layer", "knob", "gamma", "window", "status")
"""Columns `ifmsan gamma` writes that the controller check reads."""


def check_controller(sweeps: Sequence[Any], controller: pd.DataFrame, *, source: str = "the controller") -> int:
    """Check every row of γ-controller results (ifmsan gamma's CSV) against n*(γ) of the matching unchained sweep.

    The controller's window must be the sweep's n*(γ), or both must say γ is not reached; a row without a sweep of
    its image, layer and knob, or any disagreement, is a ValueError listing the rows. Returns the rows checked.
    """
    from ifmsan.core.metrics import n_star_for_gamma

    absent = [column for column in CONTROLLER_COLUMNS if column not in controller.columns]
    if absent:
        raise ValueError(f"{source} lacks the columns {', '.join(absent)}; expected a CSV written by ifmsan gamma")
    curves = {
        (c.model, c.image_id, c.layer, c.knob): c for c in as_curves(sweeps) if not c.chain and c.parameter == "window"
    }
    problems = []
    for row in controller.itertuples(index=False):
        key = (str(row.model), str(row.image_id), str(row.layer), str(row.knob))
        curve = curves.get(key)
        if curve is None:
            problems.append(f"{'/'.join(key)} gamma={row.gamma}: no unchained sweep of this image, layer and knob")
            continue
        n_star = n_star_for_gamma(curve.values, curve.probabilities, p0=curve.p0, gamma=float(row.gamma))
        window = None if missing(row.window) else int(row.window)
        if window != n_star:
            problems.append(f"{'/'.join(key)} gamma={row.gamma}: controller window {window}, sweep n* {n_star}")
    if problems:
        listed = "\n  ".join(problems[:20]) + (f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else "")
        raise ValueError(f"{source} disagrees with the sweeps' n*(gamma) in {len(problems)} row(s):\n  {listed}")
    return len(controller)


def _quantiles(values: Sequence[float]) -> dict[str, float]:
    """N_STAR_QUANTILES of the values (NaN when there are none)."""
    if not values:
        return {name: math.nan for name, _ in N_STAR_QUANTILES}
    found = np.quantile(np.asarray(values, dtype=np.float64), [q for _, q in N_STAR_QUANTILES], method="linear")
    return {name: float(v) for (name, _), v in zip(N_STAR_QUANTILES, found, strict=True)}


def _summary_row(group: pd.DataFrame) -> dict[str, Any]:
    """The statistics of one set of report rows (one per image)."""
    reached_values = [v for v in group["n_star"] if not missing(v)]
    n_star = pd.Series(reached_values, dtype="float64")
    reached = int(group["reachable"].astype(bool).sum())
    total = len(group)
    unsafe_images = int((group["n_unsafe"] > 0).sum())
    symbol = "n*" if group["parameter"].iloc[0] == "window" else f"{group['parameter'].iloc[0]}*"
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
    return {
        "n_images": total,
        "n_reachable": reached,
        "reachable_fraction": reached / total,
        "n_star_mean": n_star.mean() if reached else math.nan,
        "n_star_std": n_star.std(ddof=1) if reached > 1 else math.nan,
        "n_star_min": min(reached_values) if reached else None,
        "n_star_max": max(reached_values) if reached else None,
        **_quantiles(reached_values),
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


def gamma_summary(report: pd.DataFrame, *, groups: Mapping[str, str] | None = None) -> pd.DataFrame:
    """Aggregate a γ report over images per (model, layer, chain, knob, γ): reachability, n* spread and quantiles,
    mean ε at n* (GAMMA_SUMMARY_COLUMNS). Each such key gets a row over all its images (group "all"); given `groups`
    (image id -> class group, one for every image of the report), a row per group follows it, groups in name order."""
    keys = ["model", *frame_variants(report), "layer", "chain", "knob", "parameter", "gamma"]
    if report.empty:
        return pd.DataFrame(columns=list(GAMMA_SUMMARY_COLUMNS))
    image_groups = None if groups is None else check_groups(groups, [str(i) for i in report["image_id"]])
    rows = []
    for key, frame in report.groupby(keys, sort=False):
        head = dict(zip(keys, key, strict=True))
        rows.append({**head, "group": ALL_IMAGES, **_summary_row(frame)})
        if image_groups is not None:
            labels = frame["image_id"].astype(str).map(image_groups)
            for name in sorted(set(labels)):
                rows.append({**head, "group": name, **_summary_row(frame[labels == name])})
    columns = after_model(GAMMA_SUMMARY_COLUMNS, frame_variants(report))
    return _frame_keeping_values(rows, columns, ("n_star_min", "n_star_max"))


def _num(value: Any, spec: str) -> str:
    """Format a number, or "—" when missing; +inf as "inf"."""
    if missing(value):
        return "—"
    return "inf" if math.isinf(float(value)) else format(float(value), spec)


def _unsafe_text(n_unsafe: int, unsafe: str, *, limit: int = 8) -> str:
    """ "0", or the count and the first few values past n*."""
    if not n_unsafe:
        return "0"
    values = unsafe.split()
    shown = ", ".join(values[:limit]) + (", …" if len(values) > limit else "")
    return f"{n_unsafe}: {shown}"


def gamma_report_markdown(frame: pd.DataFrame) -> str:
    """The per-image γ report as Markdown, with the note on unsafe windows for fixed-n deployments."""
    lines = ["# γ-bound verification per image, layer, chain and knob", ""]
    lines += stand_in_note(frame)
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
                **{key: row[key] for key in frame_variants(frame)},
                "layer": row["layer"],
                "chain": row["chain"] or "—",
                "knob": row["knob"],
                "γ": format(row["gamma"], "g"),
                "p0": _num(row["p0"], ".6g"),
                "p0/2^γ": _num(row["bound"], ".6g"),
                "n*": "—" if missing(row["n_star"]) else format_value(row["n_star"]),
                "ε at n*": _num(row["epsilon_at_n_star"], ".4f"),
                "γ·ln2": _num(row["epsilon_bound"], ".4f"),
                "inversions (rise)": f"{int(row['inversions'])} ({float(row['inversion_rise']):.4f})",
                "unsafe past n*": _unsafe_text(int(row["n_unsafe"]), str(row["unsafe"])),
                "verdict": row["verdict"],
            }
        )
    return "\n".join(lines + [markdown_table(pd.DataFrame(rows)), ""])


def gamma_summary_markdown(frame: pd.DataFrame) -> str:
    """The γ summary over images as Markdown, with the same note."""
    lines = ["# γ-bound verification aggregated over images", ""]
    lines += stand_in_note(frame)
    lines += [
        "n* statistics are over the images where γ is reachable in the swept range (an image where it is not counts "
        "in `reachable` only); std is the sample standard deviation (— for fewer than two images); quantiles "
        "interpolate linearly between the sorted n* (numpy's default, Hyndman & Fan type 7).",
        "",
        FIXED_N_NOTE,
        "",
    ]
    if frame.empty:
        return "\n".join(lines + ["No sweeps were given.", ""])
    grouped = "group" in frame and bool((frame["group"] != ALL_IMAGES).any())
    if grouped:
        lines[-2:-2] = [
            "Rows with group `all` are over every image; the rows below each are over the images of one class group.",
            "",
        ]
    rows = []
    for _, row in frame.iterrows():
        rows.append(
            {
                "model": row["model"],
                **{key: row[key] for key in frame_variants(frame)},
                "layer": row["layer"],
                "chain": row["chain"] or "—",
                "knob": row["knob"],
                "γ": format(row["gamma"], "g"),
                **({"group": str(row["group"])} if grouped else {}),
                "images": str(int(row["n_images"])),
                "reachable": f"{int(row['n_reachable'])}/{int(row['n_images'])} ({row['reachable_fraction']:.2f})",
                "n* mean ± std": _num(row["n_star_mean"], ".4g")
                + ("" if missing(row["n_star_std"]) else f" ± {row['n_star_std']:.3g}"),
                "n* min–max": "—"
                if missing(row["n_star_min"])
                else f"{format_value(row['n_star_min'])}–{format_value(row['n_star_max'])}",
                "n* median [q25, q75]": "—"
                if missing(row["n_star_median"])
                else f"{_num(row['n_star_median'], '.4g')} [{_num(row['n_star_q25'], '.4g')}, "
                f"{_num(row['n_star_q75'], '.4g')}]",
                "n* q05–q95": "—"
                if missing(row["n_star_q05"])
                else f"{_num(row['n_star_q05'], '.4g')}–{_num(row['n_star_q95'], '.4g')}",
                "mean ε at n*": _num(row["epsilon_at_n_star_mean"], ".4f"),
                "inversions (total)": str(int(row["inversions_total"])),
                "images with unsafe past n*": str(int(row["images_with_unsafe"])),
                "verdict": row["verdict"],
            }
        )
    return "\n".join(lines + [markdown_table(pd.DataFrame(rows)), ""])


__all__ = [
    "ALL_IMAGES",
    "FIXED_N_NOTE",
    "GAMMA_REPORT_COLUMNS",
    "GAMMA_SUMMARY_COLUMNS",
    "N_STAR_QUANTILES",
    "check_gammas",
    "check_groups",
    "gamma_report",
    "gamma_report_markdown",
    "gamma_summary",
    "gamma_summary_markdown",
    "load_image_groups",
]
