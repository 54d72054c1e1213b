"""The plotting kit the paper figures (ifmsan.report.figures) and the attack figures (ifmsan.attacks.figures) share.

A figure is drawn on a `Figure` of its own on the Agg canvas (no pyplot state) inside `style()`, saved as PNG and
PDF atomically and byte-for-byte reproducibly by `save_figure`, and returned as a `Plotted`: the tidy DataFrame it
plotted, the Figure, and the files written. `draw_all` writes a set of figures all or none.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from ifmsan.report.curves import PARAMETER_LABELS
from ifmsan.steps.io import all_or_none

log = logging.getLogger(__name__)

Y_LABEL = "probabilistic accuracy"
"""The y axis of every probability curve, so all figures name the quantity alike."""
KNOB_LABELS: dict[str, str] = {
    "nonzero_mean": "proposed: closest to the non-zero mean",
    "first": "first sample",
    "mean": "window mean",
    "random": "random sample",
    "laplace": "Laplace noise",
    "gaussian": "Gaussian noise",
}
"""Legend names of the knobs, shared so that a knob reads the same in every figure."""
# Fixed PNG/PDF metadata (no software version, no creation date) and resolution: the same data gives the same bytes.
_PNG_METADATA = {"Software": None}
_PDF_METADATA = {"CreationDate": None, "Producer": None}
_DPI = 150


@dataclass(frozen=True)
class Plotted:
    """What a figure function made: the tidy data it plotted, the matplotlib Figure, and the files it wrote."""

    data: pd.DataFrame
    figure: Any
    files: tuple[Path, ...] = ()


def x_label(parameter: str) -> str:
    """Axis label for the swept parameter: "window size" or "noise scale (× IFM std)"."""
    return PARAMETER_LABELS.get(parameter, parameter)


def new_figure(*, width: float = 6.4, height: float = 4.0, nrows: int = 1, ncols: int = 1, **kwargs: Any) -> Any:
    """A Figure on the Agg canvas, outside pyplot (no global figure state, no GUI backend); call inside `style()`."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(nrows, ncols, squeeze=False, **kwargs)
    return figure, axes


def style() -> Any:
    """The seaborn style context that artists are created in (rc settings are read when an artist is made)."""
    import matplotlib as mpl
    import seaborn as sns

    rc = dict(sns.axes_style("whitegrid"))
    rc.update(sns.plotting_context("notebook", font_scale=0.8))
    rc["svg.hashsalt"] = "ifmsan"
    return mpl.rc_context(rc)


def finish(data: pd.DataFrame, figure: Any, out: Path | None) -> Plotted:
    """Save when asked and wrap up."""
    files = save_figure(figure, out) if out is not None else ()
    return Plotted(data=data, figure=figure, files=files)


def save_figure(figure: Any, stem: str | Path) -> tuple[Path, Path]:
    """Write <stem>.png and <stem>.pdf atomically with fixed metadata, so the same data gives the same bytes."""
    from ifmsan._shared.atomic import atomic_path

    stem = Path(stem)
    written = []
    for ext, metadata in (("png", _PNG_METADATA), ("pdf", _PDF_METADATA)):
        path = stem.parent / f"{stem.name}.{ext}"
        with style(), atomic_path(path, suffix=f".part.{ext}") as tmp:
            figure.savefig(tmp, format=ext, dpi=_DPI, metadata=metadata)
        written.append(path)
    return (written[0], written[1])


def draw_all(draws: Mapping[str, Callable[[Path], Plotted]], names: Sequence[str], out: Path) -> dict[str, Plotted]:
    """Draw each named figure into out/<name>.{png,pdf}, all or none: a figure that fails takes the earlier away."""
    made: dict[str, Plotted] = {}
    with all_or_none(out) as written:
        for name in names:
            made[name] = draws[name](out / name)
            written.extend(made[name].files)
            log.info("wrote %s.png and %s.pdf", out / name, out / name)
    return made


__all__ = [
    "KNOB_LABELS",
    "Y_LABEL",
    "Plotted",
    "draw_all",
    "finish",
    "new_figure",
    "save_figure",
    "style",
    "x_label",
]
