"""The γ-bound verification report: one row per (image, layer, chain, knob, γ), and its summary over images.

`gamma_report` checks, for every curve and γ, p0, the bound p0/2^γ, n*(γ), ε at n*, inversions and the unsafe
windows past n* (docs/definitions.md); `gamma_summary` aggregates it over images (mean, std, min, max of n*, the
fraction of images where γ is reachable, mean ε at n*, inversions, images with unsafe windows past n*). Both come
as DataFrames (CSV) and Markdown.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import pandas as pd

from ifmsan.consistency import after_model, varying
from ifmsan.curves import VARIANT_COLUMNS, as_curves, layer_ranks, sorted_curves
from ifmsan.metrics import DEFAULT_GAMMAS, check_gamma, format_value, gamma_check
from ifmsan.tabletext import frame_variants, markdown_table, missing, stand_in_note

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
    "model", "layer", "chain", "knob", "parameter", "gamma", "n_images", "n_reachable", "reachable_fraction",
    "n_star_mean", "n_star_std", "n_star_min", "n_star_max", "p0_mean", "p0_std", "epsilon_at_n_star_mean",
    "gamma_max_min", "inversions_total", "inversions_mean", "inversion_rise_mean", "images_with_unsafe",
    "n_unsafe_total", "verdict", "stand_in",
)  # fmt: skip
"""γ summary CSV columns: statistics over images; n* statistics are over the images where γ is reachable."""


def gamma_summary(report: pd.DataFrame) -> pd.DataFrame:
    """Aggregate a γ report over images per (model, layer, chain, knob, γ): reachability, n* spread, mean ε at n*."""
    keys = ["model", *frame_variants(report), "layer", "chain", "knob", "parameter", "gamma"]
    if report.empty:
        return pd.DataFrame(columns=list(GAMMA_SUMMARY_COLUMNS))
    rows = []
    for key, group in report.groupby(keys, sort=False):
        reached_values = [v for v in group["n_star"] if not missing(v)]
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
                **{key: row[key] for key in frame_variants(frame)},
                "layer": row["layer"],
                "chain": row["chain"] or "—",
                "knob": row["knob"],
                "γ": format(row["gamma"], "g"),
                "images": str(int(row["n_images"])),
                "reachable": f"{int(row['n_reachable'])}/{int(row['n_images'])} ({row['reachable_fraction']:.2f})",
                "n* mean ± std": _num(row["n_star_mean"], ".4g")
                + ("" if missing(row["n_star_std"]) else f" ± {row['n_star_std']:.3g}"),
                "n* min–max": "—"
                if missing(row["n_star_min"])
                else f"{format_value(row['n_star_min'])}–{format_value(row['n_star_max'])}",
                "mean ε at n*": _num(row["epsilon_at_n_star_mean"], ".4f"),
                "inversions (total)": str(int(row["inversions_total"])),
                "images with unsafe past n*": str(int(row["images_with_unsafe"])),
                "verdict": row["verdict"],
            }
        )
    return "\n".join(lines + [markdown_table(pd.DataFrame(rows)), ""])


__all__ = [
    "FIXED_N_NOTE",
    "GAMMA_REPORT_COLUMNS",
    "GAMMA_SUMMARY_COLUMNS",
    "check_gammas",
    "gamma_report",
    "gamma_report_markdown",
    "gamma_summary",
    "gamma_summary_markdown",
]
