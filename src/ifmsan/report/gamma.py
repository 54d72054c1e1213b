"""The γ-bound verification report: one row per (image, layer, chain, knob, γ), and its summary over images.

`gamma_report` checks, for every curve and γ, p0, the bound p0/2^γ, n*(γ), ε at n*, inversions and the unsafe
windows past n* (docs/definitions.md); `gamma_summary` aggregates it over images (mean, std, min, max and quantiles
of n* over the images where γ is reachable, the fraction of images where it is, mean ε at n*, inversions, images
with unsafe windows past n*), over all images and, given a mapping image id -> class group (ifmsan.report.groups),
per group too. Both are DataFrames (CSV); ifmsan.report.gamma_markdown renders them as Markdown.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from ifmsan.core.metrics import DEFAULT_GAMMAS, check_gamma, format_value, gamma_check
from ifmsan.report.consistency import after_model, varying
from ifmsan.report.curves import VARIANT_COLUMNS, as_curves, layer_ranks, sorted_curves
from ifmsan.report.groups import ALL_IMAGES, check_groups
from ifmsan.report.tabletext import frame_variants, missing

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

N_STAR_QUANTILES: tuple[tuple[str, float], ...] = (
    ("n_star_q05", 0.05),
    ("n_star_q25", 0.25),
    ("n_star_median", 0.5),
    ("n_star_q75", 0.75),
    ("n_star_q95", 0.95),
)
"""Quantile columns of n* and their probabilities: numpy.quantile's default "linear" method (Hyndman & Fan type 7,
also pandas' and R's default), h = (k - 1)·q, interpolating between the sorted values x[floor h] and x[floor h + 1]."""


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


__all__ = [
    "GAMMA_REPORT_COLUMNS",
    "GAMMA_SUMMARY_COLUMNS",
    "N_STAR_QUANTILES",
    "check_gammas",
    "gamma_report",
    "gamma_summary",
]
