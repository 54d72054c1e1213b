"""Inputs that must belong together: p0 against the IFMs it was computed from, attack sweeps and attack files of one
run and one set of attack options, and every score read from a file inside its range. CLI runs in-process."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import xarray as xr
from PIL import Image
from sweep_fixtures import make_sweep, write_sweep
from test_attack_summary import example

from ifmsan import models
from ifmsan.attacks.summary import check_twin
from ifmsan.cli import main
from ifmsan.report import consistency
from ifmsan.steps import io
from ifmsan.steps.extract import ifms_of
from ifmsan.steps.sweep import sweep_dataset

MODEL = ["--model", "alexnet_mini"]


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One image's IFMs of alexnet_mini (random init, seed 0), made by the CLI."""
    root = tmp_path_factory.mktemp("together")
    image = root / "img.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(image)
    ifms = root / "ifms.nc"
    assert main(["extract", *MODEL, "--image", str(image), "--image-id", "img", "--out", str(ifms)]) == 0
    return {"image": image, "ifms": ifms}


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """Exit code and stderr of one in-process CLI run."""
    code = main(args)
    return code, capsys.readouterr().err


# --- p0 in an IFM file is the p0 of its own IFMs -------------------------------------------------------------------


def test_p0_recomputed_from_every_layer_is_bit_identical_to_the_stored_one(made) -> None:
    dataset = io.read_ifms(made["ifms"])
    net = models.load("alexnet_mini")
    stored = float(dataset.attrs["p0"])
    recomputed = consistency.check_p0_of_ifms(
        net, ifms_of(dataset), layers=net.ifm_layers, target=int(dataset.attrs["target"]), p0=stored, source="x"
    )
    assert list(recomputed) == list(net.ifm_layers)
    assert set(recomputed.values()) == {stored}  # the same machine and threads: the same bits


def edited(source: Path, out: Path, *, layer: str | None = None, scale: float = 0.0, p0: float | None = None) -> Path:
    """A copy of an IFM file with one layer's IFM multiplied by `scale` (0: zeroed), or another p0 recorded."""
    dataset = io.read_netcdf(source)
    if layer is not None:
        dataset[layer] = dataset[layer] * scale
    if p0 is not None:
        dataset.attrs["p0"] = p0
    return io.write_netcdf(dataset, out)


P0_EDITS = [
    ("zeroed-swept-layer", {"layer": "pool5"}, ["--layer", "pool5"], "pool5"),
    ("scaled-swept-layer", {"layer": "conv3", "scale": 3.0}, ["--layer", "conv3"], "conv3"),
    ("zeroed-chain-layer", {"layer": "conv2"}, ["--layer", "pool5", "--chain", "conv2@3"], "conv2"),
    ("p0-edited", {"p0": 0.999}, ["--layer", "pool5"], "pool5"),
]  # fmt: skip


@pytest.mark.parametrize(("edit", "layer_args", "layer"), [c[1:] for c in P0_EDITS], ids=[c[0] for c in P0_EDITS])
def test_sweep_refuses_an_ifm_file_whose_p0_is_not_its_ifms(made, tmp_path: Path, capsys, edit, layer_args, layer):
    bad = edited(made["ifms"], tmp_path / "bad.nc", **edit)
    stored = float(io.read_netcdf(bad).attrs["p0"])
    out = tmp_path / "out" / "s.nc"
    code, err = run_cli(
        ["sweep", *MODEL, "--ifms", str(bad), *layer_args, "--values", "2:4", "--out", str(out)], capsys
    )
    assert code == 2, err
    assert f"{bad}: p0 recomputed from the IFM of layer {layer!r} is " in err
    assert f"but the file records p0 = {stored!r}" in err
    assert not (tmp_path / "out").exists()


def test_gamma_refuses_an_ifm_file_whose_p0_is_not_its_ifms(made, tmp_path: Path, capsys) -> None:
    bad = edited(made["ifms"], tmp_path / "bad.nc", layer="pool5")
    out = tmp_path / "out" / "g.csv"
    code, err = run_cli(
        ["gamma", *MODEL, "--ifms", str(bad), "--layers", "pool5", "--gammas", "1", "--out", str(out)], capsys
    )
    assert code == 2, err
    assert f"{bad}: p0 recomputed from the IFM of layer 'pool5' is " in err
    assert not out.exists()


def test_the_p0_check_changes_no_output_bit(made, monkeypatch) -> None:
    """The check only reads: a sweep with it and one with it switched off are identical, for every kind of knob."""
    dataset = io.read_ifms(made["ifms"])
    net = models.load("alexnet_mini")
    runs = []
    for check in (True, False):
        if not check:
            monkeypatch.setattr(consistency, "check_p0_of_ifms", lambda *a, **k: {})
        runs.append([
            sweep_dataset(net, dataset, layer="conv2", knob=knob, values=values, progress=False)
            for knob, values in (("nonzero_mean", range(2, 9)), ("random", range(2, 9)), ("gaussian", [0.5, 1.0]))
        ])  # fmt: skip
    for with_check, without in zip(*runs, strict=True):
        xr.testing.assert_identical(with_check, without)
        assert with_check.attrs["p0"] == float(dataset.attrs["p0"])


def test_sweep_names_the_noise_scale_when_the_network_overflows(made, monkeypatch) -> None:
    from ifmsan.steps import sweep as sweep_module

    dataset = io.read_ifms(made["ifms"])
    net = models.load("alexnet_mini")
    nan = {"probability": np.full(2, np.nan), "top1": np.zeros(2, np.int64), "top1_probability": np.full(2, np.nan)}
    monkeypatch.setattr(sweep_module, "sweep_ifm", lambda *a, **k: nan)
    with pytest.raises(
        ValueError, match=r"gaussian scale 0.5 \(2 of 2 values\): the noise overflows the network: choose "
    ):
        sweep_dataset(net, dataset, layer="conv2", knob="gaussian", values=[0.5, 1.0], progress=False)


def test_sweep_blames_the_weights_when_the_unsanitized_ifm_overflows_too(made) -> None:
    net = models.load("alexnet_mini")
    with torch.no_grad():
        net.fc8.weight.fill_(3e38)  # finite, but the logits overflow for any input: p0 cannot be recomputed either
    with pytest.raises(
        ValueError, match=r"window 2 \(2 of 2 values\): the weights overflow \(the unsanitized IFM gives"
    ):
        sweep_dataset(net, io.read_ifms(made["ifms"]), layer="fc7", knob="nonzero_mean", values=[2, 3], progress=False)


# --- attack --sweeps: one run, one configuration, one network, one target rule ------------------------------------

SWEEP_MIXES = [
    ("run", {"run": "other"}, "run"),
    ("config-hash", {"config_hash": "zzz"}, "config_hash"),
    ("extract-hash", {"extract_hash": "e2"}, "extract_hash"),
    ("model", {"model": "bvlc_alexnet"}, "model"),
    ("weights", {"weights_sha": "f" * 64}, "weights"),
    ("target-source", {"target_source": "ground_truth"}, "target_source"),
]  # fmt: skip


def attack_args(sweeps: list[Path], out: Path, *extra: str) -> list[str]:
    """An `ifmsan attack` command line that fails, if at all, before any training."""
    return ["attack", *MODEL, "--layer", "pool5", "--knob", "nonzero_mean", "--values", "2", "--n-train", "4",
            "--n-test", "2", "--n-examples", "1", "--sweeps", *map(str, sweeps), *extra, "--out", str(out)]  # fmt: skip


@pytest.mark.parametrize(("changes", "key"), [c[1:] for c in SWEEP_MIXES], ids=[c[0] for c in SWEEP_MIXES])
def test_attack_refuses_sweeps_of_different_runs(tmp_path: Path, capsys, changes: dict, key: str) -> None:
    first = make_sweep([0.9, 0.3, 0.1], image_id="a")
    first.attrs.update(run="demo", extract_hash="e1")
    second = make_sweep([0.9, 0.2, 0.1], image_id="b")
    second.attrs.update({"run": "demo", "extract_hash": "e1", **changes})
    paths = [write_sweep(first, tmp_path / "a.nc"), write_sweep(second, tmp_path / "b.nc")]
    code, err = run_cli(attack_args(paths, tmp_path / "out" / "x.nc"), capsys)
    assert code == 2
    assert f"--sweeps files of different {key}: --sweeps {paths[0]} has " in err and f"--sweeps {paths[1]} has" in err
    assert not (tmp_path / "out").exists()


def test_attack_refuses_sweeps_of_another_run_than_its_own(tmp_path: Path, capsys) -> None:
    sweep = make_sweep([0.9, 0.3, 0.1])
    sweep.attrs["run"] = "demo"
    path = write_sweep(sweep, tmp_path / "a.nc")
    code, err = run_cli(attack_args([path], tmp_path / "out" / "x.nc", "--attr", "run=paper"), capsys)
    assert code == 2 and f"--sweeps {path} was made with run 'demo', but --attr run=paper" in err


# --- attack-report and certify-report: one run, one set of attack options -----------------------------------------


def report_args(attacks: list[Path], tmp_path: Path, doubled: list[Path] = ()) -> list[str]:
    out = tmp_path / "out"
    return ["attack-report", "--attacks", *map(str, attacks), "--doubled", *map(str, doubled),
            "--tables-dir", str(out / "t"), "--figures-dir", str(out / "f")]  # fmt: skip


def with_options(dataset: xr.Dataset, **attrs: Any) -> xr.Dataset:
    """An attack Dataset with the recorded options of a run (the workflow's) and some changed."""
    dataset = dataset.copy(deep=True)
    dataset.attrs.update(run="demo", config_hash="c1", extract_hash="e1", epochs_adaptive=3, epochs_inversion=10,
                         epochs_attribute=15, lr_adaptive=1e-4, lr_attack=2e-3, resolution=32, batch_size=32,
                         n_examples=1, seed=0, threads=1)  # fmt: skip
    dataset.attrs.update(attrs)
    return dataset


ATTACK_MIXES = [
    ("run", {"run": "paper"}, "run"),
    ("config-hash", {"config_hash": "c2"}, "config_hash"),
    ("weights", {"weights_sha": "e" * 64}, "weights"),
    ("n-train", {"n_train": 20}, "n_train"),
    ("lr-adaptive", {"lr_adaptive": 1e-3}, "lr_adaptive"),
    ("seed", {"seed": 1}, "seed"),
    ("gammas", {"gammas": json.dumps(["1"])}, "gammas"),
    ("optimize", {"optimize_images": 2}, "optimize_images"),
]  # fmt: skip


@pytest.mark.parametrize(("changes", "key"), [c[1:] for c in ATTACK_MIXES], ids=[c[0] for c in ATTACK_MIXES])
def test_attack_report_refuses_files_of_different_runs_or_options(tmp_path: Path, capsys, changes, key) -> None:
    first = io.write_netcdf(with_options(example()), tmp_path / "a.nc")
    other = with_options(example(), **changes)
    other.attrs["knob"] = "first"
    second = io.write_netcdf(other, tmp_path / "b.nc")
    code, err = run_cli(report_args([first, second], tmp_path), capsys)
    assert code == 2
    assert f"--attacks files of different {key}: --attacks {first} has " in err and f"--attacks {second} has" in err
    assert not (tmp_path / "out").exists()


def test_attack_report_names_random_init_weights_by_their_seeded_source(tmp_path: Path, capsys) -> None:
    files = []
    for seed, knob in ((0, "nonzero_mean"), (1, "first")):
        dataset = with_options(
            example(), weights_sha="", weights_source=f"seeded Kaiming-normal initialisation (seed {seed})"
        )
        dataset.attrs["knob"] = knob
        files.append(io.write_netcdf(dataset, tmp_path / f"{knob}.nc"))
    code, err = run_cli(report_args(files, tmp_path), capsys)
    assert code == 2 and "has 'seeded Kaiming-normal initialisation (seed 0)'" in err and "(seed 1)'" in err
    assert "''" not in err


def twin_of(base: xr.Dataset, **changes: Any) -> xr.Dataset:
    """The 2B file of `base`: n_train and every epoch count doubled, then `changes`."""
    doubled = {
        key: 2 * base.attrs[key] for key in ("n_train", "epochs_adaptive", "epochs_inversion", "epochs_attribute")
    }
    return with_options(base, **{**doubled, **changes})


TWIN_MIXES = [
    ("epochs-not-doubled", {"epochs_inversion": 10}, "has epochs_inversion 10, not twice the 10 of --attacks"),
    ("n-train-tripled", {"n_train": 30}, "has n_train 30, not twice the 10 of --attacks"),
    ("other-n-test", {"n_test": 50}, "has n_test '50', but its B file --attacks"),
    ("other-run", {"run": "paper"}, "has run 'paper', but its B file --attacks"),
]  # fmt: skip


@pytest.mark.parametrize(("changes", "message"), [c[1:] for c in TWIN_MIXES], ids=[c[0] for c in TWIN_MIXES])
def test_attack_report_compares_each_2b_file_with_its_b_file(tmp_path: Path, capsys, changes, message) -> None:
    base = with_options(example())
    assert check_twin(twin_of(base), base, twin_name="2B", base_name="B") is None  # a proper twin passes
    first = io.write_netcdf(base, tmp_path / "a.nc")
    twin = io.write_netcdf(twin_of(base, **changes), tmp_path / "a.2B.nc")
    code, err = run_cli(report_args([first], tmp_path, [twin]), capsys)
    assert code == 2 and f"--doubled {twin} {message}" in err and str(first) in err
    assert not (tmp_path / "out").exists()


# --- every score read from a file is inside its range --------------------------------------------------------------

SCORE_EDITS = [
    ("nan-epsilon", ("5", "epsilon_adaptive"), math.nan, "scores[epsilon_adaptive] at parameter 5 = nan; expected a finite number"),
    ("infinite-psnr", ("5", "inversion_psnr"), math.inf, "scores[inversion_psnr] at parameter 5 = inf; expected a finite"),
    ("probability-5", ("5", "adaptive_p_target"), 5.0, "scores[adaptive_p_target] at parameter 5 = 5.0; expected a number in [0, 1]"),
    ("accuracy-negative", ("20", "legit_accuracy"), -0.1, "scores[legit_accuracy] at parameter 20 = -0.1; expected a number in [0, 1]"),
    ("ssim-2", ("unsanitized", "inversion_ssim"), 2.0, "scores[inversion_ssim] at parameter unsanitized = 2.0; expected a number in [-1, 1]"),
    ("infinite-epsilon-with-p", ("5", "epsilon_legit"), math.inf, "scores[epsilon_legit] at parameter 5 = inf"),
    ("p0-zero", "p0", 0.0, "attribute p0 = 0.0; expected a number in (0, 1]"),
    ("mean-image-psnr-inf", "mean_image_psnr", math.inf, "attribute mean_image_psnr = inf; expected a finite number"),
    ("majority-text", "label_majority", "high", "attribute label_majority = 'high' is not a number"),
    ("n-train-fraction", "n_train", 2.5, "attribute n_train = 2.5; expected a whole number >= 1"),
]  # fmt: skip


@pytest.mark.parametrize(("where", "value", "message"), [c[1:] for c in SCORE_EDITS], ids=[c[0] for c in SCORE_EDITS])
def test_attack_report_refuses_a_score_out_of_range(tmp_path: Path, capsys, where, value, message) -> None:
    dataset = example()
    if isinstance(where, tuple):
        dataset["scores"].loc[{"parameter": where[0], "metric": where[1]}] = value
        dataset["scores"].loc[{"parameter": "5", "metric": "legit_p_target"}] = 0.4  # ε legit = inf needs p = 0
    else:
        dataset.attrs[where] = value
    path = io.write_netcdf(dataset, tmp_path / "a.nc")
    code, err = run_cli(report_args([path], tmp_path), capsys)
    assert code == 2 and f"{path}: {message}" in err
    assert not (tmp_path / "out").exists()


def test_an_infinite_epsilon_is_read_where_its_probability_is_zero(tmp_path: Path) -> None:
    dataset = example()  # window 20: adaptive_p_target 0
    dataset["scores"].loc[{"parameter": "20", "metric": "epsilon_adaptive"}] = math.inf
    assert io.read_attack(io.write_netcdf(dataset, tmp_path / "a.nc"))["scores"].sel(parameter="20").size


def test_certify_report_refuses_attack_files_of_different_runs(tmp_path: Path, capsys) -> None:
    paths = []
    for budget, run in (("b1", "demo"), ("b2", "paper")):
        dataset = with_options(example(), budget=budget, run=run)
        paths.append(io.write_netcdf(dataset, tmp_path / f"{budget}.nc"))
    maps = tmp_path / "maps.nc"
    io.write_netcdf(xr.Dataset({name: ((), 1.0) for name in ("g_hat", "held_norm", "held_norm_se", "full_norm")},
                               attrs={"ifmsan_kind": "certify_maps", "layer": "pool5", "image_id": "i", "run": "demo",
                                      "model": "alexnet_mini", "weights_sha": "abc", "extract_hash": "e1"}), maps)  # fmt: skip
    calibration = tmp_path / "c.json"
    calibration.write_text(json.dumps({"ifmsan_kind": "calibration", "layer": "pool5", "calibration_std": 1.0}))
    out = tmp_path / "out"
    code, err = run_cli(["certify-report", "--maps", str(maps), "--calibration", str(calibration), "--attacks",
                         *map(str, paths), "--scales", "1", "--tables-dir", str(out / "t"), "--figures-dir",
                         str(out / "f")], capsys)  # fmt: skip
    assert code == 2 and f"certify inputs of different run: --maps {maps} has 'demo', --attacks {paths[1]} has" in err
    assert not out.exists()


@pytest.mark.parametrize("value", [-1.0, math.nan, math.inf], ids=["negative", "nan", "inf"])
def test_certify_map_norms_out_of_range_are_named(tmp_path: Path, value: float) -> None:
    maps = xr.Dataset({name: (("space",), [1.0, value if name == "held_norm" else 1.0])
                       for name in ("g_hat", "held_norm", "held_norm_se", "full_norm")},
                      attrs={"ifmsan_kind": "certify_maps", "layer": "pool5", "image_id": "i"})  # fmt: skip
    path = io.write_netcdf(maps, tmp_path / "maps.nc")
    with pytest.raises(
        ValueError, match=rf"maps.nc: held_norm \(value 1 of 2\) = {value!r}; expected a finite number >= 0"
    ):
        io.read_certify_maps(path)


SWEEP_EDITS = [
    ("zero-ratio-1.5", {"zero_ratio": 1.5}, "zero_ratio = 1.5; expected a number in [0, 1]"),
    ("n-zeros-over-size", {"n_zeros": 50000}, "n_zeros = 50000 exceeds ifm_size = 43264"),
    ("ifm-size-zero", {"ifm_size": 0}, "ifm_size = 0.0; expected a finite number >= 1"),
    ("p0-over-one", {"p0": 1.5}, "p0 must be a probability in (0, 1], got 1.5"),
]  # fmt: skip


@pytest.mark.parametrize(("attrs", "message"), [c[1:] for c in SWEEP_EDITS], ids=[c[0] for c in SWEEP_EDITS])
def test_report_refuses_a_sweep_value_out_of_range(tmp_path: Path, capsys, attrs: dict, message: str) -> None:
    sweep = make_sweep([0.9, 0.5, 0.1])
    sweep.attrs.update(attrs)
    path = write_sweep(sweep, tmp_path / "s.nc")
    code, err = run_cli(["report", "--sweeps", str(path), "--out-dir", str(tmp_path / "out")], capsys)
    assert code == 2 and f"{path}: {message}" in err
    assert not (tmp_path / "out").exists()


# --- a diverging attack names the option --------------------------------------------------------------------------


def small_options(**changes: Any) -> Any:
    from ifmsan.attacks import AttackOptions

    base = dict(n_train=4, n_test=2, epochs_adaptive=1, epochs_inversion=1, epochs_attribute=1, resolution=32,
                batch_size=4, n_examples=1)  # fmt: skip
    return AttackOptions(**{**base, **changes})


@pytest.mark.slow
def test_a_diverging_adaptive_server_names_lr_adaptive() -> None:
    from ifmsan.attacks import run_attacks

    net = models.load("alexnet_mini")
    with pytest.raises(
        ValueError, match=r"training with --lr-adaptive 1e\+30 diverged .*choose a smaller --lr-adaptive"
    ):
        run_attacks(net, layer="fc7", knob="nonzero_mean", values=[2], options=small_options(lr_adaptive=1e30))


@pytest.mark.slow
def test_overflowing_noise_is_named_not_blamed_on_the_weights() -> None:
    from ifmsan.attacks import run_attacks

    net = models.load("alexnet_mini")
    with pytest.raises(
        ValueError, match=r"sanitized at value 0.5 hold NaN or infinite values: the noise .*--noise-scale"
    ):
        run_attacks(net, layer="fc7", knob="gaussian", values=[0.5], options=small_options(),
                    sanitizer=lambda ifm, value, seed: ifm + torch.tensor(math.inf))  # fmt: skip
