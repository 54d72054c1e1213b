"""ifmsan.workflow.plan: the figures and tables a config plans are exactly those `ifmsan figures` and `ifmsan report` write."""

from __future__ import annotations

import argparse
import copy
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from sweep_fixtures import make_sweep, write_sweep

from ifmsan.commands import report
from ifmsan.report import figures
from ifmsan.report.plotting import Plotted
from ifmsan.workflow import plan

REPO = Path(__file__).resolve().parents[1]
PAPER = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
DEMO = yaml.safe_load((REPO / "config" / "demo.yaml").read_text())
TINY = yaml.safe_load((REPO / "tests" / "data" / "tiny.yaml").read_text())


def variant(base: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """A deep copy of a shipped config with some top-level keys replaced."""
    return {**copy.deepcopy(base), **changes}


CONFIGS = {
    "paper": PAPER,
    "demo": DEMO,
    "tiny": TINY,
    "chain_only_pool5": variant(TINY, layers=["norm2", "fc6"]),
    "one_knob": variant(TINY, knobs=["first"], chains=[]),
    "noise_only_no_chains": variant(TINY, knobs=["gaussian", "laplace"], chains=[]),
    "all_layers_default": variant(TINY, layers=[], knobs=["nonzero_mean"], chains=[]),
}
"""Expected figures, written by hand from the rules in plan.figure_names' docstring (not computed by it)."""
EXPECTED = {
    "paper": [
        "figure2",
        "figure4",
        "figure5",
        "heatmap",
        "effsan",
        *(f"knob_coverage_{layer}" for layer in PAPER["layers"]),
    ],
    "demo": [
        "figure2",
        "figure4",
        "figure5",
        "heatmap",
        "effsan",
        *(f"knob_coverage_{layer}" for layer in DEMO["layers"]),
    ],
    "tiny": ["figure2", "figure5", "heatmap", "effsan", "knob_coverage_norm2", "knob_coverage_pool5"],
    # pool5 is only a chain target: its unchained baseline and chain sweeps still make Figures 4 and 5
    "chain_only_pool5": ["figure4", "figure5", "heatmap", "effsan", "knob_coverage_norm2", "knob_coverage_fc6"],
    "one_knob": [],
    "noise_only_no_chains": ["knob_coverage_norm2", "knob_coverage_pool5"],
    "all_layers_default": ["figure4", "heatmap", "effsan"],
}


def curves_for(config: dict[str, Any], layers: tuple[str, ...]) -> list[Any]:
    """One tiny synthetic sweep per curve this config's jobs write for one image."""
    out = []
    for i, sweep in enumerate(plan.config_sweeps(config, layers)):
        steps = next(c["steps"] for c in config["chains"] if c["layer"] == sweep.layer) if sweep.chained else ""
        noisy = sweep.knob in ("laplace", "gaussian")
        probs = np.linspace(0.9, 0.1 + 0.01 * i, 5)
        out.append(
            make_sweep(probs, layer=sweep.layer, knob=sweep.knob, chain=steps, parameter="scale" if noisy else "window")
        )
    return out


@pytest.fixture
def stub_drawing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Figure functions that draw nothing, so the test checks write_figures' decision, not matplotlib."""

    def stub(*args: Any, out: Path, **kwargs: Any) -> Plotted:
        return Plotted(data=None, figure=None, files=())

    for name in ("figure2", "figure4", "figure5", "layer_heatmap", "effsan_per_layer", "knob_coverage"):
        monkeypatch.setattr(figures, name, stub)


def filled(config: dict[str, Any]) -> dict[str, Any]:
    """The config with the schema defaults plan() relies on."""
    return {"layers": [], "chains": [], **config}


@pytest.mark.parametrize("name", list(CONFIGS))
def test_planned_figures_are_the_ones_written(name: str, tmp_path: Path, stub_drawing: None) -> None:
    config = filled(CONFIGS[name])
    planned = plan.plan(config)
    assert list(planned.figures) == EXPECTED[name]
    sweeps = curves_for(config, planned.layers)
    if not EXPECTED[name]:
        with pytest.raises(ValueError, match="allow no figure"):
            figures.write_figures(sweeps, out_dir=tmp_path, layer_order=planned.layers)
        return
    made = figures.write_figures(sweeps, out_dir=tmp_path, layer_order=planned.layers)
    assert list(made) == list(planned.figures)


@pytest.mark.slow
def test_tiny_figures_are_really_drawn(tmp_path: Path) -> None:
    config = filled(TINY)
    planned = plan.plan(config)
    figures.write_figures(curves_for(config, planned.layers), out_dir=tmp_path, layer_order=planned.layers)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        f"{n}.{e}" for n in planned.figures for e in ("png", "pdf")
    )


@pytest.mark.parametrize("name", ["tiny", "one_knob"])
@pytest.mark.parametrize("images", [1, 2])
def test_planned_tables_are_the_ones_written(name: str, images: int, tmp_path: Path) -> None:
    config = filled(CONFIGS[name])
    config["images"] = [{"id": f"img{i}", "source": f"minidata:test:{i}"} for i in range(images)]
    planned = plan.plan(config)
    paths = []
    for i in range(images):
        for j, sweep in enumerate(curves_for(config, planned.layers)):
            sweep.attrs["image_id"] = f"img{i}"
            sweep.attrs["image_sha256"] = f"{i}" * 64
            paths.append(write_sweep(sweep, tmp_path / "sweeps" / f"{i}_{j}.nc"))
    out = tmp_path / "tables"
    args = argparse.Namespace(
        sweeps=paths, out_dir=out, gammas=[0.5, 1.0], decimals=4, layer_order=list(planned.layers), allow_mixed=False
    )
    assert report.run(args) == 0
    expected = {
        "table1.csv",
        "table1.md",
        "gamma_report.csv",
        "gamma_report.md",
        "gamma_summary.csv",
        "gamma_summary.md",
    }
    expected |= {"table2.csv", "table2.md"} if config["chains"] else set()
    expected |= {"table1_per_image.csv"} if images > 1 else set()
    assert set(planned.tables) == expected == {p.name for p in out.iterdir()}


def test_knob_coverage_follows_the_layer_order() -> None:
    sweeps = [plan.Sweep(layer, knob, False) for layer in ("fc6", "conv1", "extra") for knob in ("first", "mean")]
    assert plan.figure_names(sweeps=sweeps, layer_order=["conv1", "fc6"]) == [
        "knob_coverage_conv1", "knob_coverage_fc6", "knob_coverage_extra",
    ]  # fmt: skip


def test_plan_uses_the_models_layers_when_the_config_lists_none() -> None:
    from ifmsan.models.caffe_alexnet import IFM_LAYERS

    assert plan.plan(filled(variant(TINY, layers=[]))).layers == IFM_LAYERS
    assert plan.plan(filled(TINY)).notebooks == (
        "inspect_ifms",
        "compare_knobs",
        "attacks",
        "certify",
    )  # attacks:, certify:
    assert plan.plan(filled(variant(TINY, attacks=None, certify=None))).notebooks == ("inspect_ifms", "compare_knobs")
    assert plan.plan(filled(variant(TINY, attacks=None))).notebooks == ("inspect_ifms", "compare_knobs", "certify")


HASHED = {
    "model": {"name": "alexnet_mini", "weights": "train", "mean_file": None, "preprocess": None},
    "train_mini": {"epochs": 1, "seed": 0}, "images": [{"id": "a", "source": "minidata:test:1", "target": 1}],
    "windows": {"start": 2, "stop": 12, "step": 1}, "knobs": ["nonzero_mean", "first", "laplace"],
    "noise_scales": [1.0], "chains": [], "gammas": [1], "seed": 0, "batch_size": 4, "threads": 1, "device": "cpu",
}  # fmt: skip
"""A config with every key the provenance hashes could read."""
SWEEP_SETTINGS = {
    "windows": {"windows": {"start": 2, "stop": 11, "step": 1}},
    "batch_size": {"batch_size": 2},
    "threads": {"threads": 2},
    "device": {"device": "cuda"},
}
"""Edits that change what every sweep-stage job computes, not what extraction computes."""
NEITHER = {
    "seed": {"seed": 1},
    "knobs": {"knobs": ["nonzero_mean", "first"]},
    "knob_order": {"knobs": ["laplace", "nonzero_mean", "first"]},
    "noise_scales": {"noise_scales": [2.0]},
    "chains": {"chains": [{"steps": "norm2@3", "layer": "pool5"}]},
    "images": {"images": [{"id": "b", "source": "minidata:test:2", "target": 2}]},
    "gammas": {"gammas": [2, 3]},
    "decimals": {"decimals": 2},
}
"""Edits that neither hash sees: the rules pass them as options to the jobs that use them (or no job uses them)."""
MODEL = {
    "preprocess": {"model": {**HASHED["model"], "preprocess": "caffe"}},
    "mean_file": {"model": {**HASHED["model"], "mean_file": {"path": "m.binaryproto", "sha256": "ab" * 32}}},
    "weights": {"model": {**HASHED["model"], "weights": {"path": "w.pt", "sha256": "cd" * 32}}},
    "name": {"model": {**HASHED["model"], "name": "bvlc_alexnet"}},
    "training": {"train_mini": {"epochs": 2, "seed": 0}},
}
"""Edits of what extraction uses, which both hashes see."""


@pytest.mark.parametrize("case", list(MODEL))
def test_extract_hash_changes_with_what_extraction_uses(case: str) -> None:
    changed = {**HASHED, **MODEL[case]}
    assert plan.extract_hash(changed) != plan.extract_hash(HASHED)
    assert plan.config_hash(changed) != plan.config_hash(HASHED)


@pytest.mark.parametrize("case", list(SWEEP_SETTINGS))
def test_sweep_settings_change_config_hash_not_extract_hash(case: str) -> None:
    changed = {**HASHED, **SWEEP_SETTINGS[case]}
    assert plan.extract_hash(changed) == plan.extract_hash(HASHED)
    assert plan.config_hash(changed) != plan.config_hash(HASHED)


@pytest.mark.parametrize("case", list(NEITHER))
def test_per_job_options_change_neither_hash(case: str) -> None:
    changed = {**HASHED, **NEITHER[case]}
    assert plan.extract_hash(changed) == plan.extract_hash(HASHED)
    assert plan.config_hash(changed) == plan.config_hash(HASHED)


def test_training_settings_count_only_when_the_workflow_trains_the_weights() -> None:
    given = {**HASHED, "model": {**HASHED["model"], "weights": {"path": "w.pt", "sha256": "cd" * 32}}}
    assert plan.extract_hash({**given, "train_mini": {"epochs": 9}}) == plan.extract_hash(given)
    assert len(plan.extract_hash(HASHED)) == 16 and int(plan.extract_hash(HASHED), 16) >= 0
    assert plan.plan(filled(TINY)).extract_hash == plan.extract_hash(filled(TINY))


def test_scaling_doc_quotes_the_planned_job_counts() -> None:
    """docs/scaling.md's job counts are what ifmsan.workflow.plan.planned_jobs gives (itself checked against snakemake -n)."""
    import yaml
    from snakemake.utils import validate

    from ifmsan.workflow.plan import planned_jobs

    repo = Path(__file__).resolve().parents[1]
    text = " ".join((repo / "docs" / "scaling.md").read_text(encoding="utf-8").split())
    for config, pattern in (
        ("config.yaml", "The paper config plans {} jobs"),
        ("imagenet16.yaml", "`config/imagenet16.yaml` {},"),
        ("imagenet1000.yaml", "`config/imagenet1000.yaml` {} ("),
    ):
        settings = yaml.safe_load((repo / "config" / config).read_text())
        validate(settings, str(repo / "workflow" / "schemas" / "config.schema.yaml"))
        total = sum(planned_jobs(settings).values())
        assert pattern.format(f"{total:,}".replace(",", " ")) in text, (config, total)
