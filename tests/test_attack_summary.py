"""attack_summary, `ifmsan attack-report`, the attacks section of the config and the plan's attack jobs.

The attack files here are built by hand (no training), so every expected cell is computed independently.
"""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import xarray as xr
import yaml

from ifmsan.attacks import METRICS
from ifmsan.attacks.summary import (
    BROKEN,
    HOLDS,
    NO_SWEEPS,
    NOT_CONVERGED,
    UNCHECKED,
    UNREACHED,
    attack_summary,
    attack_summary_markdown,
)
from ifmsan.cli import main
from ifmsan.steps.io import write_netcdf
from ifmsan.workflow import plan
from ifmsan.workflow.configcheck import check_config, config_problems
from ifmsan.workflow.schema import check_schema

REPO = Path(__file__).resolve().parents[1]
SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"
DEMO = yaml.safe_load((REPO / "config" / "demo.yaml").read_text())


def attack_file(
    *, layer: str = "pool5", knob: str = "nonzero_mean", rows: dict[str, dict[str, float]], roles: dict[str, str],
    n_star: dict[str, Any], gammas: tuple[str, ...] = ("1", "2"), p0: float = 0.8, model: str = "alexnet_mini",
) -> xr.Dataset:  # fmt: skip
    """An attack Dataset with the given rows (label -> metric -> score; missing metrics are 0)."""
    labels = ["unsanitized", *rows.pop("order")] if "order" in rows else list(rows)
    scores = np.array([[rows[label].get(m, 0.0) for m in METRICS] for label in labels])
    values = [1.0 if label == "unsanitized" else float(label) for label in labels]
    size = 32
    return xr.Dataset(
        {
            "scores": (("parameter", "metric"), scores),
            "reconstruction": (
                ("parameter", "example", "y", "x", "rgb"),
                np.zeros((len(labels), 1, size, size, 3), np.uint8),
            ),
            "original": (("example", "y", "x", "rgb"), np.zeros((1, size, size, 3), np.uint8)),
        },  # fmt: skip
        coords={
            "parameter": labels,
            "value": ("parameter", values),
            "role": ("parameter", [roles.get(label, "grid") for label in labels]),
            "metric": list(METRICS),
            "example": [0],
        },
        attrs={
            "ifmsan_kind": "attack",
            "model": model,
            "weights_sha": "abc",
            "stand_in": 1,
            "layer": layer,
            "knob": knob,
            "parameter": "window",
            "p0": p0,
            "original_accuracy": 0.9,
            "label_majority": 0.1,
            "attribute_chance": 1 / 15,
            "attribute_majority": 0.12,
            "mean_image_psnr": 15.0,
            "mean_image_ssim": 0.3,
            "n_train": 10,
            "n_test": 5,
            "gammas": json.dumps(list(gammas)),
            "n_star": json.dumps(n_star),
        },  # fmt: skip
    )


def example() -> xr.Dataset:
    """Unsanitized, window 5 (n* for γ=1, ε_adaptive 0.9 > ln 2) and 20 (n* for γ=2, ε_adaptive 1.2 < 2 ln 2)."""
    rows = {
        "unsanitized": {"inversion_psnr": 25.0, "inversion_ssim": 0.8, "attribute_accuracy": 0.3, "adaptive_p_target": 0.9},
        "5": {"legit_accuracy": 0.5, "epsilon_legit": 1.1, "adaptive_accuracy": 0.6, "epsilon_adaptive": 0.9, "adaptive_p_target": 0.45,
              "inversion_psnr": 20.0, "inversion_ssim": 0.6, "attribute_accuracy": 0.2},
        "20": {"legit_accuracy": 0.2, "epsilon_legit": 1.5, "adaptive_accuracy": 0.5, "epsilon_adaptive": 1.2, "adaptive_p_target": 0.0,
               "inversion_psnr": 16.0, "inversion_ssim": 0.4, "attribute_accuracy": 0.1},
    }  # fmt: skip
    roles = {"unsanitized": "unsanitized", "5": "grid; n_star gamma=1", "20": "n_star gamma=2"}
    return attack_file(rows=rows, roles=roles, n_star={"1": 5, "2": 20})


def test_summary_reads_the_scores_at_each_n_star_and_judges_against_gamma_ln2() -> None:
    frame = attack_summary([example()])
    assert list(frame["gamma"]) == [1.0, 2.0]
    assert list(frame["n_star"]) == [5.0, 20.0]
    assert frame["epsilon_bound"].tolist() == pytest.approx([math.log(2), 2 * math.log(2)])
    assert frame["epsilon_adaptive"].tolist() == [0.9, 1.2]
    assert frame["adaptive_accuracy"].tolist() == [0.6, 0.5]
    assert frame["epsilon_adaptive_own"].tolist() == [pytest.approx(math.log(2)), math.inf]  # ln(0.9/0.45); p = 0
    assert frame["inversion_psnr"].tolist() == [20.0, 16.0]
    assert frame["psnr_unsanitized"].tolist() == [25.0, 25.0] and frame["psnr_mean_image"].tolist() == [15.0, 15.0]
    assert frame["attribute_unsanitized"].tolist() == [0.3, 0.3]
    assert frame["holds"].tolist() == [False, False]  # 0.9 >= 0.693 but unchecked at 2B; 1.2 < 1.386
    assert frame["verdict"].tolist() == [UNCHECKED, BROKEN]  # without the 2B files "holds" is not said
    text = attack_summary_markdown(frame)
    assert "Stand-in" in text and UNCHECKED in text and BROKEN in text and "| pool5 " in text


def doubled(epsilon_5: float, accuracy_5: float) -> xr.Dataset:
    """example() at budget 2B: only window 5's adaptive server differs."""
    twin = example()
    twin.attrs["n_train"] = 20
    twin["scores"].loc[{"parameter": "5", "metric": "epsilon_adaptive"}] = epsilon_5
    twin["scores"].loc[{"parameter": "5", "metric": "adaptive_accuracy"}] = accuracy_5
    return twin


@pytest.mark.parametrize(
    ("epsilon_5", "accuracy_5", "expected"),
    [
        (0.8, 0.61, HOLDS),  # both budgets meet ln 2 = 0.693, the accuracy moved 0.01
        (0.5, 0.61, BROKEN),  # holds at B, broken at 2B: broken
        (0.8, 0.62, NOT_CONVERGED),  # a move of 0.02 is not converged
        (0.8, 0.58, NOT_CONVERGED),
    ],
)
def test_a_verdict_holds_only_if_it_survives_the_doubled_budget(epsilon_5, accuracy_5, expected) -> None:
    frame = attack_summary([example()], doubled=[doubled(epsilon_5, accuracy_5)])
    assert frame["verdict"].tolist() == [expected, BROKEN]  # γ = 2 stays broken (1.2 < 1.386 at B)
    assert frame["holds"].tolist() == [expected == HOLDS, False]
    assert frame["epsilon_adaptive_2b"].iloc[0] == epsilon_5 and frame["n_train_2b"].iloc[0] == 20
    assert frame["accuracy_move"].iloc[0] == pytest.approx(abs(accuracy_5 - 0.6))
    assert "ε adaptive 2B" in attack_summary_markdown(frame)


def test_summary_says_when_n_star_was_not_reached_or_no_sweeps_were_given() -> None:
    rows = {"unsanitized": {}, "5": {}}
    unreached = attack_file(rows=copy.deepcopy(rows), roles={"unsanitized": "unsanitized"}, n_star={"1": None},
                            gammas=("1",))  # fmt: skip
    no_sweeps = attack_file(rows=copy.deepcopy(rows), roles={"unsanitized": "unsanitized"}, n_star={}, gammas=("1",),
                            knob="first")  # fmt: skip
    frame = attack_summary([no_sweeps, unreached])
    assert frame["verdict"].tolist() == [UNREACHED, NO_SWEEPS]  # nonzero_mean sorts before first
    assert frame["n_star"].isna().all() and frame["holds"].isna().all()
    assert "–" in attack_summary_markdown(frame)


def test_summary_orders_layers_by_the_given_order() -> None:
    rows = {"unsanitized": {}, "5": {}}
    files = [attack_file(layer=layer, rows=copy.deepcopy(rows), roles={}, n_star={}, gammas=("1",))
             for layer in ("fc6", "conv2")]  # fmt: skip
    assert attack_summary(files, layer_order=["conv2", "fc6"])["layer"].tolist() == ["conv2", "fc6"]
    with pytest.raises(ValueError, match="no attack files"):
        attack_summary([])


@pytest.mark.slow
def test_attack_report_writes_the_table_and_planned_figures_or_nothing(tmp_path: Path) -> None:
    gaussian = example()
    gaussian.attrs.update(knob="gaussian", parameter="scale")
    paths = []
    for name, dataset in (("a.nc", example()), ("b.nc", gaussian)):
        paths.append(str(write_netcdf(dataset, tmp_path / name)))
    tables, figures = tmp_path / "tables", tmp_path / "figures"
    assert main(["attack-report", "--attacks", *paths, "--tables-dir", str(tables), "--figures-dir", str(figures)]) == 0
    assert sorted(p.name for p in tables.iterdir()) == ["attack_summary.csv", "attack_summary.md"]
    expected = plan.attack_figure_names([("pool5", "nonzero_mean"), ("pool5", "gaussian")])
    assert expected == ["frontier_pool5", "reconstructions_pool5_nonzero_mean", "reconstructions_pool5_gaussian"]
    assert sorted(p.name for p in figures.iterdir()) == sorted(f"{n}.{e}" for n in expected for e in ("png", "pdf"))


def test_attack_report_refuses_mixed_attack_files_before_writing(tmp_path: Path) -> None:
    """The same (layer, knob) twice, or two networks: refused before anything is written."""
    first = str(write_netcdf(example(), tmp_path / "a.nc"))
    other_net = attack_file(rows={"unsanitized": {}}, roles={}, n_star={}, model="bvlc_alexnet", knob="first")
    for bad in ([first, first], [first, str(write_netcdf(other_net, tmp_path / "c.nc"))]):
        out = tmp_path / "bad"
        code = main(
            ["attack-report", "--attacks", *bad, "--tables-dir", str(out / "t"), "--figures-dir", str(out / "f")]
        )
        assert code == 2 and not out.exists()


def with_attacks(**changes: Any) -> dict[str, Any]:
    config = copy.deepcopy(DEMO)
    config["attacks"].update(changes)
    return config


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        pytest.param(
            {"layers": ["conv2", "nope"]}, "attacks.layers[1]: 'nope' is not a swept layer", id="unswept_layer"
        ),
        pytest.param(
            {"knobs": ["nonzero_mean", "bogus"]}, "attacks.knobs[1]: 'bogus' is not one of", id="unknown_knob"
        ),
        pytest.param({"windows": [1]}, "attacks.windows[0]", id="identity_window"),
        pytest.param({"scales": [0.0]}, "attacks.scales[0]", id="identity_scale"),
        pytest.param({"resolution": 48}, "attacks.resolution", id="resolution"),
        pytest.param({"layers": []}, "attacks.layers", id="no_layers"),
    ],
)
def test_schema_and_config_check_refuse_bad_attack_sections(changes: dict[str, Any], fragment: str) -> None:
    config = with_attacks(**changes)
    with pytest.raises(ValueError, match=r"^invalid config") as info:
        check_schema(config, SCHEMA)
        check_config(config, files=False)
    assert fragment in str(info.value)


def test_config_check_refuses_unswept_knobs_and_large_examples_and_allows_cuda() -> None:
    config = with_attacks(knobs=["nonzero_mean", "mean"], n_examples=500)
    config["knobs"] = ["nonzero_mean", "first"]
    config["device"] = "cuda"
    check_schema(config, SCHEMA)
    problems = "\n".join(config_problems(config, files=False))
    assert "attacks.knobs[1]: 'mean' is not a swept knob" in problems
    assert "attacks.n_examples: 500 exceeds attacks.n_test" in problems
    assert "attacks:" not in problems.replace("attacks.", "")  # cuda: the attack jobs run on the CPU all the same


def test_plan_lists_one_attack_job_per_layer_and_knob_and_nothing_without_attacks() -> None:
    planned = plan.plan(with_attacks())
    assert planned.attacks == (("conv2", "nonzero_mean"), ("conv2", "gaussian"), ("pool5", "nonzero_mean"),
                               ("pool5", "gaussian"))  # fmt: skip
    assert planned.attack_figures[:2] == ("frontier_conv2", "frontier_pool5")
    assert plan.ATTACK_NOTEBOOK in planned.notebooks
    off = copy.deepcopy(DEMO)
    del off["attacks"]
    planned = plan.plan(off)
    assert planned.attacks == () and planned.attack_figures == () and plan.ATTACK_NOTEBOOK not in planned.notebooks
