"""The γ report and the γ summary (ifmsan.report.gamma) as Markdown, with the note on fixed-n deployments."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from ifmsan.core.metrics import format_value
from ifmsan.report.groups import ALL_IMAGES
from ifmsan.report.tabletext import frame_variants, markdown_table, missing, stand_in_note

FIXED_N_NOTE = (
    "Unsafe windows past n*: window sizes n > n*(γ) whose p(n) rises back above p0/2^γ (trend inversions). "
    "The γ controller of the paper's Figure 3 stops at the first n that meets γ, so they do not affect it; "
    "they matter for a deployment that fixes one window size n >= n*(γ) in advance, which then does not "
    "guarantee γ."
)


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


__all__ = ["FIXED_N_NOTE", "gamma_report_markdown", "gamma_summary_markdown"]
