"""Limits at plan time: every number of the schema and the CLI has a maximum the code honours (one table), a memory
estimate refuses what cannot fit before any work, a full disk is one line naming the output, and a YAML alias bomb is
refused in seconds."""

from __future__ import annotations

import copy
import importlib
import math
import os
import shutil
import subprocess
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import xarray as xr
import yaml
from workflow_runner import snakemake

from ifmsan._shared import atomic, limits, memory
from ifmsan._shared.limits import LIMITS, SCHEMA_LIMITS
from ifmsan.cli import main
from ifmsan.core.metrics import check_gamma, gamma_bound
from ifmsan.steps import minidata
from ifmsan.steps.io import write_netcdf
from ifmsan.workflow.configcheck import check_config
from ifmsan.workflow.schema import MAX_CONFIG_VALUES, check_schema, expanded_size, load_schema, with_defaults

REPO = Path(__file__).resolve().parents[1]
SCHEMA = load_schema(REPO / "workflow" / "schemas" / "config.schema.yaml")
DEMO = yaml.safe_load((REPO / "config" / "demo.yaml").read_text())
UNLIMITED = {"train_mini.min_accuracy", "images[].target", "decimals"}
"""Numbers bounded otherwise: an accuracy in [0, 1], a class of the model (configcheck), decimals 0..12 (metrics)."""


def with_change(base: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A deep copy of `base` with one key ('attacks.n_train', 'chains.0.steps') set."""
    config = copy.deepcopy(base)
    *parents, last = [int(p) if p.isdigit() else p for p in path.split(".")]
    node: Any = config
    for part in parents:
        node = node[part]
    node[last] = value
    return config


def problems_of(config: dict[str, Any]) -> str:
    """The refusal of a config, schema first and then the plan-time checks, as Snakemake's Snakefile runs them."""
    with pytest.raises(ValueError) as info:
        check_schema(config, SCHEMA, files=[])
        check_config(with_defaults(config, SCHEMA), files=False)
    return str(info.value)


def files_in(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# ------------------------------------------------------------------------------------------- one table of limits


def schema_numbers(node: Any, path: str = "") -> dict[str, dict[str, Any]]:
    """Config key (lists as key[]) -> its schema, for every integer or number of the schema without an enum."""
    found: dict[str, dict[str, Any]] = {}
    if isinstance(node, dict):
        kinds = node.get("type") if isinstance(node.get("type"), list) else [node.get("type")]
        if ("integer" in kinds or "number" in kinds) and "enum" not in node:
            found[path] = node
        for name, sub in node.get("properties", {}).items():
            found.update(schema_numbers(sub, f"{path}.{name}" if path else name))
        if "items" in node:
            found.update(schema_numbers(node["items"], path + "[]"))
    return found


def test_every_schema_number_has_the_tables_range() -> None:
    numbers = schema_numbers(SCHEMA)
    assert set(numbers) - UNLIMITED == set(SCHEMA_LIMITS)
    for path, node in numbers.items():
        if path in UNLIMITED:
            continue
        limit = LIMITS[SCHEMA_LIMITS[path]]
        low = node.get("exclusiveMinimum", node.get("minimum"))
        assert (low, node.get("maximum")) == (limit.low, limit.high), path
        assert ("exclusiveMinimum" in node, node["type"] == "integer") == (limit.exclusive_low, limit.integer), path


def test_the_shipped_configs_stay_within_the_limits() -> None:
    for name in ("demo", "config", "real", "attacks", "imagenet16", "imagenet16_lite0", "imagenet1000"):
        config = yaml.safe_load((REPO / "config" / f"{name}.yaml").read_text())
        check_schema(config, SCHEMA, files=[])
        check_config(with_defaults(config, SCHEMA), files=False)


# ------------------------------------------------------------------------------------------- γ


def test_gamma_up_to_64_is_a_normal_bound_and_past_it_refused() -> None:
    assert check_gamma(64) == 64.0
    bound = gamma_bound(1e-288, 64)
    assert bound > 0 and math.isfinite(bound) and bound >= np.finfo(np.float64).tiny
    for gamma in (64.5, 1024, 1e308, 10**400):
        with pytest.raises(ValueError, match=r"gamma must be a finite number > 0 and <= 64|finite number > 0"):
            check_gamma(gamma)


# ------------------------------------------------------------------------------------------- the config, at plan time

CONFIG_CASES = {
    "gamma-1e308": ("gammas", [1e308], ["gammas[0]", "1e+308", "maximum of 64"]),
    "attack-gamma-inf": ("attacks.gammas", [math.inf], ["attacks.gammas[0]", "inf"]),
    "windows-stop-1e15": ("windows", {"start": 2, "stop": 10**15, "step": 1}, ["windows.stop", "1000000000000000"]),
    "windows-too-many": ("windows", {"start": 2, "stop": 2 * 10**6, "step": 1}, ["1999999 windows", "at most 1000000"]),
    "chain-window-1e20": ("chains.0.steps", "norm2@100000000000000000000", ["chains[0].steps", "largest window"]),
    "noise-scale-1e308": ("noise_scales", [0.0, 1e308], ["noise_scales[1]", "maximum of 1000000"]),
    "n-train-float": ("attacks.n_train", 20.0, ["attacks.n_train: 20.0 is not an integer (write 20)"]),
    "window-float": ("certify.windows", [3.0], ["certify.windows[0]: 3.0 is not an integer"]),
    "n-examples-0": ("attacks.n_examples", 0, ["attacks.n_examples", "minimum of 1", "the figure needs one"]),
    "n-train-1e12": ("attacks.n_train", 10**12, ["attacks.n_train", "maximum of 100000"]),
    "threads-1e6": ("threads", 10**6, ["threads: 1000000", "maximum of 1024"]),
    "batch-1e6": ("batch_size", 10**6, ["batch_size", "maximum of 4096"]),
    "seed-negative": ("seed", -1, ["seed: -1", "minimum of 0"]),
    "probes-1e6": ("certify.probes", 10**6, ["certify.probes", "maximum of 4096"]),
    "lr-nan": ("certify.optimize.lr", math.nan, ["certify.optimize.lr: nan is not a finite number"]),
    "attack-memory": (
        "attacks.n_train",
        90000,
        ["attacks.n_train 90000 and attacks.n_test 100 at attacks.resolution 32", "need at least", "attacks.mem_mb"],
    ),
}


@pytest.mark.parametrize("case", list(CONFIG_CASES))
def test_a_config_number_past_its_limit_is_refused_at_plan_time(case: str) -> None:
    path, value, fragments = CONFIG_CASES[case]
    message = problems_of(with_change(DEMO, path, value))
    for fragment in fragments:
        assert fragment in message, (fragment, message)


def test_train_mini_that_cannot_fit_is_refused_at_plan_time(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IFMSAN_MEMORY_MB", "1000")
    message = problems_of(with_change(DEMO, "train_mini.train_per_class", 1000))
    assert "train_mini.train_per_class 1000 and train_mini.test_per_class 50 need at least 1.51 GiB" in message
    assert "IFMSAN_MEMORY_MB" in message


def test_memory_estimates_are_the_documented_sums() -> None:
    assert (minidata.IMAGE_SIZE, len(minidata.CLASS_NAMES)) == (memory.IMAGE_SIDE, memory.MINIDATA_CLASSES)
    assert memory.attack_bytes(n_train=3, n_test=1, resolution=32) == 4 * (2 * 227 * 227 * 3 + 3 * 32 * 32 * 4)
    assert memory.train_mini_bytes(train_per_class=2, test_per_class=1) == 3 * 10 * 227 * 227 * 3
    assert memory.sweep_bytes(batch_size=8, ifm_size=100) == 3 * 8 * 100 * 4


def test_available_memory_is_the_smallest_known(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IFMSAN_MEMORY_MB", "7")
    assert memory.available_bytes() == (7 * 2**20, "IFMSAN_MEMORY_MB")
    monkeypatch.setenv("IFMSAN_MEMORY_MB", "lots")
    with pytest.raises(ValueError, match="IFMSAN_MEMORY_MB must be a whole number of MiB, got 'lots'"):
        memory.available_bytes()
    monkeypatch.delenv("IFMSAN_MEMORY_MB")
    found = memory.available_bytes()
    if Path("/proc/meminfo").is_file():
        assert found is not None and found[0] > 0


# ------------------------------------------------------------------------------------------- the CLI

ATTACK = ["attack", "--model", "alexnet_mini", "--layer", "pool5", "--knob", "nonzero_mean", "--values", "3"]
GAMMA = ["gamma", "--model", "alexnet_mini", "--ifms", "IFMS", "--layers", "pool5"]
SWEEP = ["sweep", "--model", "alexnet_mini", "--ifms", "IFMS", "--layer", "pool5"]
CLI_CASES = {
    "attack-n-train-1e12": ([*ATTACK, "--n-train", str(10**12)], "--n-train must be an integer in 2..100000"),
    "attack-resolution-8192": ([*ATTACK, "--resolution", "8192"], "--resolution must be an integer in 32..256"),
    "attack-threads-1e6": ([*ATTACK, "--threads", str(10**6)], "--threads must be an integer in 1..1024"),
    "attack-lr-1e30": ([*ATTACK, "--lr-adaptive", "1e30"], "--lr-adaptive must be a finite number > 0 and <= 10"),
    "attack-gamma-1e308": ([*ATTACK, "--gammas", "1e308"], "--gammas must be a finite number > 0 and <= 64"),
    "attack-noise-1e308": (
        [*ATTACK[:-4], "--knob", "laplace", "--values", "1e308"],
        "--values '1e308': 1e+308 is above the largest noise scale",
    ),
    "attack-memory": ([*ATTACK, "--n-train", "99999"], "--n-train 99999 and --n-test 100 at --resolution 64 need"),
    "gamma-gamma-1024": ([*GAMMA, "--gammas", "1024"], "--gammas must be a finite number > 0 and <= 64"),
    "gamma-batch-1e6": ([*GAMMA, "--batch-size", str(10**6)], "--batch-size must be an integer in 1..4096"),
    "sweep-scales-1e308": ([*SWEEP, "--knob", "laplace", "--scales", "0,1e308"], "--scales '0,1e308': 1e+308"),
    "sweep-chain-1e20": ([*SWEEP, "--chain", "norm2@" + "1" + "0" * 20], "--chain 'norm2@1000"),
    "sweep-values-1e15": ([*SWEEP, "--values", f"2:{10**15}:{10**12}"], "is above the largest window, 2147483647"),
    "train-mini-epochs-1e5": (["train-mini", "--epochs", "100000"], "--epochs must be an integer in 1..10000"),
    "train-mini-memory": (["train-mini", "--train-per-class", "1000"], "--train-per-class 1000 and --test-per-class"),
    "sanitize-scale-1e300": (["sanitize", "IN", "OUT", "--scale", "1e300"], "--scale must be a finite number >= 0"),
}


@pytest.mark.parametrize("case", list(CLI_CASES))
def test_a_cli_number_past_its_limit_is_refused_before_any_work(
    case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("IFMSAN_MEMORY_MB", "1000")
    argv, message = CLI_CASES[case]

    def ran(args: object) -> int:
        raise AssertionError(f"{argv[0]} started its work")

    monkeypatch.setattr(importlib.import_module(f"ifmsan.commands.{argv[0].replace('-', '_')}"), "run", ran)
    out = {"attack": ["--out", "a.nc"], "gamma": ["--out", "g.csv"], "sweep": ["--out", "s.nc"]}.get(argv[0], [])
    if argv[0] == "train-mini":
        out = ["--out", str(tmp_path / "mini")]
    argv = [{"IFMS": str(tmp_path / "x.nc"), "IN": str(tmp_path / "in.npy"), "OUT": "o.npy"}.get(a, a) for a in argv]
    monkeypatch.chdir(tmp_path)
    assert main([*argv, *out]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"ifmsan {argv[0]}: error: ") and message in err, err
    assert files_in(tmp_path) == []


def test_a_sweep_batch_that_cannot_fit_is_refused_from_the_ifm_files_header(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import netCDF4

    with netCDF4.Dataset(tmp_path / "one.nc", "w") as dataset:  # only the header matters: the layer's IFM size
        for name, size in (("c", 3), ("y", 227), ("x", 227)):
            dataset.createDimension(name, size)
        dataset.createVariable("conv1", "f4", ("c", "y", "x"))
    monkeypatch.setenv("IFMSAN_MEMORY_MB", "1000")
    monkeypatch.setattr(importlib.import_module("ifmsan.commands.sweep"), "run", lambda args: 0)
    argv = [*SWEEP[:-4], "--ifms", str(tmp_path / "one.nc"), "--layer", "conv1", "--out", str(tmp_path / "s.nc")]
    assert main([*argv, "--batch-size", "4096"]) == 2
    err = capsys.readouterr().err
    assert "--batch-size 4096 of 154587-value IFMs of conv1 need at least 7.08 GiB" in err, err
    assert main([*argv, "--batch-size", "32"]) == 0  # 56.6 MiB fit


def test_cli_limits_leave_the_minimum_to_each_verb() -> None:
    assert limits.cli_problems({"n_train": 1, "batch_size": 0, "gammas": [math.nan]}) == []
    assert limits.cli_problems({"n_train": 100001}) == [
        "--n-train must be an integer in 2..100000 (each image is held in memory), got 100001"
    ]


# ------------------------------------------------------------------------------------------- a full disk


def test_a_netcdf_hdf_error_on_a_full_disk_names_the_output(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def hdf_error(self: xr.Dataset, path: object, **kwargs: object) -> None:
        Path(str(path)).write_bytes(b"\x89HDF half")
        raise RuntimeError("NetCDF: HDF error")

    monkeypatch.setattr(xr.Dataset, "to_netcdf", hdf_error)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: SimpleNamespace(total=64 * 1024, used=64 * 1024, free=0))
    target = tmp_path / "s.nc"
    with pytest.raises(OSError) as info:
        write_netcdf(xr.Dataset({"p": ("n", np.ones(3))}), target)
    text = str(info.value)
    assert f"cannot write {target}: NetCDF: HDF error" in text and "it may be full" in text, text
    assert files_in(tmp_path) == []


def test_a_netcdf_error_with_free_space_does_not_blame_the_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def hdf_error(self: xr.Dataset, path: object, **kwargs: object) -> None:
        raise RuntimeError("NetCDF: HDF error")

    monkeypatch.setattr(xr.Dataset, "to_netcdf", hdf_error)
    monkeypatch.setattr(atomic, "LOW_SPACE_BYTES", 0)
    with pytest.raises(OSError, match=r"cannot write .*s\.nc: NetCDF: HDF error while writing NetCDF$"):
        write_netcdf(xr.Dataset({"p": ("n", np.ones(3))}), tmp_path / "s.nc")
    assert files_in(tmp_path) == []


@pytest.fixture()
def tiny_disk(tmp_path: Path) -> Any:
    """A 64 kB tmpfs (root only: skipped otherwise), unmounted afterwards."""
    folder = tmp_path / "tiny"
    folder.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a 64 kB tmpfs needs root")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(folder)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode(errors='replace').strip()}")
    try:
        yield folder
    finally:
        if subprocess.run(["umount", str(folder)], capture_output=True).returncode != 0:  # HDF5 may hold the file
            subprocess.run(["umount", "-l", str(folder)], check=False)  # detached now, freed once it is closed


@pytest.mark.slow
def test_extract_and_sweep_on_a_full_disk_are_one_line_naming_the_output(
    tiny_disk: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    image = ["--model", "alexnet_mini", "--image", "minidata:test:1", "--image-id", "one"]
    assert main(["extract", *image, "--out", str(tiny_disk / "one.nc")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"ifmsan extract: error: cannot write {tiny_disk / 'one.nc'}: " in err, err
    assert "may be full" in err or "No space left on device" in err, err
    assert files_in(tiny_disk) == []
    ifms = tmp_path / "one.nc"
    assert main(["extract", *image, "--out", str(ifms)]) == 0
    capsys.readouterr()
    sweep = ["sweep", "--model", "alexnet_mini", "--ifms", str(ifms), "--layer", "conv1", "--values", "2:40"]
    assert main([*sweep, "--out", str(tiny_disk / "s.nc")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"ifmsan sweep: error: cannot write {tiny_disk / 's.nc'}: " in err, err
    assert files_in(tiny_disk) == []


# ------------------------------------------------------------------------------------------- YAML alias bombs


def alias_bomb(path: Path, levels: int = 9) -> Path:
    """A valid demo-like config plus a 'billion laughs': 10**levels strings from `levels` lines of aliases."""
    lines = ["run: bomb", "model: {name: alexnet_mini, weights: null}", "images:",
             '  - {id: a, source: "minidata:test:1"}', 'lol1: &l1 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", '
             '"lol", "lol", "lol"]']  # fmt: skip
    lines += [f"lol{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10)}]" for i in range(2, levels + 1)]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_an_alias_bomb_is_refused_in_seconds_naming_the_file_and_line(tmp_path: Path) -> None:
    path = alias_bomb(tmp_path / "bomb.yaml")
    config = yaml.safe_load(path.read_text())  # PyYAML shares the aliased lists: loading is fast
    start = time.perf_counter()
    with pytest.raises(ValueError) as info:
        check_schema(config, SCHEMA, files=[path])
    assert time.perf_counter() - start < 5
    message = str(info.value)
    assert f"config in {path}: expands to more than {MAX_CONFIG_VALUES} values" in message
    assert f"{path}:6: *l1" in message and "write the values out" in message


def test_a_few_aliases_stay_allowed() -> None:
    text = (REPO / "config" / "demo.yaml").read_text().replace("knobs: [nonzero_mean, gaussian]", "knobs: *k")
    text = text.replace("knobs: [nonzero_mean, first, mean,", "knobs: &k [nonzero_mean, first, mean,")
    config = yaml.safe_load(text)
    assert config["attacks"]["knobs"] is config["knobs"]
    assert expanded_size(config) < MAX_CONFIG_VALUES
    check_schema(config, SCHEMA, files=[])


@pytest.mark.slow
def test_dry_run_refuses_limits_and_alias_bombs_before_any_job(tmp_path: Path) -> None:
    bad = {
        "gamma": with_change(DEMO, "gammas", [1e308]),
        "stop": with_change(DEMO, "windows", {"start": 2, "stop": 10**15, "step": 1}),
        "float": with_change(DEMO, "attacks.n_train", 20.0),
        "examples": with_change(DEMO, "attacks.n_examples", 0),
    }
    expected = {
        "gamma": "gammas[0]: 1e+308 is greater than the maximum of 64",
        "stop": "windows.stop: 1000000000000000 is greater than the maximum of 2147483647",
        "float": "attacks.n_train: 20.0 is not an integer (write 20)",
        "examples": "attacks.n_examples: 0 is less than the minimum of 1",
    }
    for name, config in bad.items():
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        result = snakemake(tmp_path, "-n", "--configfile", str(path), check=False)
        text = result.stdout
        assert result.returncode != 0 and "Building DAG" not in text and expected[name] in text, (name, text[-2000:])
    path = alias_bomb(tmp_path / "bomb.yaml")
    start = time.perf_counter()
    result = snakemake(tmp_path, "-n", "--configfile", str(path), check=False, timeout=120)
    elapsed = time.perf_counter() - start
    assert result.returncode != 0 and f"config in {path}: expands to more than" in result.stdout, result.stdout[-2000:]
    assert elapsed < 30, elapsed  # Snakemake's own start takes most of it: about 2 s in all on an idle machine
    assert not (tmp_path / "results").exists()


def test_a_key_given_twice_is_named_with_both_lines(tmp_path: Path) -> None:
    text = (REPO / "config" / "demo.yaml").read_text()
    path = tmp_path / "twice.yaml"
    path.write_text(text + "\nrun: other\n")
    lines = path.read_text().splitlines()
    first = next(i for i, line in enumerate(lines, 1) if line.startswith("run:"))
    config = yaml.safe_load(path.read_text())
    assert config["run"] == "other"  # what the loader does without a word
    with pytest.raises(ValueError) as info:
        check_schema(config, SCHEMA, files=[path])
    assert f"{path}:{len(lines)}: key 'run' given twice (first at line {first})" in str(info.value)
    check_schema(yaml.safe_load(text), SCHEMA, files=[REPO / "config" / "demo.yaml"])  # the shipped file: no repeat


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["extract", "--model", "alexnet_mini", "--threads", "1_0"],
            "argument --threads: invalid integer value: '1_0'",
        ),
        (["sweep", "--model", "alexnet_mini", "--ifms", "x.nc", "--layer", "pool5", "--values", "2,1_0"], "'1_0'"),
        (["sweep", "--model", "alexnet_mini", "--ifms", "x.nc", "--layer", "pool5", "--values", "2:1_0"], "'2:1_0'"),
        (["gamma", "--model", "alexnet_mini", "--ifms", "x.nc", "--layers", "pool5", "--gammas", "1_0"], "'1_0'"),
    ],
    ids=["int-option", "window-list", "window-range", "float-option"],
)
def test_numbers_with_digit_grouping_are_refused(argv: list[str], message: str, tmp_path: Path, capsys) -> None:
    out = tmp_path / "o.nc"
    try:
        code = main([*argv, "--out", str(out)])
    except SystemExit as exc:  # argparse's own refusal of an option's type
        code = exc.code
    assert code == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_library_noise_is_bounded_where_its_float32_result_stays_finite() -> None:
    import torch

    from ifmsan.core.knobs import check_sigma, get_knob

    assert torch.isfinite(get_knob("laplace").apply(torch.ones(16), limits.MAX_SCALE)).all()
    with pytest.raises(ValueError, match=r"scale must be <= 1e\+06 .*got 1e\+308"):
        get_knob("laplace").apply(torch.ones(16), 1e308)
    for bad in (-1.0, 0.0, math.inf, 1e31):
        with pytest.raises(ValueError, match=r"--sigma must be a finite number > 0 and <= 1e\+30"):
            check_sigma(bad, name="--sigma")
