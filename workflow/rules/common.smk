# Input functions and helpers: everything the rules derive from the validated config lives here.
import hashlib
import json
import os
from pathlib import Path

CAFFE_LAYERS = ("conv1", "norm1", "pool1", "conv2", "norm2", "pool2", "conv3", "conv4", "conv5", "pool5", "fc6", "fc7", "fc8")
WINDOW_KNOBS = ("nonzero_mean", "first", "mean", "random")
NOISE_KNOBS = ("laplace", "gaussian")
RUN = config["run"]
OUT = f"results/{RUN}"
IMAGES = {image["id"]: image for image in config["images"]}
if len(IMAGES) != len(config["images"]):
    raise ValueError("config images: every image id must be unique")
# Provenance hash of what a per-image job computes: not images or gammas, so adding an image reruns nothing else.
COMPUTE_KEYS = ("model", "train_mini", "windows", "knobs", "noise_scales", "chains", "seed", "batch_size", "threads", "device")
CONFIG_HASH = hashlib.sha256(
    json.dumps({key: config.get(key) for key in COMPUTE_KEYS}, sort_keys=True, default=str).encode()
).hexdigest()[:16]


wildcard_constraints:
    image="[A-Za-z0-9][A-Za-z0-9_.-]*",
    layer="[A-Za-z0-9_.]+",
    knob="|".join(WINDOW_KNOBS + NOISE_KNOBS),
    steps="[A-Za-z0-9_.]+@[0-9]+(\+[A-Za-z0-9_.]+@[0-9]+)*",


def model_layers():
    """The IFM layers to sweep: the config's list, else every IFM layer of the model."""
    if config["layers"]:
        return list(config["layers"])
    if config["model"]["name"] in ("bvlc_alexnet", "alexnet_mini"):
        return list(CAFFE_LAYERS)
    from ifmsan import models

    return list(models.load(config["model"]["name"]).ifm_layers)


def is_url(source):
    return source.split("://", 1)[0] in ("http", "https", "file")


def image_file(image_id):
    """Where a URL image is cached (a DAG output), or the local file, or None for generated images."""
    source = IMAGES[image_id]["source"]
    if is_url(source):
        suffix = Path(source.split("?", 1)[0]).suffix.lower() or ".img"
        return f"data/images/{image_id}{suffix}"
    if source.startswith(("skimage:", "minidata:")):
        return None
    return source


def image_input(wildcards):
    path = image_file(wildcards.image)
    return [path] if path else []


def image_args(wildcards):
    """--image/--image-sha256/--target options of ifmsan extract for one image."""
    image = IMAGES[wildcards.image]
    path = image_file(wildcards.image)
    args = [f"--image '{path or image['source']}'"]
    if image.get("sha256"):
        args.append(f"--image-sha256 {image['sha256']}")
    if image.get("target") is not None:
        args.append(f"--target {image['target']}")
    return " ".join(args)


def weights_file():
    weights = config["model"]["weights"]
    if isinstance(weights, dict):
        return f"data/{weights['file']}"
    if weights == "train":
        return f"{OUT}/model/alexnet_mini.pt"
    return None


def mean_file():
    mean = config["model"]["mean_file"]
    return f"data/{mean['file']}" if mean else None


def model_inputs(wildcards=None):
    """Weights and mean file a model-using rule must wait for."""
    return [path for path in (weights_file(), mean_file()) if path]


def model_args(wildcards=None):
    """--model/--weights/--mean-file options shared by extract and sweep."""
    weights = config["model"]["weights"]
    args = [f"--model {config['model']['name']}"]
    if weights_file():
        args.append(f"--weights {weights_file()}")
    elif isinstance(weights, str):
        args.append(f"--weights {weights}")
    if mean_file():
        args.append(f"--mean-file {mean_file()}")
    return " ".join(args + [f"--attr config_hash={CONFIG_HASH}", f"--attr run={RUN}", f"--device {config['device']}"])


def windows_arg():
    """--values of ifmsan sweep and gamma: the configured window range, inclusive."""
    w = config["windows"]
    return f"{w['start']}:{w['stop']}:{w['step']}"


def download(kind):
    """The download entry (url, checksum, file) of the weights or the mean file."""
    return config["model"]["weights"] if kind == "weights" else config["model"]["mean_file"]


def download_args(entry):
    checksum = f"--sha256 {entry['sha256']}" if entry.get("sha256") else f"--sha1 {entry['sha1']}"
    return f"'{entry['url']}' {checksum}"


def sweep_files():
    return expand(f"{OUT}/sweeps/{{image}}/{{layer}}/{{knob}}.nc", image=IMAGES, layer=model_layers(), knob=config["knobs"])


def chain_files():
    return [
        f"{OUT}/chains/{image}/{chain['layer']}/{chain['steps']}.nc" for image in IMAGES for chain in config["chains"]
    ]


def baseline_chain_files():
    """The unchained nonzero_mean sweeps of every chained layer: Table 2's first row."""
    layers = sorted({chain["layer"] for chain in config["chains"]})
    return expand(f"{OUT}/sweeps/{{image}}/{{layer}}/nonzero_mean.nc", image=IMAGES, layer=layers)


def all_sweeps():
    return sorted(set(sweep_files()) | set(chain_files()) | set(baseline_chain_files()))


def all_targets():
    return [
        *[f"{OUT}/tables/{name}.{ext}" for name, ext in table_files()],
        *expand(f"{OUT}/gamma/controller/{{image}}.csv", image=IMAGES),
        *figure_files(),
        f"{OUT}/notebooks/inspect_ifms.ipynb",
        f"{OUT}/notebooks/compare_knobs.ipynb",
    ]


def figure_names():
    """The figures `ifmsan figures` can draw from this config's sweeps (mirrors ifmsan.figures.write_figures)."""
    layers, knobs = set(model_layers()), set(config["knobs"])
    chained = {chain["layer"] for chain in config["chains"]}
    names = []
    if {"pool5"} <= layers and {"first", "nonzero_mean"} <= knobs:
        names.append("figure2")
    if {"pool5", "fc6"} <= layers and "nonzero_mean" in knobs:
        names.append("figure4")
    if "pool5" in chained and "pool5" in layers and "nonzero_mean" in knobs:
        names.append("figure5")
    if "nonzero_mean" in knobs:
        names += ["heatmap", "effsan"]
    if len(knobs) >= 2:
        names += [f"knob_coverage_{layer}" for layer in model_layers()]
    return names


def figure_files(wildcards=None):
    return expand(f"{OUT}/figures/{{image}}/{{name}}.{{ext}}", image=IMAGES, name=figure_names(), ext=("png", "pdf"))


def table_files():
    """(name, extension) of every file `ifmsan report` writes for this config."""
    names = ["table1", "gamma_report", "gamma_summary"] + (["table2"] if config["chains"] else [])
    files = [(name, ext) for name in names for ext in ("csv", "md")]
    return files + ([("table1_per_image", "csv")] if len(IMAGES) > 1 else [])
