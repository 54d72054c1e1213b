"""Figures: the lines, cells and bars drawn equal the sweep data; files are written, labelled and reproducible."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sweep_fixtures import concat_images, make_sweep, write_sweep

from ifmsan.cli import main
from ifmsan.report import figures


def wiggly(seed: int, n: int = 30) -> np.ndarray:
    """A decreasing probability curve with some trend inversions."""
    rng = np.random.default_rng(seed)
    return np.clip(np.linspace(0.95, 0.02, n) + rng.normal(0.0, 0.04, n), 0.0, 1.0)


def all_sweeps(*, stand_in: int = 1) -> list:
    """Enough sweeps of one image for every figure: pool5 (3 knobs, 2 chains), fc6, conv1."""
    common = {"stand_in": stand_in, "p0": 0.97}
    return [
        make_sweep(wiggly(1), layer="pool5", **common),
        make_sweep(wiggly(2), layer="pool5", knob="first", **common),
        make_sweep(wiggly(3, 11), layer="pool5", knob="gaussian", parameter="scale", **common),
        make_sweep(wiggly(4), layer="pool5", chain="norm2@5", **common),
        make_sweep(wiggly(5), layer="pool5", chain="norm2@3", **common),
        make_sweep(wiggly(6, 20), layer="fc6", **common),
        make_sweep(wiggly(7), layer="conv1", **common),
    ]


def lines_by_label(ax) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The x/y data of every labelled Line2D of an axes."""
    return {line.get_label(): (np.asarray(line.get_xdata()), np.asarray(line.get_ydata())) for line in ax.get_lines()}


def sweep_xy(sweep) -> tuple[np.ndarray, np.ndarray]:
    """The sweep's own knob values and probabilities."""
    parameter = sweep["probability"].dims[0]
    return sweep[parameter].values, sweep["probability"].values


def assert_line_is_sweep(lines: dict, label: str, sweep) -> None:
    x, y = sweep_xy(sweep)
    assert label in lines, f"{label!r} not among {list(lines)}"
    np.testing.assert_array_equal(lines[label][0], x)
    np.testing.assert_array_equal(lines[label][1], y)


def test_figure2_lines_labels_and_data_equal_the_sweeps() -> None:
    sweeps = all_sweeps()
    plotted = figures.figure2(sweeps)
    ax = plotted.figure.axes[0]
    lines = lines_by_label(ax)
    assert_line_is_sweep(lines, "first sample", sweeps[1])
    assert_line_is_sweep(lines, "proposed: closest to the non-zero mean", sweeps[0])
    assert lines["p0 (unsanitized)"][1].tolist() == [0.97, 0.97]
    assert ax.get_xlabel() == "window size" and ax.get_ylabel() == "probabilistic accuracy"
    title = ax.get_title()
    assert "alexnet_mini" in title and "img0" in title and "(stand-in: alexnet_mini)" in title
    data = plotted.data
    assert list(data["series"].unique()) == ["first sample", "proposed: closest to the non-zero mean"]
    for knob, sweep in (("first", sweeps[1]), ("nonzero_mean", sweeps[0])):
        part = data[data["knob"] == knob]
        np.testing.assert_array_equal(part["value"], sweep_xy(sweep)[0])
        np.testing.assert_array_equal(part["probability"], sweep_xy(sweep)[1])
    assert "stand-in" not in figures.figure2(all_sweeps(stand_in=0)).figure.axes[0].get_title()


def test_figure4_and_figure5_follow_the_paper() -> None:
    sweeps = all_sweeps()
    four = figures.figure4(sweeps)
    lines = lines_by_label(four.figure.axes[0])
    assert_line_is_sweep(lines, "pool5 IFM", sweeps[0])
    assert_line_is_sweep(lines, "fc6 IFM", sweeps[5])  # fc6 has its own, shorter range
    five = figures.figure5(sweeps)
    ax = five.figure.axes[0]
    labels = [line.get_label() for line in ax.get_lines()]
    expected = [
        "pool5 IFM after original norm2 IFM",
        "pool5 IFM after norm2 IFM approximated with the length-3 window",
        "pool5 IFM after norm2 IFM approximated with the length-5 window",
    ]
    assert labels[:3] == expected  # chains sorted by window, the unchained curve first
    lines = lines_by_label(ax)
    for label, sweep in zip(expected, (sweeps[0], sweeps[4], sweeps[3]), strict=True):
        assert_line_is_sweep(lines, label, sweep)
    assert five.data["chain"].unique().tolist() == ["", "norm2@3", "norm2@5"]


def test_heatmap_cells_equal_the_sweeps() -> None:
    sweeps = all_sweeps()
    plotted = figures.layer_heatmap(sweeps)
    ax = plotted.figure.axes[0]
    assert ax.get_xlabel() == "window size"
    assert [t.get_text() for t in ax.get_yticklabels()] == ["conv1", "pool5", "fc6"]
    cells = np.ma.filled(ax.collections[0].get_array(), np.nan).reshape(3, 30)
    for row, sweep in zip(cells, (sweeps[6], sweeps[0], sweeps[5]), strict=True):
        y = sweep_xy(sweep)[1]
        np.testing.assert_array_equal(row[: y.size], y)
        assert np.isnan(row[y.size :]).all()  # fc6 swept fewer windows: blank cells
    assert len(plotted.data) == 30 + 30 + 20


def test_effsan_bars_equal_hand_counts() -> None:
    sweeps = [
        make_sweep([0.5, 0.501, 0.5001, 0.50001, 0.500001], layer="pool5"),  # 1, 2, 3, 5 distinct at 2/3/4/6 decimals
        make_sweep([0.9, 0.9, 0.1, 0.1], layer="conv1"),  # 2 distinct at any precision
    ]
    plotted = figures.effsan_per_layer(sweeps)
    ax = plotted.figure.axes[0]
    heights = [[bar.get_height() for bar in container] for container in ax.containers]
    assert heights == [[0.5, 0.2], [0.5, 0.4], [0.5, 0.6], [0.5, 1.0]]  # per precision: conv1, pool5
    assert plotted.data["eff_san"].tolist() == [0.5, 0.5, 0.5, 0.5, 0.2, 0.4, 0.6, 1.0]


def test_knob_coverage_panels_per_knob() -> None:
    sweeps = all_sweeps()
    plotted = figures.knob_coverage(sweeps, gammas=[0.5, 1.0])
    panels = [ax for ax in plotted.figure.axes if ax.get_visible()]
    assert [ax.get_xlabel() for ax in panels] == ["window size", "window size", "noise scale (× IFM std)"]
    assert all(ax.get_ylabel() == "probabilistic accuracy" for ax in panels)
    knobs = ("nonzero_mean", "first", "gaussian")
    for ax, knob, sweep in zip(panels, knobs, (sweeps[0], sweeps[1], sweeps[2]), strict=True):
        lines = lines_by_label(ax)
        assert_line_is_sweep(lines, knob, sweep)
        assert lines["p0/2^1"][1].tolist() == [0.97 / 2, 0.97 / 2]
        assert "γ_max" in ax.get_title()
    assert set(plotted.data["knob"]) == {"nonzero_mean", "first", "gaussian"}


@pytest.mark.slow
def test_write_figures_makes_png_and_pdf_files(tmp_path: Path) -> None:
    made = figures.write_figures(all_sweeps(), out_dir=tmp_path)
    assert list(made) == ["figure2", "figure4", "figure5", "heatmap", "effsan", "knob_coverage_pool5"]
    for name in made:
        png, pdf = (tmp_path / f"{name}.png").read_bytes(), (tmp_path / f"{name}.pdf").read_bytes()
        assert png.startswith(b"\x89PNG") and len(png) > 1000
        assert pdf.startswith(b"%PDF") and len(pdf) > 1000
    assert not list(tmp_path.glob(".*"))  # no temporary files left


def test_write_figures_draws_only_what_the_sweeps_allow(tmp_path: Path) -> None:
    made = figures.write_figures([make_sweep(wiggly(1), layer="conv1")], out_dir=tmp_path)
    assert list(made) == ["heatmap", "effsan"]
    with pytest.raises(ValueError, match="allow no figure"):
        figures.write_figures([make_sweep(wiggly(1), knob="first")], out_dir=tmp_path / "none")
    assert not (tmp_path / "none").exists()


def test_two_renders_give_identical_bytes(tmp_path: Path) -> None:
    for folder in ("a", "b"):
        figures.figure4(all_sweeps(), out=tmp_path / folder / "figure4")
    for ext in ("png", "pdf"):
        assert (tmp_path / "a" / f"figure4.{ext}").read_bytes() == (tmp_path / "b" / f"figure4.{ext}").read_bytes()


def test_figures_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = [make_sweep(wiggly(1), layer=layer, image_id="a") for layer in ("pool5", "fc6")]
    b = [make_sweep(wiggly(2), layer=layer, image_id="b") for layer in ("pool5", "fc6")]
    files = [str(write_sweep(s, tmp_path / f"{i}.nc")) for i, s in enumerate(a)]
    files.append(str(write_sweep(concat_images([b[0]]), tmp_path / "b.nc")))
    out = tmp_path / "figs"
    assert main(["figures", "--sweeps", *files, "--out-dir", str(out)]) == 2
    assert "several" in capsys.readouterr().err and not out.exists()
    assert main(["figures", "--sweeps", *files, "--out-dir", str(out), "--image", "a"]) == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "effsan.pdf", "effsan.png", "figure4.pdf", "figure4.png", "heatmap.pdf", "heatmap.png",
    ]  # fmt: skip
