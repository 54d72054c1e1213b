"""bench_sweep.py's verdict against the overhead target and its plain-text table."""

from __future__ import annotations

from typing import Any

OVERHEAD_TARGET = 0.03
"""The sanitizer's share of the bare forward time, in total and per layer."""
SHARE_FOR_LAYER_TARGET = 0.02
"""A layer's overhead counts once its bare forward is at least this share of the total (tiny forwards are noise)."""


def verdict(result: dict[str, Any]) -> dict[str, Any]:
    """The overhead target in total and per layer (medians), and both FLOP ratios."""
    total = result["total"]
    layers = {
        layer: {
            "overhead": figures["overhead"]["median"],
            "forward_share": figures["forward_share"]["median"],
            "counts": figures["forward_share"]["median"] >= SHARE_FOR_LAYER_TARGET,
        }
        for layer, figures in result["layers"].items()
    }
    checked = {layer: row for layer, row in layers.items() if row["counts"]}
    return {
        "overhead_target": OVERHEAD_TARGET,
        "total_overhead": total["overhead"]["median"],
        "total_ok": total["overhead"]["median"] <= OVERHEAD_TARGET,
        "layers_checked": f"bare forward >= {SHARE_FOR_LAYER_TARGET:.0%} of the total",
        "layers": layers,
        "layers_ok": all(row["overhead"] <= OVERHEAD_TARGET for row in checked.values()),
        "flop_efficiency": total["flop_efficiency"]["median"],
        "peak_efficiency": total["peak_efficiency"]["median"] if "peak_efficiency" in total else None,
    }


def print_table(result: dict[str, Any]) -> None:
    """Per-layer medians, the totals with their min..max, and the targets, as plain text."""
    keys = (
        "sanitize_s",
        "bare_forward_s",
        "forward_share",
        "overhead",
        "flop_efficiency",
        "peak_efficiency",
        "peak_rss_mb",
    )
    keys = tuple(key for key in keys if key in result["total"] or key == "forward_share")
    if "overhead_before" in result["total"]:
        keys += ("overhead_before",)
    print(f"{'layer':8s}" + "".join(f"{key:>16s}" for key in keys))
    for layer, figures in result["layers"].items():
        print(f"{layer:8s}" + "".join(f"{figures[key]['median']:16.4f}" for key in keys))
    print("total (median [min, max]):")
    for key, value in result["total"].items():
        if key != "useful_flops":
            print(f"  {key:18s} {value['median']:.4f} [{value['min']:.4f}, {value['max']:.4f}]")
    check = result["verdict"]
    mark = {True: "ok", False: "ABOVE"}
    print(
        f"sweep FLOP rate: {check['flop_efficiency']:.3f} of the GEMM limit (cannot exceed 1), "
        + (
            f"{check['peak_efficiency']:.3f} of the theoretical peak"
            if check["peak_efficiency"]
            else "no peak computed"
        )
    )
    print(f"overhead <= {OVERHEAD_TARGET}: total {check['total_overhead']:.4f} {mark[check['total_ok']]}; per layer "
          f"({check['layers_checked']}): " + ", ".join(
              f"{layer} {row['overhead']:.4f} {mark[row['overhead'] <= OVERHEAD_TARGET]}"
              for layer, row in check["layers"].items() if row["counts"]))  # fmt: skip
