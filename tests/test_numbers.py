"""Numbers are sane or refused (windows, scales, seeds, γ, decimals, weights, IFMs, image sizes)."""

from __future__ import annotations

import math
import re
import resource
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

import ifmsan
from ifmsan import models
from ifmsan._shared.values import parse_values
from ifmsan.cli import main
from ifmsan.core import kernels as sanitize_kernels
from ifmsan.core import sanitize
from ifmsan.core.controller import GammaSanitizer
from ifmsan.core.knobs import KNOBS, SELECTORS, get_knob
from ifmsan.core.metrics import MAX_DECIMALS, check_decimals, check_gamma
from ifmsan.report import gamma as gamma_report
from ifmsan.steps.extract import extract_ifms
from ifmsan.steps.io import write_netcdf
from ifmsan.steps.sweep import parse_chain, sweep_dataset

ROOT = Path(__file__).resolve().parents[1]


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """Exit code and stderr of one in-process CLI call."""
    code = main(argv)
    return code, capsys.readouterr().err


def files_in(folder: Path) -> list[str]:
    """Every name in a folder, temporary (dot) files included."""
    return sorted(p.name for p in folder.iterdir())


# --------------------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def net() -> models.LayeredNet:
    return models.load("alexnet_mini", seed=3)


@pytest.fixture(scope="module")
def extracted(net: models.LayeredNet):
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, size=(240, 260, 3), dtype=np.uint8))
    return extract_ifms(net, net.preprocess(image), attrs={"image_id": "noise", "image_sha256": "0" * 64})


@pytest.fixture(scope="module")
def ifms_file(extracted, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_netcdf(extracted, tmp_path_factory.mktemp("ifms") / "noise.nc")


@pytest.fixture()
def ifm_npy(tmp_path: Path) -> Path:
    np.save(tmp_path / "in.npy", np.random.default_rng(1).standard_normal(288).astype(np.float32))
    return tmp_path / "in.npy"


# --------------------------------------------------------------------------------------------------- windows


def _vm_data() -> int:
    """Bytes of this process's data segment (what RLIMIT_DATA limits)."""
    status = Path("/proc/self/status").read_text()
    return int(re.search(r"VmData:\s+(\d+) kB", status)[1]) * 1024  # type: ignore[index]


@pytest.fixture()
def at_most_256_mb_more() -> Iterator[None]:
    """Limit new allocations to 256 MB for the test's duration (a window-sized buffer would need GBs)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_DATA)
    resource.setrlimit(resource.RLIMIT_DATA, (_vm_data() + (256 << 20), hard))
    try:
        with pytest.raises(RuntimeError):  # the limit works: 2.4 GB cannot be had
            torch.empty(3 * 10**8, dtype=torch.float64)
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_DATA, (soft, hard))


@pytest.mark.parametrize("path", ["torch", "fused"])
@pytest.mark.parametrize("window", [3 * 10**8, 10**10, 10**23])
def test_a_window_past_the_stream_is_one_window_and_allocates_nothing_window_sized(
    window: int, path: str, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    x = np.random.default_rng(2).standard_normal(288).astype(np.float32)
    x[::3] = 0.0
    if path == "fused":
        if sanitize_kernels.compiled_kernels() is None:
            pytest.skip("numba is not installed")
        monkeypatch.setattr(sanitize_kernels, "kernel_pays", lambda work: True)
    expected = {select: sanitize.sample_and_hold(x, x.size, select=select) for select in SELECTORS}
    sanitize.sample_and_hold(x, 2, select="random")  # compile/load everything before the limit
    request.getfixturevalue("at_most_256_mb_more")
    for select in ("nonzero_mean", "first", "mean"):
        assert np.array_equal(sanitize.sample_and_hold(x, window, select=select), expected[select]), select
    held = sanitize.sample_and_hold(x, window, select="random")  # one window: one sample, seeded by (seed, window)
    assert np.unique(held).size == 1 and held[0] in x
    sweep = sanitize.sample_and_hold_sweep(x, [2, window], select="nonzero_mean")
    assert np.array_equal(sweep[1], expected["nonzero_mean"])


def test_windows_up_to_the_stream_length_keep_their_results() -> None:
    """Clamping changed nothing for windows <= N, nor the random picks of larger ones (seeded by the window asked for)."""
    x = np.random.default_rng(3).standard_normal(50).astype(np.float64)
    for window in (1, 7, 49, 50):
        padded = -(-x.size // window) * window
        blocks = np.pad(x, (0, padded - x.size)).reshape(-1, window)
        first = np.repeat(blocks[:, 0], window)[: x.size]
        assert np.array_equal(sanitize.sample_and_hold(x, window, select="first"), first)
    rng = np.random.default_rng([0, 10**23])
    pick = int(rng.integers(0, np.array([50]))[0])
    assert np.array_equal(sanitize.sample_and_hold(x, 10**23, select="random"), np.full(50, x[pick]))


@pytest.mark.parametrize("window", [2.0, 1e23, 2.5, float("nan"), 0, -4, True, "3"])
def test_library_windows_are_integers_only(window: object) -> None:
    with pytest.raises(ValueError, match="window must be an integer >= 1"):
        sanitize.sample_and_hold(np.ones(4, np.float32), window)  # type: ignore[arg-type]


@pytest.mark.parametrize(("text", "expected"), [("1e23", 10**23), ("3e8", 3 * 10**8), ("7.0", 7), ("288", 288)])
def test_cli_window_accepts_integral_numbers_exactly(text: str, expected: int, ifm_npy: Path, tmp_path: Path) -> None:
    assert main(["sanitize", "--window", text, str(ifm_npy), str(tmp_path / "out.npy")]) == 0
    ifm = np.load(ifm_npy)
    assert np.array_equal(np.load(tmp_path / "out.npy"), sanitize.sample_and_hold(ifm, min(expected, 10**30)))


@pytest.mark.parametrize("text", ["0", "-1", "2.5", "nan", "inf", "-inf", "abc", "", "1e-3", "0x10"])
def test_cli_bad_window_names_the_flag(text: str, ifm_npy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run_cli(["sanitize", f"--window={text}", str(ifm_npy), str(ifm_npy.with_name("out.npy"))], capsys)
    assert code == 2 and "--window must be an integer >= 1" in err and repr(text) in err
    assert files_in(ifm_npy.parent) == ["in.npy"]


@pytest.mark.parametrize("text", ["nan", "inf", "-inf", "-1", "-0.5"])
@pytest.mark.parametrize("knob", ["laplace", "gaussian"])
def test_cli_bad_scale_names_the_flag(text: str, knob: str, ifm_npy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = run_cli(
        ["sanitize", "--knob", knob, f"--scale={text}", str(ifm_npy), str(ifm_npy.with_name("o.npy"))], capsys
    )
    assert code == 2 and "--scale must be a finite number >= 0" in err
    assert files_in(ifm_npy.parent) == ["in.npy"]


# --------------------------------------------------------------------------------------------------- 0-d arrays


@pytest.mark.parametrize("knob", KNOBS)
@pytest.mark.parametrize("kind", ["numpy", "torch"])
def test_a_0d_ifm_keeps_its_shape(knob: str, kind: str) -> None:
    value = np.array(2.5, dtype=np.float32)
    ifm = value if kind == "numpy" else torch.from_numpy(value)
    out = get_knob(knob).apply(ifm, 0.0 if knob in ("laplace", "gaussian") else 3)
    assert tuple(out.shape) == () and isinstance(out, np.ndarray if kind == "numpy" else torch.Tensor)
    assert float(out) == 2.5  # one sample: every selector holds it, scale 0 adds nothing


def test_cli_sanitize_keeps_a_0d_array_0d(tmp_path: Path) -> None:
    np.save(tmp_path / "z.npy", np.float32(-1.25))
    assert main(["sanitize", "--window", "4", str(tmp_path / "z.npy"), str(tmp_path / "o.npy")]) == 0
    out = np.load(tmp_path / "o.npy")
    assert out.shape == () and out.dtype == np.float32 and out == np.float32(-1.25)


def test_big_endian_ifms_are_read_exactly(tmp_path: Path) -> None:
    native = np.random.default_rng(4).standard_normal((3, 5)).astype(np.float32)
    np.save(tmp_path / "be.npy", native.astype(">f4"))
    assert np.array_equal(sanitize.sample_and_hold(native.astype(">f4"), 4), sanitize.sample_and_hold(native, 4))
    assert main(["sanitize", "--window", "4", str(tmp_path / "be.npy"), str(tmp_path / "o.npy")]) == 0
    assert np.array_equal(np.load(tmp_path / "o.npy"), sanitize.sample_and_hold(native, 4))


# --------------------------------------------------------------------------------------------------- sanitize X X


@pytest.mark.parametrize("how", ["same", "dot-path", "symlink", "hardlink"])
def test_sanitize_refuses_to_overwrite_its_input(how: str, ifm_npy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = ifm_npy.read_bytes()
    out = {"same": ifm_npy, "dot-path": ifm_npy.parent / "." / "in.npy"}.get(how, ifm_npy.with_name("link.npy"))
    if how == "symlink":
        out.symlink_to(ifm_npy)
    elif how == "hardlink":
        out.hardlink_to(ifm_npy)
    code, err = run_cli(["sanitize", "--window", "3", str(ifm_npy), str(out)], capsys)
    assert code == 2 and "is IN itself" in err
    assert ifm_npy.read_bytes() == before and not [n for n in files_in(ifm_npy.parent) if n.startswith(".")]


# --------------------------------------------------------------------------------------------------- sweep values


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("2,2,3", "repeats 2"),
        ("2:5,3", "START:STOP"),
        ("0:5", "0 is not allowed"),
        ("0", "--values must be an integer >= 1"),
        ("-1,2", "--values must be an integer >= 1"),
        ("2.5", "--values must be an integer >= 1"),
        ("nan", "--values must be an integer >= 1"),
        ("inf", "--values must be an integer >= 1"),
        ("", "without empty items"),
        ("2,,3", "without empty items"),
        ("abc", "--values must be an integer >= 1"),
        ("5:2", "STOP >= START"),
        ("2:10:0", "STEP >= 1"),
        ("2:10:-1", "STEP >= 1"),
        ("1:2:3:4", "START:STOP"),
        ("1:10000000000", "more than 1000000"),
    ],
    ids=[
        "2,2,3",
        "2:5,3",
        "0:5",
        "0",
        "-1,2",
        "2.5",
        "nan",
        "inf",
        "empty",
        "2,,3",
        "abc",
        "5:2",
        "2:10:0",
        "2:10:-1",
        "1:2:3:4",
        "1:10000000000",
    ],
)
def test_bad_window_lists_are_refused(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_values(text)


@pytest.mark.parametrize(
    ("text", "message"),
    [("0,0.5,0.5", "repeats 0.5"), ("-1", "-1.0 is not allowed"), ("nan", "nan is not allowed"),
     ("inf", "inf is not allowed"), ("a,b", "comma list of numbers"), ("", "without empty items")],
    ids=['0,0.5,0.5', '-1', 'nan', 'inf', 'a,b', 'empty'],
)  # fmt: skip
def test_bad_scale_lists_are_refused(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_values(text, flag="--scales", kind="scale")


def test_good_value_lists() -> None:
    assert parse_values("2:6:2") == [2, 4, 6]
    assert parse_values("3,1e3,2") == [3, 1000, 2]
    assert parse_values("0:2", flag="--scales", kind="scale") == [0.0, 1.0, 2.0]
    assert parse_values("0,0.5", flag="--scales", kind="scale") == [0.0, 0.5]


@pytest.mark.parametrize(
    ("knob", "values", "message"),
    [
        ("nonzero_mean", [2, 3, 2], "repeat 2"),
        ("nonzero_mean", [], "values is empty"),
        ("nonzero_mean", [2.5], "integer >= 1"),
        ("nonzero_mean", [0], "integer >= 1"),
        ("nonzero_mean", [2**64], "64-bit"),
        ("laplace", [0.5, 0.5], "repeat 0.5"),
        ("laplace", [float("nan")], "finite number >= 0"),
        ("gaussian", [-0.1], "finite number >= 0"),
        ("gaussian", [math.inf], "finite number >= 0"),
    ],
    ids=[
        "window-repeat",
        "window-empty",
        "window-2.5",
        "window-0",
        "window-2**64",
        "laplace-repeat",
        "laplace-nan",
        "gaussian-negative",
        "gaussian-inf",
    ],
)
def test_sweep_dataset_refuses_bad_values(net, extracted, knob: str, values: list, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        sweep_dataset(net, extracted, layer="fc7", knob=knob, values=values)


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--values", "2,2,3", "repeats 2"),
        ("--values", "0:3", "0 is not allowed"),
        ("--seed", "-1", "--seed must be an integer >= 0, got -1"),
        ("--batch-size", "0", "--batch-size must be an integer >= 1, got 0"),
        ("--batch-size", "-3", "--batch-size must be an integer >= 1, got -3"),
        ("--init-seed", "-2", "--init-seed must be an integer >= 0, got -2"),
        ("--threads", "0", "--threads must be >= 1"),
        ("--scales", "0,-1", "-1.0 is not allowed"),
    ],
    ids=[
        "values-repeat",
        "values-0:3",
        "seed--1",
        "batch-size-0",
        "batch-size--3",
        "init-seed--2",
        "threads-0",
        "scales-negative",
    ],
)
def test_cli_sweep_bad_numbers(
    option: str, value: str, message: str, ifms_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "s.nc"
    argv = ["sweep", "--model", "alexnet_mini", "--init-seed", "3", "--ifms", str(ifms_file), "--layer", "fc7",
            "--knob", "nonzero_mean", "laplace", "--out-dir", str(tmp_path / "sweeps"), option, value]  # fmt: skip
    code, err = run_cli(argv, capsys)
    assert code == 2 and message in err
    assert not out.exists() and not (tmp_path / "sweeps").exists()


# --------------------------------------------------------------------------------------------------- seeds


@pytest.mark.parametrize("knob", KNOBS)
def test_library_refuses_negative_seeds(knob: str) -> None:
    with pytest.raises(ValueError, match="seed must be an integer >= 0"):
        get_knob(knob, seed=-1)
    with pytest.raises(ValueError, match="seed must be an integer >= 0"):
        sanitize.sample_and_hold(np.ones(4, np.float32), 2, select="random", seed=-5)


@pytest.mark.parametrize("knob", ["nonzero_mean", "random", "laplace"])
def test_cli_sanitize_refuses_negative_seeds(knob: str, ifm_npy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    value = ["--scale", "1"] if knob == "laplace" else ["--window", "2"]
    code, err = run_cli(
        ["sanitize", "--knob", knob, *value, "--seed", "-1", str(ifm_npy), str(ifm_npy.with_name("o.npy"))], capsys
    )
    assert code == 2 and "--seed must be an integer >= 0, got -1" in err
    assert files_in(ifm_npy.parent) == ["in.npy"]


def test_cli_extract_refuses_a_negative_init_seed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["extract", "--model", "alexnet_mini", "--init-seed", "-1", "--image", "minidata:test:0", "--image-id", "x",
            "--out", str(tmp_path / "x.nc")]  # fmt: skip
    code, err = run_cli(argv, capsys)
    assert code == 2 and "--init-seed must be an integer >= 0, got -1" in err and files_in(tmp_path) == []


# --------------------------------------------------------------------------------------------------- gamma, decimals


@pytest.mark.parametrize("gamma", [0, 0.0, -0.5, math.nan, math.inf, -math.inf, True, "1"])
def test_gamma_must_be_finite_and_positive_everywhere(net, gamma: object) -> None:
    with pytest.raises(ValueError, match="gamma must be a finite number > 0"):
        check_gamma(gamma)
    with pytest.raises(ValueError, match="gammas value must be a finite number > 0"):
        gamma_report.check_gammas([1.0, gamma])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="gamma must be a finite number > 0"):
        GammaSanitizer(net, "fc7", gamma)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="gamma must be a finite number > 0"):
        ifmsan.core.metrics.n_star_for_gamma([2, 3], [0.5, 0.2], p0=0.5, gamma=gamma)  # type: ignore[arg-type]


def test_the_config_schema_states_the_same_gamma_and_decimals_rules() -> None:
    schema = yaml.safe_load((ROOT / "workflow" / "schemas" / "config.schema.yaml").read_text())
    gammas = schema["properties"]["gammas"]["items"]
    assert gammas.get("exclusiveMinimum") == 0 and "minimum" not in gammas
    decimals = schema["properties"]["decimals"]
    assert (decimals["minimum"], decimals["maximum"]) == (0, MAX_DECIMALS)
    assert check_decimals(MAX_DECIMALS) == MAX_DECIMALS
    assert check_gamma(1e-9) == 1e-9


@pytest.mark.parametrize("verb", ["report", "figures", "gamma"])
@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf"])
def test_cli_gamma_verbs_refuse_bad_gammas_before_reading(
    verb: str, value: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = str(tmp_path / "missing.nc")
    argv = {
        "report": ["report", "--sweeps", missing, "--out-dir", str(tmp_path / "out"), "--gammas", "1", value],
        "figures": ["figures", "--sweeps", missing, "--out-dir", str(tmp_path / "out"), "--gammas", "1", value],
        "gamma": ["gamma", "--model", "alexnet_mini", "--ifms", missing, "--layers", "fc7", "--gammas", value,
                  "--out", str(tmp_path / "out" / "g.csv")],
    }[verb]  # fmt: skip
    code, err = run_cli(argv, capsys)
    assert code == 2 and "--gammas value must be a finite number > 0" in err and "not found" not in err
    assert files_in(tmp_path) == []


@pytest.mark.parametrize("value", ["-1", "13", "100"])
def test_cli_report_refuses_bad_decimals(value: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["report", "--sweeps", str(tmp_path / "s.nc"), "--out-dir", str(tmp_path / "o"), "--decimals", value]
    code, err = run_cli(argv, capsys)
    assert code == 2 and "--decimals must be an integer in 0..12" in err and files_in(tmp_path) == []


# --------------------------------------------------------------------------------------------------- weights


@pytest.fixture(scope="module", params=["nan", "inf", "-inf"])
def bad_mini_weights(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    state = models.load("alexnet_mini", seed=3).state_dict()
    state["fc7.weight"] = state["fc7.weight"].clone()
    state["fc7.weight"][5, 7] = float(request.param)
    path = tmp_path_factory.mktemp("weights") / f"mini_{request.param}.pt"
    torch.save(state, path)
    return path


def test_non_finite_weights_are_refused_on_load(bad_mini_weights: Path) -> None:
    with pytest.raises(
        ValueError, match=re.escape(f"weights {bad_mini_weights} of alexnet_mini: tensor 'fc7.weight' holds 1 NaN")
    ):
        models.load("alexnet_mini", weights=bad_mini_weights)


@pytest.mark.parametrize("verb", ["extract", "sweep"])
def test_cli_refuses_non_finite_weights(
    verb: str, bad_mini_weights: Path, ifms_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    common = ["--model", "alexnet_mini", "--weights", str(bad_mini_weights)]
    argv = {
        "extract": [
            "extract",
            *common,
            "--image",
            "minidata:test:0",
            "--image-id",
            "x",
            "--out",
            str(tmp_path / "x.nc"),
        ],
        "sweep": ["sweep", *common, "--ifms", str(ifms_file), "--layer", "fc7", "--out", str(tmp_path / "s.nc")],
    }[verb]
    code, err = run_cli(argv, capsys)
    assert code == 2 and str(bad_mini_weights) in err and "'fc7.weight'" in err and files_in(tmp_path) == []


@pytest.fixture(scope="module")
def squeezenet() -> models.LayeredNet:
    return models.load("torchvision:squeezenet1_1", seed=0)


def test_non_finite_torchvision_state_dict_is_refused(squeezenet: models.LayeredNet, tmp_path: Path) -> None:
    state = squeezenet.model.state_dict()
    key = "features.0.bias"
    state[key] = torch.full_like(state[key], math.nan)
    torch.save(state, tmp_path / "sq.pt")
    with pytest.raises(ValueError, match=re.escape("tensor 'model.features.0.bias' holds 64 NaN")):
        models.load("torchvision:squeezenet1_1", weights=tmp_path / "sq.pt")


# --------------------------------------------------------------------------------------------------- IFMs, outputs


@pytest.mark.parametrize(("layer", "value"), [("fc7", math.nan), ("fc7", math.inf), ("pool5", -math.inf)])
def test_sweep_refuses_non_finite_ifms(net, extracted, layer: str, value: float) -> None:
    bad = extracted.copy(deep=True)
    bad[layer].values.reshape(-1)[3] = value
    chain = parse_chain("pool5@2") if layer == "pool5" else ()
    with pytest.raises(ValueError, match=re.escape(f"the IFM of {layer!r} (image 'noise') contains 1 NaN or infinite")):
        sweep_dataset(net, bad, layer="fc7", knob="nonzero_mean", values=[2, 3], chain=chain)


@pytest.mark.parametrize("p0", [math.nan, math.inf, 0.0, 1.5, -0.1])
def test_sweep_refuses_a_p0_that_is_no_probability(net, extracted, p0: float) -> None:
    bad = extracted.copy()
    bad.attrs = {**extracted.attrs, "p0": p0}
    with pytest.raises(ValueError, match=re.escape("the IFMs of image 'noise' record p0 = ")):
        sweep_dataset(net, bad, layer="fc7", knob="nonzero_mean", values=[2, 3])


@pytest.fixture()
def overflowing_net() -> models.LayeredNet:
    net = models.load("alexnet_mini", seed=3)
    with torch.no_grad():
        net.fc8.weight.fill_(3e38)  # finite, but any positive input overflows the logits to inf (softmax: NaN)
    return net


def test_extract_refuses_non_finite_outputs(overflowing_net: models.LayeredNet) -> None:
    x = overflowing_net.preprocess(Image.new("RGB", (64, 64), (200, 10, 10)))
    with pytest.raises(ValueError, match="NaN or infinite outputs"):
        extract_ifms(overflowing_net, x)


def test_sweep_refuses_non_finite_probabilities(overflowing_net: models.LayeredNet, extracted) -> None:
    with pytest.raises(ValueError, match=r"NaN or infinite probabilities at layer 'fc7', nonzero_mean window 2"):
        sweep_dataset(overflowing_net, extracted, layer="fc7", knob="nonzero_mean", values=[2, 3])


# --------------------------------------------------------------------------------------------------- image sizes


@pytest.mark.parametrize("size", [(1, 1), (31, 400), (400, 31), (5, 5)], ids=["1x1", "31x400", "400x31", "5x5"])
@pytest.mark.parametrize("model", ["net", "squeezenet"])
def test_tiny_images_are_refused(model: str, size: tuple[int, int], request: pytest.FixtureRequest) -> None:
    network = request.getfixturevalue(model)
    with pytest.raises(
        ValueError,
        match=re.escape(f"image tiny.png is {size[0]}x{size[1]} px; its shorter side must be at least 32 px"),
    ):
        network.preprocess(Image.new("RGB", size), source="tiny.png")


def test_small_images_are_accepted_with_a_warning(net, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("WARNING"):
        x = net.preprocess(Image.new("RGB", (32, 40), (1, 2, 3)))
    assert tuple(x.shape) == (3, 227, 227) and "smaller than the network's 227 px input" in caplog.text


def test_cli_extract_refuses_a_1x1_image(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    Image.new("RGB", (1, 1), (255, 0, 0)).save(tmp_path / "dot.png")
    argv = ["extract", "--model", "alexnet_mini", "--image", str(tmp_path / "dot.png"), "--image-id", "dot",
            "--out", str(tmp_path / "dot.nc")]  # fmt: skip
    code, err = run_cli(argv, capsys)
    assert code == 2 and f"image {tmp_path / 'dot.png'} is 1x1 px" in err and "at least 32 px" in err
    assert files_in(tmp_path) == ["dot.png"]


@pytest.mark.parametrize(
    "array", [np.array(["a", "b"]), np.array([1, None], dtype=object), np.arange(3)], ids=["str", "object", "int64"]
)
@pytest.mark.parametrize("knob", ["nonzero_mean", "laplace"])
def test_non_float_numpy_ifms_are_a_clear_error(array: np.ndarray, knob: str) -> None:
    with pytest.raises(ValueError, match=f"ifm must have a floating-point dtype, got {array.dtype}"):
        get_knob(knob).apply(array, 2)
