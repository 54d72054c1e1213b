"""The workflow refuses bad configs before any job (ifmsan.workflow.schema, ifmsan.workflow.configcheck), verifies files on
disk, and quotes every value."""

from __future__ import annotations

import copy
import hashlib
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from workflow_runner import snakemake

from ifmsan.workflow import configcheck
from ifmsan.workflow.configcheck import check_config
from ifmsan.workflow.schema import check_schema, load_schema

REPO = Path(__file__).resolve().parents[1]
SCHEMA = load_schema(REPO / "workflow" / "schemas" / "config.schema.yaml")
DEMO = yaml.safe_load((REPO / "config" / "demo.yaml").read_text())
PAPER = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
REAL = yaml.safe_load((REPO / "config" / "real.yaml").read_text())
SHA_A = hashlib.sha256(b"a").hexdigest()


def with_change(base: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A deep copy of `base` with one key set: 'images.1.target' style paths; value DELETE removes the key."""
    config = copy.deepcopy(base)
    *parents, last = [int(p) if p.isdigit() else p for p in path.split(".")]
    node: Any = config
    for part in parents:
        node = node[part]
    if value is DELETE:
        del node[last]
    else:
        node[last] = value
    return config


DELETE = object()
BVLC_RANDOM = {**copy.deepcopy(PAPER), "model": {"name": "bvlc_alexnet", "weights": None, "mean_file": None},
               "images": [{"id": "cat", "source": "skimage:cat", "target": 281}]}  # fmt: skip


# --- semantic checks, in process: each case names the key, the value and what is allowed --------------------------

SEMANTIC = {
    "unknown_layer": (DEMO, "layers.1", "bogus", ["layers[1]", "'bogus'", "allowed: conv1, norm1"]),
    "stop_below_start": (
        DEMO,
        "windows",
        {"start": 10, "stop": 5, "step": 1},
        ["windows.stop", "5", "start 10", ">= start"],
    ),
    "chain_out_of_order": (
        DEMO,
        "chains.0",
        {"steps": "pool2@3+norm2@3", "layer": "pool5"},
        ["chains[0].steps", "'pool2@3+norm2@3'", "network order"],
    ),
    "chain_after_swept_layer": (
        DEMO,
        "chains.0",
        {"steps": "fc6@3", "layer": "pool5"},
        ["chains[0].steps", "'fc6@3'", "before the swept layer 'pool5'"],
    ),
    "chain_unknown_step": (DEMO, "chains.0.steps", "bogus@3", ["chains[0].steps", "'bogus'", "allowed: conv1"]),
    "chain_unknown_layer": (DEMO, "chains.0.layer", "bogus", ["chains[0].layer", "'bogus'", "allowed: conv1"]),
    "chain_window_zero": (DEMO, "chains.0.steps", "norm2@0", ["chains[0].steps", "window 0", ">= 1"]),
    "target_mini_10": (DEMO, "images.1.target", 10, ["images[1].target", "10", "allowed: 0..9"]),
    "target_bvlc_1000": (BVLC_RANDOM, "images.0.target", 1000, ["images[0].target", "1000", "allowed: 0..999"]),
    "infinite_gamma": (DEMO, "gammas", [0.5, float("inf")], ["gammas[1]", "inf", "finite"]),
    "nan_noise_scale": (DEMO, "noise_scales", [0.0, float("nan")], ["noise_scales[1]", "nan", "finite"]),
    "duplicate_image_ids": (DEMO, "images.2.id", "mini_test_0", ["images", "'mini_test_0' used twice", "unique"]),
    "minidata_injection": (
        DEMO,
        "images.1.source",
        "minidata:test:3'$(touch X)'",
        ["images[1].source", "\"minidata:test:3'$(touch X)'\"", "minidata:test:<index>"],
    ),
    "minidata_bad_split": (
        DEMO,
        "images.1.source",
        "minidata:valid:3",
        ["images[1].source", "'minidata:valid:3'", "minidata:test:<index>"],
    ),
    "skimage_unknown": (
        DEMO,
        "images.0.source",
        "skimage:nope",
        ["images[0].source", "'skimage:nope'", "skimage:astronaut"],
    ),
    "local_image_missing": (
        DEMO,
        "images.0.source",
        "pictures/absent.png",
        ["images[0].source", "'pictures/absent.png'", "does not exist"],
    ),
    "ftp_image": (
        DEMO,
        "images.0",
        {"id": "f", "source": "ftp://example.org/a.png", "sha256": SHA_A},
        ["images[0].source", "ftp://", "unsupported scheme"],
    ),
    "train_for_bvlc": (
        BVLC_RANDOM,
        "model.weights",
        "train",
        ["model.weights", "'train'", "alexnet_mini only", "'bvlc_alexnet'"],
    ),
    "tv_weights_for_mini": (
        DEMO,
        "model.weights",
        "IMAGENET1K_V1",
        ["model.weights", "'IMAGENET1K_V1'", "torchvision weights name", "'alexnet_mini'"],
    ),
    "mean_file_for_mini": (
        DEMO,
        "model.mean_file",
        {"url": "file:///m.npy", "sha256": SHA_A, "file": "m.npy"},
        ["model.mean_file", "bvlc_alexnet only", "'alexnet_mini'"],
    ),
    "tv_unknown_arch": (
        DEMO,
        "model",
        {"name": "torchvision:resnet999", "weights": None, "mean_file": None},
        ["model.name", "'torchvision:resnet999'", "torchvision:resnet"],
    ),
    "braces_in_local_image": (
        DEMO,
        "images.0.source",
        "pics/{image}.png",
        ["images[0].source", "'pics/{image}.png'", "brace", "wildcard"],
    ),
    "preprocess_for_mini": (
        DEMO,
        "model.preprocess",
        "pil",
        ["model.preprocess", "'pil'", "bvlc_alexnet", "'alexnet_mini'", "set it to null"],
    ),
    "timm_weights_name": (
        DEMO,
        "model",
        {"name": "timm:resnet18", "weights": "IMAGENET1K_V1", "mean_file": None},
        ["model.weights", "'IMAGENET1K_V1'", "timm:resnet18", "DEFAULT"],
    ),
    "timm_unknown_arch": (
        DEMO,
        "model",
        {"name": "timm:resnet181", "weights": None, "mean_file": None},
        ["model.name", "'resnet181'", "timm:resnet18"],
    ),
    "lite_unknown_layer": (REAL, "layers", ["bogus"], ["layers[0]", "'bogus'", "allowed: conv_stem, bn1, blocks.0.0"]),
    "lite_chain_out_of_order": (
        REAL,
        "chains.0.steps",
        "blocks.3.0@3+blocks.1.0@3",
        ["chains[0].steps", "'blocks.3.0@3+blocks.1.0@3'", "network order"],
    ),
    "certify_unknown_layer": (
        DEMO,
        "certify.layers.0",
        "bogus",
        ["certify.layers[0]", "'bogus'", "not an IFM layer", "allowed: conv1, norm1"],
    ),
    "certify_optimize_past_n_test": (
        DEMO,
        "certify.optimize.images",
        101,
        ["certify.optimize.images", "101", "exceeds certify.n_test 100"],
    ),
    "local_weights_missing": (
        DEMO,
        "model.weights",
        {"path": "models/mine.pt", "sha256": SHA_A},
        ["model.weights.path", "'models/mine.pt'", "does not exist"],
    ),
}


@pytest.mark.parametrize("case", list(SEMANTIC))
def test_config_problem_names_key_value_and_allowed(case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    base, path, value, fragments = SEMANTIC[case]
    config = with_change(base, path, value)
    with pytest.raises(ValueError) as info:
        check_config(config, cuda_available=True)
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, (fragment, message)
    check_config(base, cuda_available=True)  # the unchanged base is fine: the change is what is refused


def test_all_problems_are_listed_at_once() -> None:
    config = with_change(with_change(DEMO, "layers.0", "bogus"), "images.0.target", 99)
    with pytest.raises(ValueError, match=r"invalid config \(2 problems\)") as info:
        check_config(config)
    assert "layers[0]" in str(info.value) and "images[0].target" in str(info.value)


def test_cuda_without_a_device_is_refused_when_jobs_run_here() -> None:
    config = with_change(DEMO, "device", "cuda")
    with pytest.raises(ValueError, match=r"device: 'cuda', but torch sees no CUDA device here; allowed here: cpu"):
        check_config(config, cuda_available=False)
    check_config(config, cuda_available=None)  # executor unknown or remote: the job itself checks


@pytest.mark.parametrize(
    ("weights", "fragments"),
    [("IMAGENET1K_V9", ["model.weights", "'IMAGENET1K_V9'", "allowed: DEFAULT, IMAGENET1K_V1"]), (None, [])],
)
def test_torchvision_model_is_built_once_and_checked(weights: str | None, fragments: list[str]) -> None:
    config = with_change(BVLC_RANDOM, "model", {"name": "torchvision:resnet18", "weights": weights, "mean_file": None})
    config = with_change(with_change(config, "images.0.target", 1000), "layers", ["bogus"])
    with pytest.raises(ValueError) as info:
        check_config(config)
    message = str(info.value)
    for fragment in [
        *fragments,
        "images[0].target",
        "allowed: 0..999",
        "layers[0]",
        "'bogus'",
        "is not an IFM layer of torchvision:resnet18",
    ]:
        assert fragment in message, (fragment, message)
    assert configcheck.model_info.cache_info().currsize >= 1
    hits = configcheck.model_info.cache_info().hits
    configcheck.model_info("torchvision:resnet18")
    assert configcheck.model_info.cache_info().hits == hits + 1


# --- the schema, with messages that name the key ----------------------------------------------------------------

SCHEMA_CASES = {
    "misspelled_top_key": (
        "decimal",
        4,
        ["config: unknown key 'decimal' (did you mean 'decimals'?)", "allowed keys: run, model"],
    ),
    "misspelled_model_key": (
        "model.weight",
        "train",
        ["model: unknown key 'weight' (did you mean 'weights'?)", "allowed keys: name, weights, mean_file"],
    ),
    "misspelled_image_key": ("images.0.sorce", "x.png", ["images[0]: unknown key 'sorce' (did you mean 'source'?)"]),
    "local_weights_string": (
        "model.weights",
        "data/mine.caffemodel",
        ["model.weights: 'data/mine.caffemodel' is not allowed", "{path: data/mine.caffemodel, sha256: <its sha256>}"],
    ),
    "mean_file_string": (
        "model.mean_file",
        "mean.npy",
        ["model.mean_file: 'mean.npy' is not allowed", "{path: mean.npy, sha256: <its sha256>}"],
    ),
    "weights_url_and_path": (
        "model.weights",
        {"url": "file:///w", "path": "w", "sha256": SHA_A, "file": "w"},
        ["model.weights", "url for a download or path for a local file, not both"],
    ),
    "url_image_without_sha256": (
        "images.0",
        {"id": "web", "source": "https://example.org/a.jpg"},
        ["images[0].sha256: missing for the URL 'https://example.org/a.jpg'"],
    ),
    "duplicate_knobs": ("knobs", ["first", "first"], ["knobs: ['first', 'first'] lists a value twice"]),
    "duplicate_layers": ("layers", ["pool5", "pool5"], ["layers: ['pool5', 'pool5'] lists a value twice"]),
    "newline_in_source": ("images.0.source", "a.png\n$(touch X)", ["images[0].source", "contains a control character"]),
    "newline_in_url": (
        "model.weights",
        {"url": "file:///w\n.pt", "sha256": SHA_A, "file": "w.pt"},
        ["model.weights.url", "control character"],
    ),
    "tab_in_layer": ("layers", ["pool5\t"], ["layers[0]", "control character"]),
    "space_in_url": (
        "model.weights",
        {"url": "file:///a b.pt", "sha256": SHA_A, "file": "w.pt"},
        ["model.weights.url: 'file:///a b.pt'", "without spaces"],
    ),
    "command_in_layer": ("layers", ["pool5$(touch X)"], ["layers[0]: 'pool5$(touch X)' does not match"]),
    "backticks_in_chain": (
        "chains.0.steps",
        "norm2@3`touch X`",
        ["chains[0].steps: 'norm2@3`touch X`' does not match", "e.g. norm2@3"],
    ),
    "semicolon_in_chain_layer": (
        "chains.0.layer",
        "pool5;touch X",
        ["chains[0].layer: 'pool5;touch X' does not match"],
    ),
    "quote_in_run": ("run", "demo'x", ['run: "demo\'x" does not match', "an id that becomes part of file paths"]),
    "space_in_image_id": (
        "images.0.id",
        "a b",
        ["images[0].id: 'a b' does not match", "an id that becomes part of file paths"],
    ),
    "double_quote_in_file": (
        "model.weights",
        {"url": "file:///w.pt", "sha256": SHA_A, "file": 'w".pt'},
        ["model.weights.file: 'w\".pt' does not match", "an id that becomes part of file paths"],
    ),
    "braces_in_local_weights": (
        "model.weights",
        {"path": "w{x}.pt", "sha256": SHA_A},
        ["model.weights.path: 'w{x}.pt'", "braces"],
    ),
    "missing_checksum_local": (
        "model.weights",
        {"path": "w.pt"},
        ["model.weights: not a valid local file", "required"],
    ),
    "uppercase_sha256": ("images.0.sha256", SHA_A.upper(), ["images[0].sha256", "does not match"]),
    "model_name_injection": (
        "model.name",
        "alexnet_mini;touch X",
        ["model.name: 'alexnet_mini;touch X' does not match"],
    ),
    "knob_unknown": ("knobs", ["nonzero_mean", "median"], ["knobs[1]: 'median' is not one of"]),
    "device_unknown": ("device", "tpu", ["device: 'tpu' is not one of ['cpu', 'cuda']"]),
    "window_zero": ("windows.start", 0, ["windows.start: 0 is less than the minimum of 1"]),
    "gamma_zero": ("gammas", [0, 1], ["gammas[0]: 0 is less than or equal to the minimum of 0"]),
    "duplicate_gammas": ("gammas", [0.5, 1, 0.5], ["gammas: [0.5, 1, 0.5] lists a value twice"]),
    "duplicate_noise_scales": ("noise_scales", [0.0, 1.0, 1.0], ["noise_scales: [0.0, 1.0, 1.0] lists a value twice"]),
    "duplicate_chains": (
        "chains.1",
        {"steps": "norm2@3", "layer": "pool5"},
        [
            "chains: [{'steps': 'norm2@3', 'layer': 'pool5'}, {'steps': 'norm2@3', 'layer': 'pool5'}] lists a value twice"
        ],
    ),
    "noise_without_scales": (
        "noise_scales",
        [],
        ["noise_scales: [] should be non-empty", "laplace, gaussian", "at least one scale"],
    ),
    "chains_without_nonzero_mean": (
        "knobs",
        ["first", "mean"],
        ["knobs: ['first', 'mean'] lacks nonzero_mean", "chains need"],
    ),
    "unsafe_layer_name": ("layers", ["..x"], ["layers[0]: '..x' should not be valid"]),
    "certify_deterministic_knob": ("certify.knobs", ["first"], ["certify.knobs[0]: 'first' is not one of"]),
    "certify_zero_scale": (
        "certify.scales",
        [0.0],
        ["certify.scales[0]: 0.0 is less than or equal to the minimum of 0"],
    ),
    "certify_one_probe": ("certify.probes", 1, ["certify.probes: 1 is less than the minimum of 2"]),
}


@pytest.mark.parametrize("case", list(SCHEMA_CASES))
def test_schema_problem_names_the_key(case: str) -> None:
    path, value, fragments = SCHEMA_CASES[case]
    with pytest.raises(ValueError, match=r"^invalid config") as info:
        check_schema(with_change(DEMO, path, value), SCHEMA)
    for fragment in fragments:
        assert fragment in str(info.value), (fragment, str(info.value))


def test_the_shipped_configs_pass_every_check() -> None:
    for name in ("config", "demo", "imagenet16", "real", "imagenet16_lite0", "attacks"):
        config = yaml.safe_load((REPO / "config" / f"{name}.yaml").read_text())
        check_schema(config, SCHEMA)
        check_config(config, cuda_available=False, files=False)


# --- files already on disk are verified before first use ----------------------------------------------------------


def local_bvlc(tmp_path: Path, content: bytes) -> dict[str, Any]:
    """A bvlc_alexnet config whose weights and mean file are downloads of local files with known sha256."""
    for name in ("w.caffemodel", "m.npy"):
        (tmp_path / f"src_{name}").write_bytes(content)
    entry = {name: {"url": (tmp_path / f"src_{name}").as_uri(), "sha256": hashlib.sha256(content).hexdigest(), "file": name}
             for name in ("w.caffemodel", "m.npy")}  # fmt: skip
    return {
        **BVLC_RANDOM,
        "model": {"name": "bvlc_alexnet", "weights": entry["w.caffemodel"], "mean_file": entry["m.npy"]},
    }


@pytest.mark.parametrize("which", ["weights", "mean_file"])
def test_wrong_hand_placed_file_is_refused_naming_file_expected_actual(
    which: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    config = local_bvlc(tmp_path, b"right")
    name = config["model"][which]["file"]
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / name).write_bytes(b"wrong")
    with pytest.raises(ValueError) as info:
        check_config(config)
    message = str(info.value)
    assert f"model.{which}: data/{name} is not the expected file" in message
    assert hashlib.sha256(b"right").hexdigest() in message and hashlib.sha256(b"wrong").hexdigest() in message
    assert f"delete data/{name}" in message and not (tmp_path / "data" / f"{name}.verified").exists()


def test_wrong_hand_placed_image_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    config = with_change(DEMO, "images.0", {"id": "web", "source": "https://example.org/x/Pic.JPEG", "sha256": SHA_A})
    (tmp_path / "data" / "images").mkdir(parents=True)
    (tmp_path / "data" / "images" / "web.jpeg").write_bytes(b"not a")
    with pytest.raises(
        ValueError,
        match=r"images\[0\]: data/images/web.jpeg is not the expected file: its sha256 is "
        + hashlib.sha256(b"not a").hexdigest()
        + f", expected {SHA_A}",
    ):
        check_config(config)


def test_right_hand_placed_file_leaves_no_cache_and_its_edit_is_caught(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    config = local_bvlc(tmp_path, b"right")
    (tmp_path / "data").mkdir()
    for name in ("w.caffemodel", "m.npy"):
        (tmp_path / "data" / name).write_bytes(b"right")
    check_config(config)
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["m.npy", "w.caffemodel"]  # nothing vouches on disk
    weights = tmp_path / "data" / "w.caffemodel"
    stat = weights.stat()
    weights.write_bytes(b"wrong")  # the same size, and the old mtime put back: only the bytes tell
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    with pytest.raises(ValueError, match="w.caffemodel is not the expected file"):
        check_config(config)


def test_local_weights_file_form_is_verified(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mine.pt").write_bytes(b"weights")
    right = with_change(DEMO, "model.weights", {"path": "mine.pt", "sha256": hashlib.sha256(b"weights").hexdigest()})
    check_schema(right, SCHEMA)
    check_config(right)
    wrong = with_change(DEMO, "model.weights", {"path": "mine.pt", "sha256": SHA_A})
    with pytest.raises(ValueError, match=f"model.weights: mine.pt is not the expected file.*expected {SHA_A}"):
        check_config(wrong)


def test_job_refuses_wrong_weights_before_loading(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from ifmsan.cli import main

    weights = tmp_path / "w.caffemodel"
    weights.write_bytes(b"not alexnet")
    code = main(["extract", "--model", "bvlc_alexnet", "--weights", str(weights), "--weights-sha1", "0" * 40,
                 "--image", "skimage:cat", "--image-id", "cat", "--out", str(tmp_path / "x.nc")])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and f"{weights} is not the expected file" in err and "0" * 40 in err
    assert hashlib.sha1(b"not alexnet").hexdigest() in err and not (tmp_path / "x.nc").exists()
    code = main(["extract", "--model", "alexnet_mini", "--mean-file-sha256", SHA_A, "--image", "skimage:cat",
                 "--image-id", "cat", "--out", str(tmp_path / "x.nc")])  # fmt: skip
    assert code == 2 and "--mean-file-sha256/-sha1 need a --mean-file file" in capsys.readouterr().err


def test_extract_verifies_a_hand_placed_local_image(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from ifmsan.cli import main

    image = tmp_path / "it's a pic.png"
    image.write_bytes(b"wrong bytes")
    code = main(["extract", "--model", "alexnet_mini", "--image", str(image), "--image-sha256", SHA_A,
                 "--image-id", "pic", "--out", str(tmp_path / "x.nc")])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and f"expected {SHA_A}" in err and hashlib.sha256(b"wrong bytes").hexdigest() in err
    assert not (tmp_path / "x.nc").exists()


# --- through Snakemake: errors before any job, and nothing from the config reaches a shell unquoted -----------------


def write_config(path: Path, config: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


@pytest.mark.slow
def test_dry_runs_stop_before_any_job(tmp_path: Path) -> None:
    cases = {
        "typo": (with_change(DEMO, "decimal", 4), ["unknown key 'decimal' (did you mean 'decimals'?)"]),
        "stop": (
            with_change(DEMO, "windows", {"start": 9, "stop": 3, "step": 1}),
            ["windows.stop: 3 is below windows.start 9"],
        ),
        "wrong_weights": (
            local_bvlc(tmp_path, b"right"),
            ["data/w.caffemodel is not the expected file", hashlib.sha256(b"wrong").hexdigest()],
        ),
    }
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "w.caffemodel").write_bytes(b"wrong")
    for name, (config, fragments) in cases.items():
        result = snakemake(
            tmp_path, "-n", "--configfile", str(write_config(tmp_path / f"{name}.yaml", config)), check=False
        )
        text = result.stdout + result.stderr
        assert result.returncode != 0 and "Building DAG" not in text, (name, text[-2000:])
        for fragment in fragments:
            assert fragment in text, (name, fragment, text[-2000:])
    assert not (tmp_path / "results").exists() and not (tmp_path / "logs").exists()
    if not torch.cuda.is_available():
        result = snakemake(
            tmp_path,
            "-n",
            "--configfile",
            str(write_config(tmp_path / "cuda.yaml", with_change(DEMO, "device", "cuda"))),
            check=False,
        )
        assert (
            result.returncode != 0
            and "device: 'cuda', but torch sees no CUDA device here" in result.stdout + result.stderr
        )


HOSTILE = "it's a \"pic\" $(touch CANARY1) `touch CANARY2`; touch CANARY3 $HOME 'x"
URL_HOSTILE = "it's\"$(touch${IFS}CANARY4)`touch${IFS}CANARY5`;touch${IFS}CANARY6;'x"


@pytest.fixture(scope="module")
def hostile_run(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Path, subprocess.CompletedProcess[str], dict[str, Any]]:
    """A run of the cheap rules (fetches, two extractions) on a config whose every free string is hostile."""
    from PIL import Image

    from ifmsan.models.caffe_alexnet import build_alexnet_mini

    workdir = tmp_path_factory.mktemp("hostile")
    sources = workdir / f"src {HOSTILE}"
    sources.mkdir()
    good, bad = sources / f"{HOSTILE}.png", sources / f"{HOSTILE} broken.png"
    web = workdir / URL_HOSTILE / "web.png"  # raw in the URL: no spaces there (the schema refuses them)
    web.parent.mkdir()
    Image.new("RGB", (64, 64), (200, 30, 30)).save(good)
    bad.write_text("not an image")
    Image.new("RGB", (64, 64), (30, 200, 30)).save(web)
    weights = web.parent / "w.pt"
    torch.save(build_alexnet_mini(weights=None, seed=0).state_dict(), weights)
    sha = {path: hashlib.sha256(path.read_bytes()).hexdigest() for path in (good, bad, web, weights)}
    config = with_change(DEMO, "images", [
        {"id": "good", "source": str(good), "sha256": sha[good], "target": 1},
        {"id": "bad", "source": str(bad)},
        {"id": "web", "source": f"file://{web}", "sha256": sha[web]},
    ])  # fmt: skip
    config["model"]["weights"] = {"url": f"file://{weights}", "sha256": sha[weights], "file": "mini.pt"}
    # an image's IFMs come from its whole image job: keep it small (one layer, one knob, no chain, no attacks)
    config.update(layers=["pool5"], knobs=["nonzero_mean"], chains=[])
    for stage in ("attacks", "certify"):
        config.pop(stage, None)
    path = write_config(workdir / "hostile.yaml", config)
    targets = ["results/demo/ifms/good.nc", "results/demo/ifms/bad.nc", "data/images/web.png"]
    result = snakemake(workdir, *targets, "--cores", "2", "--keep-going", "--configfile", str(path), check=False)
    return workdir, result, config


@pytest.mark.slow
def test_hostile_strings_arrive_verbatim_and_run_nothing(
    hostile_run: tuple[Path, subprocess.CompletedProcess[str], dict[str, Any]],
) -> None:
    from ifmsan.steps.io import read_netcdf

    workdir, result, config = hostile_run
    text = result.stdout + result.stderr
    for root in (workdir, REPO, Path.cwd()):
        assert not any((root / f"CANARY{i}").exists() for i in range(1, 7)), "a config value was executed"
    assert result.returncode != 0 and "Error in rule image" in text  # the broken image fails; everything else ran
    good = read_netcdf(workdir / "results" / "demo" / "ifms" / "good.nc")
    assert good.attrs["image_source"] == config["images"][0]["source"] and good.attrs["target"] == 1
    web = workdir / "data" / "images" / "web.png"
    assert web.read_bytes() == (workdir / URL_HOSTILE / "web.png").read_bytes()
    assert not (workdir / "data" / "images" / "web.png.verified").exists()  # no file vouches for another
    assert (workdir / "data" / "mini.pt").is_file() and not (workdir / "data" / "mini.pt.verified").exists()
    log = (workdir / "logs" / "demo" / "image" / "bad.log").read_text()
    assert "is not a readable image" in log and config["images"][1]["source"] in log


@pytest.mark.slow
def test_hostile_commands_are_quoted(
    hostile_run: tuple[Path, subprocess.CompletedProcess[str], dict[str, Any]],
) -> None:
    import shlex

    workdir, _, config = hostile_run
    result = snakemake(
        workdir, "-n", "-p", "--forceall", "--configfile", str(workdir / "hostile.yaml"), "--until", "image"
    )
    commands = [line[line.index("ifmsan ") :] for line in result.stdout.splitlines() if "ifmsan " in line]
    assert len(commands) >= 5, result.stdout[-3000:]
    extract_good = next(shlex.split(line) for line in commands if "--image-id good" in line)
    assert extract_good[extract_good.index("--image") + 1] == config["images"][0]["source"]
    fetch = next(shlex.split(line) for line in commands if line.startswith("ifmsan fetch") and "mini.pt" in line)
    assert fetch[2] == config["model"]["weights"]["url"]
    assert re.search(r"--weights-sha256 [0-9a-f]{64}", " ".join(commands))


def test_schema_is_2020_12_and_its_knob_list_is_the_packages() -> None:
    import jsonschema

    from ifmsan.core import knobs

    raw = yaml.safe_load((REPO / "workflow" / "schemas" / "config.schema.yaml").read_text())
    jsonschema.Draft202012Validator.check_schema(raw)
    assert "definitions" not in raw and "safe_id" in raw["$defs"]
    assert raw["properties"]["knobs"]["items"]["enum"] == list(knobs.KNOBS)
    assert raw["properties"]["attacks"]["properties"]["knobs"]["items"]["enum"] == list(knobs.KNOBS)
    noisy = raw["allOf"][0]["if"]["properties"]["knobs"]["contains"]["enum"]
    assert noisy == list(knobs.NOISES)


def test_the_schemas_safe_id_is_the_packages() -> None:
    import jsonschema

    from ifmsan._shared.ids import SAFE_ID_MAX, SAFE_ID_PATTERN, is_safe_id
    from ifmsan.steps.io import check_id

    safe_id = SCHEMA["$defs"]["safe_id"]
    assert safe_id["pattern"] == SAFE_ID_PATTERN and safe_id["not"] == {"pattern": "\\.\\."}
    assert f"{{0,{SAFE_ID_MAX - 1}}}" in SAFE_ID_PATTERN
    validator = jsonschema.Draft202012Validator({"$defs": SCHEMA["$defs"], "$ref": "#/$defs/safe_id"})
    for value in ("a" * SAFE_ID_MAX, "a" * (SAFE_ID_MAX + 1), "a..b", ".a", "-a", "a-b.c_d", "a/b", "a b", ""):
        assert validator.is_valid(value) == is_safe_id(value), value
        if is_safe_id(value):
            assert check_id(value) == value
        else:
            with pytest.raises(ValueError, match="is not a safe id"):
                check_id(value)


def test_defaults_come_from_the_schema() -> None:
    from ifmsan.workflow.schema import with_defaults

    minimal = {"model": {"name": "alexnet_mini"}, "images": [{"id": "a", "source": "skimage:cat"}]}
    filled = with_defaults({**minimal, "attacks": {"layers": ["pool5"], "knobs": ["first"]}}, SCHEMA)
    assert filled["windows"] == {"start": 2, "stop": 150, "step": 1} and filled["knobs"] == ["nonzero_mean", "first"]
    assert filled["attacks"]["n_examples"] == 4 and filled["attacks"]["n_test"] == 100 and filled["run"] == "paper"
    assert "windows" not in minimal  # a copy is filled in


def test_every_object_of_the_schema_rejects_unknown_keys() -> None:
    def objects(node: Any, where: str) -> list[tuple[str, Any]]:
        found = [(where, node)] if isinstance(node, dict) and node.get("type") == "object" else []
        if isinstance(node, dict):
            found += [item for key, value in node.items() for item in objects(value, f"{where}.{key}")]
        elif isinstance(node, list):
            found += [item for i, value in enumerate(node) for item in objects(value, f"{where}[{i}]")]
        return found

    found = objects(SCHEMA, "schema")
    assert len(found) >= 8
    assert [where for where, node in found if node.get("additionalProperties") is not False] == []
