"""Attack figures: the frontier draws each knob's legitimate accuracy against each adversary's score, the
reconstruction grid picks its columns as documented, files are named as planned and reproducible, bad input is refused.

Every attack file here is built in memory (nothing is trained)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from ifmsan.attacks import IDENTITY, METRICS, UNSANITIZED
from ifmsan.attacks import figures as af
from ifmsan.report.plotting import KNOB_LABELS

PARAMETERS = {"nonzero_mean": "window", "first": "window", "gaussian": "scale", "laplace": "scale"}


def make_attack(
    values: list[float],
    *,
    layer: str = "pool5",
    knob: str = "nonzero_mean",
    roles: list[str] | None = None,
    model: str = "alexnet_mini",
    n_examples: int = 2,
    size: int = 8,
    seed: int = 0,
) -> xr.Dataset:
    """An attack file as `ifmsan attack` writes it: scores falling with the knob value, random uint8 pictures."""
    parameter = PARAMETERS[knob]
    rng = np.random.default_rng(seed)
    n = len(values) + 1
    fall = np.linspace(0.0, 1.0, n)
    columns = {
        "legit_accuracy": 0.9 - 0.6 * fall,
        "legit_p_target": 0.85 - 0.5 * fall,
        "epsilon_legit": 0.4 * fall,
        "adaptive_accuracy": 0.92 - 0.4 * fall - 0.01 * seed,
        "adaptive_p_target": 0.88 - 0.4 * fall,
        "epsilon_adaptive": 0.3 * fall,
        "inversion_psnr": 18.0 - 4.0 * fall + 0.1 * seed,
        "inversion_ssim": 0.5 - 0.3 * fall,
        "attribute_accuracy": 0.6 - 0.5 * fall,
    }
    scores = np.stack([columns[m] for m in METRICS], axis=1)
    labels = [UNSANITIZED, *(f"{v:g}" if parameter == "window" else str(float(v)) for v in values)]
    return xr.Dataset(
        {
            "scores": (("parameter", "metric"), scores),
            "reconstruction": (
                ("parameter", "example", "y", "x", "rgb"),
                rng.integers(0, 256, (n, n_examples, size, size, 3), dtype=np.uint8),
            ),
            "original": (
                ("example", "y", "x", "rgb"),
                rng.integers(0, 256, (n_examples, size, size, 3), dtype=np.uint8),
            ),
        },
        coords={
            "parameter": labels,
            "value": ("parameter", np.asarray([IDENTITY[parameter], *values], dtype=np.float64)),
            "role": ("parameter", [UNSANITIZED, *(roles or ["grid"] * len(values))]),
            "metric": list(METRICS),
            "example": np.arange(n_examples),
        },
        attrs={
            "ifmsan_kind": "attack",
            "model": model,
            "stand_in": 1,
            "layer": layer,
            "knob": knob,
            "parameter": parameter,
            "p0": 0.85,
            "original_accuracy": 0.9,
            "label_majority": 0.1,
            "attribute_chance": 1 / 15,
            "attribute_majority": 0.2,
            "mean_image_psnr": 11.5,
            "mean_image_ssim": 0.2,
            "n_train": 10,
            "n_test": 10,
            "resolution": size,
            "gammas": json.dumps(["1", "2"]),
            "n_star": "{}",
            "n_star_per_image": "{}",
        },  # fmt: skip
    )


def pool5_pair() -> list[xr.Dataset]:
    """A window knob with an n* row and a noise knob: the frontier's case."""
    return [
        make_attack([3, 7, 12], roles=["grid", "grid; n_star gamma=1", "n_star gamma=2"]),
        make_attack([0.5, 1.0], knob="gaussian", seed=1),
    ]


def all_files() -> list[xr.Dataset]:
    """Two layers, three (layer, knob) pairs, in an order that is not the knobs' order."""
    return [
        make_attack([0.5, 1.0], knob="gaussian", seed=1),
        make_attack([3, 7, 12], roles=["grid", "grid; n_star gamma=1", "n_star gamma=2"]),
        make_attack([2, 4], layer="fc6", seed=2),
    ]


def test_figure_names_frontier_per_layer_first_seen_then_reconstructions_per_pair() -> None:
    pairs = [("pool5", "gaussian"), ("pool5", "nonzero_mean"), ("fc6", "nonzero_mean"), ("pool5", "gaussian")]
    assert af.attack_figure_names(pairs) == [
        "frontier_pool5",
        "frontier_fc6",
        "reconstructions_pool5_gaussian",
        "reconstructions_pool5_nonzero_mean",
        "reconstructions_fc6_nonzero_mean",
    ]
    assert af.attack_figure_names([]) == []


def test_figure_names_are_the_workflow_plans() -> None:
    """The workflow names its outputs with ifmsan.workflow.plan before any figure is drawn: one function decides both."""
    from ifmsan.workflow import plan

    assert af.attack_figure_names is plan.attack_figure_names


@pytest.mark.parametrize("pair", [("../x", "gaussian"), ("pool5", "a/b"), ("", "first")])
def test_figure_names_refuse_unsafe_ids(pair: tuple[str, str]) -> None:
    with pytest.raises(ValueError, match="not a safe id"):
        af.attack_figure_names([pair])


@pytest.mark.slow
def test_frontier_data_and_lines_are_legit_accuracy_against_each_metric() -> None:
    attacks = pool5_pair()
    plotted = af.frontier(attacks, layer="pool5")
    data = plotted.data
    assert list(data.columns) == af.FRONTIER_COLUMNS
    assert len(plotted.figure.axes) == len(af.PANELS)
    for attack in attacks:
        knob = attack.attrs["knob"]
        scores = attack["scores"].to_pandas()
        for ax, (metric, _, _) in zip(plotted.figure.axes, af.PANELS, strict=True):
            part = data[(data["knob"] == knob) & (data["metric"] == metric)]
            assert part["label"].tolist() == [str(p) for p in attack["parameter"].values]  # unsanitized first, by value
            np.testing.assert_array_equal(part["legit_accuracy"], scores["legit_accuracy"].to_numpy())
            np.testing.assert_array_equal(part["score"], scores[metric].to_numpy())
            lines = {line.get_label(): line for line in ax.get_lines()}
            line = lines[KNOB_LABELS[knob]]
            np.testing.assert_array_equal(line.get_xdata(), scores["legit_accuracy"].to_numpy())
            np.testing.assert_array_equal(line.get_ydata(), scores[metric].to_numpy())
    assert len(data) == len(af.PANELS) * (4 + 3)


def test_frontier_marks_unsanitized_n_star_and_references() -> None:
    attacks = pool5_pair()
    plotted = af.frontier(attacks, layer="pool5")
    adaptive, inversion, attribute = plotted.figure.axes
    for ax in plotted.figure.axes:
        lines = {line.get_label(): line for line in ax.get_lines()}
        star = lines["unsanitized"]
        assert star.get_marker() == "*"
        assert star.get_xdata().tolist() == [0.9]
        texts = sorted(t.get_text() for t in ax.texts)
        assert texts == ["n*(γ=1) = 7", "n*(γ=2) = 12"]
    refs = {line.get_label(): line.get_ydata()[0] for line in adaptive.get_lines()}
    assert refs["chance (majority label)"] == 0.1 and refs["original network"] == 0.9
    refs = {line.get_label(): line.get_ydata()[0] for line in inversion.get_lines()}
    assert refs["mean training image"] == 11.5
    refs = {line.get_label(): line.get_ydata()[0] for line in attribute.get_lines()}
    assert refs["chance (uniform)"] == pytest.approx(1 / 15) and refs["majority attribute"] == 0.2
    # the two knobs' unsanitized PSNRs differ (18.0 and 18.1): one reference per knob
    labels = [line.get_label() for line in inversion.get_lines()]
    assert "decoder, unsanitized IFM (nonzero_mean)" in labels and "decoder, unsanitized IFM (gaussian)" in labels
    assert "stand-in" in plotted.figure.get_suptitle()


def test_frontier_ignores_other_layers_and_orders_knobs() -> None:
    plotted = af.frontier(all_files(), layer="fc6")
    assert set(plotted.data["layer"]) == {"fc6"}
    plotted = af.frontier(all_files(), layer="pool5")
    assert list(dict.fromkeys(plotted.data["knob"])) == ["nonzero_mean", "gaussian"]


def test_reconstructions_pick_four_spread_columns_with_every_n_star() -> None:
    values = [2, 3, 4, 5, 6, 7, 8, 9]
    roles = ["grid"] * 8
    roles[2] = "grid; n_star gamma=1"  # window 4
    attack = make_attack(values, roles=roles, n_examples=3)
    plotted = af.reconstructions(attack)
    assert plotted.data["column"].tolist() == [
        "original",
        "unsanitized",
        "window 2",
        "window 4",
        "window 6",
        "window 9",
    ]
    axes = np.asarray(plotted.figure.axes).reshape(3, 6)
    assert "n*(γ=1)" in axes[0, 3].get_title() and axes[0, 2].get_title().startswith("window 2")
    np.testing.assert_array_equal(axes[1, 0].get_images()[0].get_array(), attack["original"].values[1])
    window_6 = list(attack["parameter"].values).index("6")
    np.testing.assert_array_equal(axes[2, 4].get_images()[0].get_array(), attack["reconstruction"].values[window_6, 2])


def test_reconstructions_show_all_few_values_titled_by_scale() -> None:
    plotted = af.reconstructions(make_attack([0.5, 2.0], knob="gaussian"))
    assert plotted.data["column"].tolist() == ["original", "unsanitized", "scale 0.5", "scale 2"]


@pytest.mark.slow
def test_write_attack_figures_writes_exactly_the_named_files_reproducibly(tmp_path: Path) -> None:
    attacks = pool5_pair()[::-1]  # one layer keeps this test fast; the names of several are tested above
    names = af.attack_figure_names((a.attrs["layer"], a.attrs["knob"]) for a in attacks)
    paths = af.write_attack_figures(attacks, tmp_path / "a")
    expected = [tmp_path / "a" / f"{name}.{ext}" for name in names for ext in ("png", "pdf")]
    assert paths == expected
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == sorted(p.name for p in expected)
    again = af.write_attack_figures(attacks, tmp_path / "b")
    for first, second in zip(paths, again, strict=True):
        assert first.read_bytes() == second.read_bytes(), first.name
        assert first.stat().st_size > 1000


def test_bad_inputs_are_refused_with_clear_messages(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no attack files given"):
        af.write_attack_figures([], tmp_path)
    with pytest.raises(ValueError, match="no attack files given"):
        af.frontier([], layer="pool5")
    mixed = [make_attack([3]), make_attack([0.5], knob="gaussian", model="bvlc_alexnet")]
    with pytest.raises(ValueError, match="several models.*alexnet_mini, bvlc_alexnet"):
        af.write_attack_figures(mixed, tmp_path / "mixed")
    assert not (tmp_path / "mixed").exists()
    with pytest.raises(ValueError, match="several models"):
        af.frontier(mixed, layer="pool5")
    with pytest.raises(ValueError, match="two attack files of layer 'pool5' and knob 'nonzero_mean'"):
        af.frontier([make_attack([3]), make_attack([5])], layer="pool5")
    with pytest.raises(ValueError, match="no attack file of layer 'fc7'; the files given are of pool5"):
        af.frontier(pool5_pair(), layer="fc7")
    with pytest.raises(ValueError, match="lacks variable scores"):
        af.frontier([make_attack([3]).drop_vars("scores")], layer="pool5")
    with pytest.raises(ValueError, match="lacks attribute layer"):
        af.reconstructions(make_attack([3]).drop_attrs().assign_attrs(model="m", knob="first", parameter="window"))
    with pytest.raises(ValueError, match="holds no example images"):
        af.reconstructions(make_attack([3], n_examples=0))
    with pytest.raises(ValueError, match="lacks the variables reconstruction"):
        af.reconstructions(make_attack([3]).drop_vars("reconstruction"))
