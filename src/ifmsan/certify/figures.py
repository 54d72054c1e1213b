"""certificate_<layer>: the randomized releases' privacy-utility curves and the certificate beside the attackers."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from ifmsan.report.plotting import Plotted, finish, new_figure, style


def certificate_figure(table: pd.DataFrame, *, layer: str, out: Path | None = None) -> Plotted:
    """Left: ε_adaptive (budget 2B) against the unchanged server's accuracy, one curve per (knob, scale) over n.
    Right: the PSNR ceiling (worst image) against that accuracy, with the decoder's and the optimization attack's
    measured PSNR (from their MSE) on the same settings."""
    rows = table[table["layer"] == layer].sort_values(["knob", "scale", "window"])
    if rows.empty:
        raise ValueError(f"no certify rows for layer {layer}")
    with style():
        figure, axes = new_figure(width=9.6, height=3.8, ncols=2)
        left, right = axes[0]
        for (knob, scale), curve in rows.groupby(["knob", "scale"], sort=False):
            label = f"{knob} scale {scale:g}"
            line = left.plot(curve["legit_accuracy_b1"], curve["epsilon_adaptive_b2"], marker="o", label=label)[0]
            right.plot(
                curve["legit_accuracy_b1"],
                curve["psnr_ceiling"],
                marker="o",
                color=line.get_color(),
                label=f"{label}: ceiling",
            )
            for column, marker in (("decoder_mse", "s"), ("optimization_mse", "^")):
                measured = curve[column].map(lambda m: -10.0 * math.log10(m) if m > 0 else math.nan)
                right.scatter(curve["legit_accuracy_b1"], measured, marker=marker, color=line.get_color(), s=18)
        left.axhline(math.log(2.0), color="grey", linestyle="--", linewidth=0.8, label="γ = 1 (ln 2)")
        left.set_xlabel("legitimate accuracy (unchanged server)")
        left.set_ylabel("ε adaptive (budget 2B)")
        left.legend(fontsize=6)
        for marker, label in (
            ("o", "PSNR ceiling (line)"),
            ("s", "decoder (learned prior)"),
            ("^", "optimization attack"),
        ):
            right.scatter([], [], marker=marker, color="grey", label=label)
        right.legend(fontsize=6)
        right.set_xlabel("legitimate accuracy (unchanged server)")
        right.set_ylabel("PSNR (dB)")
        figure.suptitle(f"{layer}: randomized releases, the certificate (worst image) and measured attackers")
    return finish(rows, figure, out)
