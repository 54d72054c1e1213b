"""Figures of the attack files: the privacy-utility frontier of a layer and the decoder's reconstructions.

The frontier puts every knob of one layer on a common x axis, the utility the legitimate pipeline keeps
(`legit_accuracy`), so that sample-and-hold and noise are compared at equal utility rather than at equal knob
value; one panel per adversary gives what that utility costs in privacy. The figure functions use the plotting kit
ifmsan.report.plotting: a Figure of their own drawn in its style, saved byte-for-byte reproducibly by `save_figure`,
and returned as a `Plotted` whose tidy DataFrame holds exactly the points drawn.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from ifmsan.attacks.run import UNSANITIZED
from ifmsan.report.plotting import KNOB_LABELS, Plotted, draw_all, finish, new_figure, style
from ifmsan.steps.io import attr_text
from ifmsan.workflow.plan import attack_figure_names

X_METRIC = "legit_accuracy"
"""The utility axis of the frontier: top-1 accuracy of the unchanged network after the layer on sanitized IFMs."""
X_LABEL = "utility: legitimate top-1 accuracy"
PANELS: tuple[tuple[str, str, str], ...] = (
    ("adaptive_accuracy", "adaptive server", "top-1 accuracy of the adaptive server"),
    ("inversion_psnr", "image inversion", "PSNR of the decoded images (dB)"),
    ("attribute_accuracy", "attribute inference", "accuracy of the attribute probe"),
)
"""(metric, panel title, y label) of the frontier's panels, one per adversary, left to right."""
MAX_SANITIZED_COLUMNS = 4
"""Sanitized knob values shown by `reconstructions` besides the original and the unsanitized decoding."""
FRONTIER_COLUMNS = [
    "model", "layer", "knob", "parameter", "label", "value", "role", "metric", X_METRIC, "score",
]  # fmt: skip
"""The columns of the frontier's tidy data: one row per point drawn (file row x panel metric)."""
_REQUIRED_ATTRS = ("model", "layer", "knob", "parameter")
_N_STAR = re.compile(r"^n_star gamma=(\S+)$")


def _check_attacks(attacks: Sequence[xr.Dataset]) -> list[xr.Dataset]:
    """The files as a list, or a ValueError: none, not an attack file, mixed models, or a (layer, knob) twice."""
    checked = list(attacks)
    if not checked:
        raise ValueError("no attack files given: pass the files `ifmsan attack` wrote (ifmsan.steps.io.read_attack)")
    for i, attack in enumerate(checked):
        if not isinstance(attack, xr.Dataset):
            raise ValueError(f"attack file {i} is a {type(attack).__name__}, not an xarray Dataset")
        missing = [f"variable {n}" for n in ("scores",) if n not in attack.data_vars]
        missing += [f"coordinate {n}" for n in ("parameter", "value", "role", "metric") if n not in attack.coords]
        missing += [f"attribute {n}" for n in _REQUIRED_ATTRS if attr_text(attack.attrs.get(n)) == ""]
        if missing:
            raise ValueError(f"attack file {i} lacks {', '.join(missing)}; expected a file written by `ifmsan attack`")
        metrics = {str(m) for m in attack["metric"].values}
        absent = [m for m in (X_METRIC, *(p[0] for p in PANELS)) if m not in metrics]
        if absent:
            raise ValueError(f"attack file {i} ({_name(attack)}) lacks the metrics {', '.join(absent)}")
    models = sorted({attr_text(a.attrs["model"]) for a in checked})
    if len(models) > 1:
        raise ValueError(f"attack files of several models cannot share a figure: {', '.join(models)}; pass one model's")
    seen: set[tuple[str, str]] = set()
    for attack in checked:
        pair = _pair(attack)
        if pair in seen:
            raise ValueError(f"two attack files of layer {pair[0]!r} and knob {pair[1]!r}: pass one per (layer, knob)")
        seen.add(pair)
    return checked


def _pair(attack: xr.Dataset) -> tuple[str, str]:
    """(layer, knob) of an attack file."""
    return attr_text(attack.attrs["layer"]), attr_text(attack.attrs["knob"])


def _name(attack: xr.Dataset) -> str:
    """ "<layer>/<knob>" for messages."""
    return "/".join(_pair(attack))


def _labels(attack: xr.Dataset, coordinate: str) -> list[str]:
    """A string coordinate as Python strings (netCDF may hand back bytes)."""
    return [attr_text(v) for v in attack[coordinate].values]


def _float_attr(attacks: Sequence[xr.Dataset], name: str) -> list[float | None]:
    """A numeric attribute of each file, None where absent or not finite (its reference line is then left out)."""
    out: list[float | None] = []
    for attack in attacks:
        try:
            value = float(attack.attrs[name])
        except (KeyError, TypeError, ValueError):
            value = math.nan
        out.append(value if math.isfinite(value) else None)
    return out


def _n_stars(role: str) -> list[str]:
    """The gammas whose n* a row is ("1" in "grid; n_star gamma=1")."""
    found = (_N_STAR.match(part.strip()) for part in role.split(";"))
    return [match.group(1) for match in found if match]


def _role_note(role: str) -> str:
    """Why a row is there, for a reader: "n*(γ=1)" for an n* row, nothing for a plain grid value."""
    notes = []
    for part in (p.strip() for p in role.split(";")):
        match = _N_STAR.match(part)
        if match:
            notes.append(f"n*(γ={match.group(1)})")
        elif part not in ("", "grid", UNSANITIZED):
            notes.append(part)
    return ", ".join(notes)


def _ordered_rows(attack: xr.Dataset) -> list[int]:
    """Row indices with "unsanitized" first, then by knob value (growing sanitization), so a curve runs in order."""
    labels = _labels(attack, "parameter")
    values = np.asarray(attack["value"].values, dtype=np.float64)
    return sorted(range(len(labels)), key=lambda i: (labels[i] != UNSANITIZED, values[i], i))


def _tidy_frontier(attack: xr.Dataset) -> pd.DataFrame:
    """One row per (file row, panel metric): the legitimate accuracy (x) and the adversary's score (y)."""
    model, (layer, knob) = attr_text(attack.attrs["model"]), _pair(attack)
    labels, roles = _labels(attack, "parameter"), _labels(attack, "role")
    values = np.asarray(attack["value"].values, dtype=np.float64)
    scores = attack["scores"].transpose("parameter", "metric")
    x = np.asarray(scores.sel(metric=X_METRIC).values, dtype=np.float64)
    rows = [
        {
            "model": model,
            "layer": layer,
            "knob": knob,
            "parameter": attr_text(attack.attrs["parameter"]),
            "label": labels[i],
            "value": float(values[i]),
            "role": roles[i],
            "metric": metric,
            X_METRIC: float(x[i]),
            "score": float(scores.sel(metric=metric).values[i]),
        }
        for metric, _, _ in PANELS
        for i in _ordered_rows(attack)
    ]
    return pd.DataFrame(rows, columns=FRONTIER_COLUMNS)


def _knob_order(attacks: Sequence[xr.Dataset]) -> list[xr.Dataset]:
    """Files in the library's knob order (unknown knobs last, by name), so colours do not depend on file order."""
    from ifmsan.core.knobs import KNOBS

    def key(attack: xr.Dataset) -> tuple[int, str]:
        knob = _pair(attack)[1]
        return (KNOBS.index(knob) if knob in KNOBS else len(KNOBS), knob)

    return sorted(attacks, key=key)


def _title(attacks: Sequence[xr.Dataset], what: str) -> str:
    """ "<what>" over the model, flagged when it is a stand-in (as ifmsan.report.figures titles are)."""
    model = attr_text(attacks[0].attrs["model"])
    stand_in = any(int(a.attrs.get("stand_in", 0) or 0) for a in attacks)
    return f"{what}\n{model}" + (" (a stand-in, not the paper's network)" if stand_in else "")


def _reference(
    ax: Any, attacks: Sequence[xr.Dataset], values: Sequence[float | None], *, label: str, **line_style: Any
) -> None:
    """A horizontal reference line; one per knob (labelled with it) when the files disagree on its value."""
    distinct = {round(v, 12) for v in values if v is not None}
    if len(distinct) == 1:
        ax.axhline(next(v for v in values if v is not None), label=label, linewidth=1.0, **line_style)
        return
    for attack, value in zip(attacks, values, strict=True):
        if value is not None:
            ax.axhline(value, label=f"{label} ({_pair(attack)[1]})", linewidth=0.8, **line_style)


def _references(ax: Any, metric: str, attacks: Sequence[xr.Dataset], data: pd.DataFrame) -> None:
    """The reference lines of one panel: what an adversary that learned nothing, or everything, would score."""
    if metric == "adaptive_accuracy":
        ax.plot([0.0, 1.0], [0.0, 1.0], color="0.75", linestyle="-.", linewidth=0.8, label="no gain over legitimate")
        chance = _float_attr(attacks, "label_majority")
        _reference(ax, attacks, chance, label="chance (majority label)", color="0.4", linestyle="--")
        original = _float_attr(attacks, "original_accuracy")
        _reference(ax, attacks, original, label="original network", color="0.2", linestyle=":")
    elif metric == "inversion_psnr":
        mean_image = _float_attr(attacks, "mean_image_psnr")
        _reference(ax, attacks, mean_image, label="mean training image", color="0.4", linestyle="--")
        mine = data[(data["metric"] == metric) & (data["label"] == UNSANITIZED)]
        unsanitized = [mine.loc[mine["knob"] == _pair(a)[1], "score"] for a in attacks]
        finite = [float(s.iloc[0]) if len(s) and math.isfinite(s.iloc[0]) else None for s in unsanitized]
        _reference(ax, attacks, finite, label="decoder, unsanitized IFM", color="0.2", linestyle=":")
    elif metric == "attribute_accuracy":
        chance = _float_attr(attacks, "attribute_chance")
        _reference(ax, attacks, chance, label="chance (uniform)", color="0.4", linestyle="--")
        majority = _float_attr(attacks, "attribute_majority")
        _reference(ax, attacks, majority, label="majority attribute", color="0.2", linestyle=":")


def _finite(values: pd.Series) -> np.ndarray:
    """Scores as float64 with ±inf as NaN (an exact copy's PSNR is +inf), so axes scale to what can be drawn."""
    array = np.asarray(values, dtype=np.float64)
    return np.where(np.isfinite(array), array, np.nan)


def _draw_panel(ax: Any, metric: str, attacks: Sequence[xr.Dataset], data: pd.DataFrame, palette: Any) -> None:
    """One adversary's panel: one seaborn line per knob (its points in value order), then ★ and the n*(γ) names."""
    import seaborn as sns

    parts = []
    for attack, color in zip(attacks, palette, strict=True):
        knob = _pair(attack)[1]
        part = data[(data["metric"] == metric) & (data["knob"] == knob)]
        x, y = part[X_METRIC].to_numpy(dtype=np.float64), _finite(part["score"])
        sns.lineplot(
            x=x, y=y, ax=ax, label=KNOB_LABELS.get(knob, knob), color=color, estimator=None, sort=False, marker="o",
            markersize=4, linewidth=1.2,
        )  # fmt: skip
        parts.append((part, x, y, color))
    for n, (part, x, y, color) in enumerate(parts):
        start = (part["label"] == UNSANITIZED).to_numpy()
        ax.plot(
            x[start], y[start], marker="*", markersize=13, color=color, markeredgecolor="black", markeredgewidth=0.6,
            linestyle="none", zorder=3, label="unsanitized" if n == 0 else "_unsanitized",
        )  # fmt: skip
        for xi, yi, role, text in zip(x, y, part["role"], part["label"], strict=True):
            gammas = _n_stars(role)
            if gammas and math.isfinite(yi):
                note = ", ".join(f"n*(γ={g})" for g in gammas) + f" = {text}"
                ax.annotate(note, (xi, yi), xytext=(4, 5), textcoords="offset points", fontsize="x-small", color=color)


def frontier(attacks: Sequence[xr.Dataset], *, layer: str, out: Path | None = None) -> Plotted:
    """Each adversary's score against the legitimate accuracy, a curve per knob: knobs compared at equal utility."""
    import seaborn as sns

    checked = _check_attacks(attacks)
    mine = _knob_order([a for a in checked if _pair(a)[0] == layer])
    if not mine:
        layers = sorted({_pair(a)[0] for a in checked})
        raise ValueError(f"no attack file of layer {layer!r}; the files given are of {', '.join(layers)}")
    data = pd.concat([_tidy_frontier(a) for a in mine], ignore_index=True)
    palette = sns.color_palette("colorblind", n_colors=len(mine))
    with style():
        figure, axes = new_figure(width=4.0 * len(PANELS), height=4.6, ncols=len(PANELS))
        for ax, (metric, panel, y_label) in zip(axes[0], PANELS, strict=True):
            _draw_panel(ax, metric, mine, data, palette)
            _references(ax, metric, mine, data)
            ax.set_xlim(-0.02, 1.02)
            if metric.endswith("accuracy"):
                ax.set_ylim(-0.02, 1.02)
            ax.set_xlabel(X_LABEL)
            ax.set_ylabel(y_label)
            ax.set_title(panel, fontsize="medium")
            ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), fontsize="x-small", frameon=False)
        figure.suptitle(_title(mine, f"{layer} IFM: privacy-utility frontier of the adversaries"), fontsize="medium")
    return finish(data, figure, out)


def _pick(values: np.ndarray, roles: list[str], rows: list[int], *, limit: int) -> list[int]:
    """At most `limit` sanitized rows, by value: every n* row, the rest spread evenly (smallest and largest kept)."""
    if len(rows) <= limit:
        return rows

    def spread(candidates: list[int], k: int) -> list[int]:
        if k <= 0:
            return []
        if k == 1:
            return [candidates[-1]]  # one slot: the strongest sanitization
        return [candidates[int(i)] for i in np.round(np.linspace(0, len(candidates) - 1, k))]

    n_star = [i for i in rows if _n_stars(roles[i])]
    if len(n_star) >= limit:
        chosen = spread(n_star, limit)
    else:
        chosen = n_star + spread([i for i in rows if i not in n_star], limit - len(n_star))
    return sorted(chosen, key=lambda i: (values[i], i))


def reconstructions(attack: xr.Dataset, *, out: Path | None = None) -> Plotted:
    """Originals beside the decoder's reconstructions at up to four knob values: what the PSNR means to the eye."""
    checked = _check_attacks([attack])[0]
    missing = [n for n in ("reconstruction", "original") if n not in checked.data_vars]
    if missing:
        raise ValueError(f"attack file {_name(checked)} lacks the variables {', '.join(missing)}")
    reconstruction = checked["reconstruction"].transpose("parameter", "example", "y", "x", "rgb").values
    original = checked["original"].transpose("example", "y", "x", "rgb").values
    if original.shape[0] == 0:
        raise ValueError(f"attack file {_name(checked)} holds no example images (it was written with n_examples 0)")
    labels, roles = _labels(checked, "parameter"), _labels(checked, "role")
    if UNSANITIZED not in labels:
        raise ValueError(f"attack file {_name(checked)} has no {UNSANITIZED!r} row")
    values = np.asarray(checked["value"].values, dtype=np.float64)
    order = _ordered_rows(checked)
    shown = [labels.index(UNSANITIZED)]
    shown += _pick(values, roles, [i for i in order if labels[i] != UNSANITIZED], limit=MAX_SANITIZED_COLUMNS)
    parameter = attr_text(checked.attrs["parameter"])
    scores = checked["scores"].transpose("parameter", "metric")
    psnr = np.asarray(scores.sel(metric="inversion_psnr").values, dtype=np.float64)
    ssim = np.asarray(scores.sel(metric="inversion_ssim").values, dtype=np.float64)
    columns = [{"column": "original", "label": "", "value": math.nan, "role": "", "note": "",
                "inversion_psnr": math.nan, "inversion_ssim": math.nan}]  # fmt: skip
    for i in shown:
        title = UNSANITIZED if labels[i] == UNSANITIZED else f"{parameter} {values[i]:g}"
        columns.append({"column": title, "label": labels[i], "value": float(values[i]), "role": roles[i],
                        "note": _role_note(roles[i]), "inversion_psnr": float(psnr[i]),
                        "inversion_ssim": float(ssim[i])})  # fmt: skip
    data = pd.DataFrame(columns)
    n_rows, n_cols = original.shape[0], len(columns)
    with style():
        figure, axes = new_figure(width=1.55 * n_cols + 0.5, height=1.55 * n_rows + 1.3, nrows=n_rows, ncols=n_cols)
        for c, column in enumerate(columns):
            images = original if c == 0 else reconstruction[shown[c - 1]]
            for r in range(n_rows):
                ax = axes[r, c]
                ax.imshow(images[r], interpolation="nearest")
                ax.set_xticks([])
                ax.set_yticks([])
                ax.grid(False)
            lines = [str(column["column"])]
            if c > 0:
                lines += [str(column["note"])] if column["note"] else []
                lines.append(f"PSNR {column['inversion_psnr']:.1f} dB")
            axes[0, c].set_title("\n".join(lines), fontsize="small")
        for r in range(n_rows):
            axes[r, 0].set_ylabel(f"example {r}", fontsize="small")
        layer, knob = _pair(checked)
        what = f"{layer} IFM, {KNOB_LABELS.get(knob, knob)}: held-out images decoded from the sanitized IFM"
        figure.suptitle(_title([checked], what), fontsize="medium")
    return finish(data, figure, out)


def _frontier_to(attacks: Sequence[xr.Dataset], path: Path, *, layer: str) -> Plotted:
    """`frontier` saved to a stem (the argument order `partial` needs)."""
    return frontier(attacks, layer=layer, out=path)


def _reconstructions_to(attack: xr.Dataset, path: Path) -> Plotted:
    """`reconstructions` saved to a stem (the argument order `partial` needs)."""
    return reconstructions(attack, out=path)


def write_attack_figures(attacks: Sequence[xr.Dataset], out_dir: Path) -> list[Path]:
    """Every attack figure as <out_dir>/<name>.png and .pdf, all or none and byte-reproducible; the paths written."""
    checked = _check_attacks(attacks)
    out = Path(out_dir)
    draws: dict[str, Callable[[Path], Plotted]] = {}
    for attack in checked:
        layer, knob = _pair(attack)
        draws.setdefault(f"frontier_{layer}", partial(_frontier_to, checked, layer=layer))
        draws[f"reconstructions_{layer}_{knob}"] = partial(_reconstructions_to, attack)
    made = draw_all(draws, attack_figure_names(_pair(a) for a in checked), out)
    return [path for plotted in made.values() for path in plotted.files]


__all__ = [
    "FRONTIER_COLUMNS",
    "PANELS",
    "X_METRIC",
    "attack_figure_names",
    "frontier",
    "reconstructions",
    "write_attack_figures",
]
