"""The paper's figures (2, 4, 5) and three more views of the sweeps, drawn with seaborn, saved as PNG and PDF.

Every figure function takes a list of sweep Datasets (or `curves.Curve`s) for one model and one image (pass
`model=`/`image=` when the list holds several), draws with matplotlib's Agg/PDF backends on a `Figure` of its
own (no pyplot state), optionally saves `<out>.png` and `<out>.pdf` atomically and byte-for-byte reproducibly,
and returns a `Plotted`: the tidy DataFrame it plotted, the Figure, and the files written (the shared helpers are
in ifmsan.report.plotting). Curves are drawn with one `seaborn.lineplot` call per series, so each series is one
labelled Line2D whose data are the sweep's values.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from ifmsan.core.metrics import DEFAULT_GAMMAS, EXTRA_DECIMALS, eff_san, gamma_bound, gamma_max, n_star_for_gamma
from ifmsan.report.curves import Curve, chain_steps, chained_curve_label, layer_ranks, select_image
from ifmsan.report.plotting import KNOB_LABELS, Y_LABEL, Plotted, draw_all, finish, new_figure, style, x_label
from ifmsan.steps.io import check_id
from ifmsan.workflow.plan import Sweep, figure_names

log = logging.getLogger(__name__)

_TIDY_COLUMNS = ["series", "model", "image_id", "layer", "knob", "chain", "parameter", "value", "probability"]


def _find(curves: list[Curve], *, layer: str, knob: str, chain: str = "") -> Curve:
    """The one curve with this layer, knob and chain, or a ValueError saying what is missing."""
    for curve in curves:
        if (curve.layer, curve.knob, curve.chain) == (layer, knob, chain):
            return curve
    raise ValueError(f"no sweep of layer {layer!r} with knob {knob!r}" + (f" and chain {chain!r}" if chain else ""))


def _title(curves: list[Curve], what: str) -> str:
    """ "<what>" over "<model>, image <id>", flagged when the model is a stand-in."""
    model, image = curves[0].model, curves[0].image_id
    flag = f" (stand-in: {model})" if any(c.stand_in for c in curves) else ""
    return f"{what}\n{model}, image {image}{flag}"


def _tidy(series: list[tuple[str, Curve]]) -> pd.DataFrame:
    """One row per plotted point: series label, provenance, knob value and probability."""
    frames = [
        pd.DataFrame(
            {
                "series": label,
                "model": curve.model,
                "image_id": curve.image_id,
                "layer": curve.layer,
                "knob": curve.knob,
                "chain": curve.chain,
                "parameter": curve.parameter,
                "value": curve.values,
                "probability": curve.probabilities,
            }
        )
        for label, curve in series
    ]
    return pd.concat(frames, ignore_index=True)[_TIDY_COLUMNS]


def _draw_lines(ax: Any, series: list[tuple[str, Curve]]) -> None:
    """One seaborn lineplot per series, so each series is one Line2D labelled with its name."""
    import seaborn as sns

    palette = sns.color_palette("colorblind", n_colors=max(len(series), 1))
    for (label, curve), color in zip(series, palette, strict=True):
        sns.lineplot(
            x=curve.values, y=curve.probabilities, ax=ax, label=label, color=color, estimator=None, sort=False,
            linewidth=1.2,
        )  # fmt: skip


def _p0_line(ax: Any, curves: Sequence[Curve]) -> None:
    """A dotted reference line at p0 when the curves share it (one unsanitized forward pass)."""
    p0s = {round(c.p0, 12) for c in curves}
    if len(p0s) == 1:
        ax.axhline(curves[0].p0, color="0.4", linestyle=":", linewidth=1.0, label="p0 (unsanitized)")


def _line_figure(series: list[tuple[str, Curve]], *, title: str, out: Path | None) -> Plotted:
    """A probability-vs-knob-value figure of the given series."""
    parameters = {curve.parameter for _, curve in series}
    if len(parameters) != 1:
        raise ValueError(f"cannot draw window and scale sweeps on one axis: {sorted(parameters)}")
    with style():
        figure, axes = new_figure()
        ax = axes[0, 0]
        _draw_lines(ax, series)
        _p0_line(ax, [curve for _, curve in series])
        ax.set_xlabel(x_label(parameters.pop()))
        ax.set_ylabel(Y_LABEL)
        ax.set_ylim(-0.02, 1.02)
        ax.set_title(title, fontsize="medium")
        ax.legend(loc="best", fontsize="small")
    return finish(_tidy(series), figure, out)


def figure2(
    sweeps: Sequence[Any],
    *,
    out: str | Path | None = None,
    layer: str = "pool5",
    knobs: Sequence[str] = ("first", "nonzero_mean"),
    model: str | None = None,
    image: str | None = None,
) -> Plotted:
    """Paper Figure 2 and its fix: pool5 sanitized by the first sample of each window vs the proposed selection."""
    curves = select_image(sweeps, model=model, image=image)
    series = [(KNOB_LABELS.get(k, k), _find(curves, layer=layer, knob=k)) for k in knobs]
    names = " vs ".join(KNOB_LABELS.get(k, k) for k in knobs)
    title = _title(curves, f"{layer} IFM, {names}")
    return _line_figure(series, title=title, out=None if out is None else Path(out))


def figure4(
    sweeps: Sequence[Any],
    *,
    out: str | Path | None = None,
    layers: Sequence[str] = ("pool5", "fc6"),
    knob: str = "nonzero_mean",
    model: str | None = None,
    image: str | None = None,
) -> Plotted:
    """Paper Figure 4: the proposed sanitization of two IFMs (pool5 and fc6) over the window size."""
    curves = select_image(sweeps, model=model, image=image)
    series = [(f"{layer} IFM", _find(curves, layer=layer, knob=knob)) for layer in layers]
    title = _title(curves, f"sanitization of the {' and '.join(layers)} IFMs ({knob})")
    return _line_figure(series, title=title, out=None if out is None else Path(out))


def figure5(
    sweeps: Sequence[Any],
    *,
    out: str | Path | None = None,
    layer: str = "pool5",
    knob: str = "nonzero_mean",
    model: str | None = None,
    image: str | None = None,
    layer_order: Sequence[str] | None = None,
) -> Plotted:
    """Paper Figure 5: a layer's IFM swept with and without earlier IFMs pre-approximated (its chains)."""
    curves = select_image(sweeps, model=model, image=image)
    mine = [c for c in curves if c.layer == layer and c.knob == knob]
    chained = [c for c in mine if c.chain]
    if not chained:
        raise ValueError(f"no chained sweep of layer {layer!r} with knob {knob!r}")
    ranks = layer_ranks([s for c in chained for s, _ in chain_steps(c.chain)], layer_order=layer_order)
    chained.sort(key=lambda c: (len(chain_steps(c.chain)), [(ranks[s], w) for s, w in chain_steps(c.chain)]))
    original = list(dict.fromkeys(s for c in chained for s, _ in chain_steps(c.chain)))
    ordered = [_find(curves, layer=layer, knob=knob)] + chained
    series = [(chained_curve_label(layer, c.chain, original=original), c) for c in ordered]
    title = _title(curves, f"{layer} IFM with and without {' and '.join(original)} pre-approximation")
    return _line_figure(series, title=title, out=None if out is None else Path(out))


def layer_heatmap(
    sweeps: Sequence[Any],
    *,
    out: str | Path | None = None,
    knob: str = "nonzero_mean",
    model: str | None = None,
    image: str | None = None,
    layer_order: Sequence[str] | None = None,
) -> Plotted:
    """Layers × swept values heatmap of the probabilistic accuracy (unchained sweeps of one knob)."""
    import seaborn as sns

    curves = [c for c in select_image(sweeps, model=model, image=image) if c.knob == knob and c.chain == ""]
    if not curves:
        raise ValueError(f"no unchained sweep with knob {knob!r}")
    ranks = layer_ranks((c.layer for c in curves), layer_order=layer_order)
    curves.sort(key=lambda c: ranks[c.layer])
    series = [(c.layer, c) for c in curves]
    data = _tidy(series)
    grid = data.pivot(index="layer", columns="value", values="probability").reindex([c.layer for c in curves])
    step = max(1, math.ceil(grid.shape[1] / 15))
    with style():
        figure, axes = new_figure(width=8.0, height=1.2 + 0.3 * len(curves))
        ax = axes[0, 0]
        sns.heatmap(
            grid, ax=ax, vmin=0.0, vmax=1.0, cmap="viridis", xticklabels=step, yticklabels=True,
            cbar_kws={"label": Y_LABEL},
        )  # fmt: skip
        ax.set_xlabel(x_label(curves[0].parameter))
        ax.set_ylabel("IFM (layer)")
        ax.tick_params(axis="y", labelrotation=0)
        ax.set_title(_title(curves, f"{Y_LABEL} per layer ({knob})"), fontsize="medium")
    return finish(data, figure, None if out is None else Path(out))


def effsan_per_layer(
    sweeps: Sequence[Any],
    *,
    out: str | Path | None = None,
    knob: str = "nonzero_mean",
    decimals: Sequence[int] = EXTRA_DECIMALS,
    model: str | None = None,
    image: str | None = None,
    layer_order: Sequence[str] | None = None,
) -> Plotted:
    """Bars of eff_san per layer, one colour per rounding precision (the paper leaves the precision open)."""
    import seaborn as sns

    curves = [c for c in select_image(sweeps, model=model, image=image) if c.knob == knob and c.chain == ""]
    if not curves:
        raise ValueError(f"no unchained sweep with knob {knob!r}")
    ranks = layer_ranks((c.layer for c in curves), layer_order=layer_order)
    curves.sort(key=lambda c: ranks[c.layer])
    rows = [
        {
            "layer": c.layer,
            "decimals": f"{d} decimals",
            "eff_san": eff_san(c.probabilities, decimals=d),
            "n_range": int(c.values.size),
        }
        for c in curves
        for d in decimals
    ]
    data = pd.DataFrame(rows)
    with style():
        figure, axes = new_figure(width=max(6.4, 0.55 * len(curves) * max(len(decimals), 1) / 2 + 2))
        ax = axes[0, 0]
        sns.barplot(
            data=data, x="layer", y="eff_san", hue="decimals", order=[c.layer for c in curves],
            hue_order=[f"{d} decimals" for d in decimals], palette="colorblind", errorbar=None, ax=ax,
        )  # fmt: skip
        ax.set_xlabel("IFM (layer)")
        ax.set_ylabel("eff_san (distinct p / swept values)")
        ax.set_ylim(0.0, 1.05)
        sns.move_legend(ax, "upper left", bbox_to_anchor=(1.0, 1.0), title="rounded to", fontsize="small")
        ax.set_title(_title(curves, f"eff_san per layer ({knob})"), fontsize="medium")
    return finish(data, figure, None if out is None else Path(out))


def _gamma_text(value: float) -> str:
    """γ_max for a facet title ("∞" when some p(n) is zero)."""
    return "∞" if math.isinf(value) else f"{value:.2f}"


def knob_coverage(
    sweeps: Sequence[Any],
    *,
    out: str | Path | None = None,
    layer: str = "pool5",
    gammas: Sequence[float] = DEFAULT_GAMMAS,
    model: str | None = None,
    image: str | None = None,
) -> Plotted:
    """Paper Figure 1 in spirit: one panel per knob of a layer, its p over the knob value against the bounds
    p0/2^γ; n*(γ) is marked where γ is met, and the panel title gives γ_max = log2(p0 / min p)."""
    from ifmsan.core.knobs import KNOBS

    curves = [c for c in select_image(sweeps, model=model, image=image) if c.layer == layer and c.chain == ""]
    if not curves:
        raise ValueError(f"no unchained sweep of layer {layer!r}")
    curves.sort(key=lambda c: KNOBS.index(c.knob) if c.knob in KNOBS else len(KNOBS))
    ncols = min(3, len(curves))
    nrows = math.ceil(len(curves) / ncols)
    series = [(c.knob, c) for c in curves]
    with style():
        figure, axes = new_figure(width=3.6 * ncols, height=3.0 * nrows + 0.4, nrows=nrows, ncols=ncols, sharey=True)
        flat = list(axes.ravel())
        for ax, (knob, curve) in zip(flat, series, strict=False):
            _draw_lines(ax, [(knob, curve)])
            for gamma in gammas:
                bound = gamma_bound(curve.p0, gamma)
                ax.axhline(bound, color="0.5", linestyle="--", linewidth=0.7, label=f"p0/2^{gamma:g}")
                ax.text(
                    1.01, bound, f"γ={gamma:g}", transform=ax.get_yaxis_transform(), fontsize="x-small", va="center"
                )
                n_star = n_star_for_gamma(curve.values, curve.probabilities, p0=curve.p0, gamma=gamma)
                if n_star is not None:
                    ax.plot([n_star], [bound], marker="v", color="0.2", markersize=4, linestyle="none", label="_n_star")
            ax.set_title(
                f"{KNOB_LABELS.get(knob, knob)}\nγ_max = {_gamma_text(gamma_max(curve.probabilities, p0=curve.p0))}",
                fontsize="small",
            )
            ax.set_xlabel(x_label(curve.parameter))
            ax.set_ylabel(Y_LABEL)
            ax.set_ylim(-0.02, 1.02)
            legend = ax.get_legend()
            if legend is not None:
                legend.remove()
        for ax in flat[len(series) :]:
            ax.set_visible(False)
        figure.suptitle(
            _title(curves, f"{layer} IFM: γ coverage per knob (dashed: p0/2^γ; ▼: n*(γ))"),
            fontsize="medium",
        )
    return finish(_tidy(series), figure, None if out is None else Path(out))


def write_figures(
    sweeps: Sequence[Any],
    *,
    out_dir: str | Path,
    model: str | None = None,
    image: str | None = None,
    gammas: Sequence[float] = DEFAULT_GAMMAS,
    layer_order: Sequence[str] | None = None,
) -> dict[str, Plotted]:
    """Every figure the sweeps of one (model, image) allow, as <out_dir>/<name>.png|pdf; a ValueError when none.

    Which figures that is, is decided by ifmsan.workflow.plan.figure_names, which the workflow asks too.
    """
    curves = select_image(sweeps, model=model, image=image)
    out = Path(out_dir)
    plain = [c for c in curves if c.knob == "nonzero_mean" and c.chain == ""]
    draws: dict[str, Any] = {
        "figure2": lambda path: figure2(curves, out=path),
        "figure4": lambda path: figure4(curves, out=path),
        "figure5": lambda path: figure5(curves, out=path, layer_order=layer_order),
        "heatmap": lambda path: layer_heatmap(curves, out=path, layer_order=layer_order),
        "effsan": lambda path: effsan_per_layer(curves, out=path, layer_order=layer_order),
    }
    names = figure_names(
        sweeps=[Sweep(c.layer, c.knob, bool(c.chain)) for c in curves],
        layer_order=layer_order,
        one_parameter=len({c.parameter for c in plain}) <= 1,
    )
    for name in names:
        if name.startswith("knob_coverage_"):
            layer = name.removeprefix("knob_coverage_")
            check_id(layer, name="layer name (part of a figure file name)")

            def draw(path: Path, layer: str = layer) -> Plotted:
                """The knob-coverage figure of this layer."""
                return knob_coverage(curves, out=path, layer=layer, gammas=gammas)

            draws[name] = draw
    if not names:
        raise ValueError(
            "the sweeps allow no figure: figure2 needs pool5 with knobs first and nonzero_mean, figure4 pool5 and "
            "fc6, figure5 pool5 chains, heatmap/effsan an unchained nonzero_mean sweep, knob_coverage two knobs "
            "of one layer"
        )
    for name in sorted(draws.keys() - set(names)):
        log.info("skipped %s: the sweeps lack what it needs", name)
    return draw_all(draws, names, out)


__all__ = [
    "effsan_per_layer",
    "figure2",
    "figure4",
    "figure5",
    "knob_coverage",
    "layer_heatmap",
    "write_figures",
]
