# Input functions and helpers: everything the rules derive from the validated config lives here.
# Every value that reaches a shell command is a params list or a wildcard, formatted with :q (shlex-quoted).
import hashlib
import json
import os
from pathlib import Path

from ifmsan import configcheck
from ifmsan.knobs import NOISES as NOISE_KNOBS
from ifmsan.sanitize import SELECTORS as WINDOW_KNOBS

# Every Snakemake process that runs jobs parses this file (the main one locally, the per-job one on a SLURM node):
# its jobs inherit its pid, and `ifmsan` stops when that process dies (ifmsan.parentwatch).
os.environ.update(IFMSAN_PARENT_PID=str(os.getpid()))  # set, not read: no `envvars:` entry

RUN = config["run"]
OUT = f"results/{RUN}"
# Everything the config alone implies is checked here, before Snakemake plans a job (a dry run too), and files
# already on disk are verified against their checksums. `device: cuda` is checked once the executor is known.
configcheck.check_config(config)
IMAGES = {image["id"]: image for image in config["images"]}
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
    """The IFM layers to sweep: the config's list, else every IFM layer of the model (built at most once)."""
    return list(config["layers"] or configcheck.model_info(config["model"]["name"]).layers)


def jobs_run_here():
    """True when jobs run on this machine: the local executor, or a plain dry run.

    The Snakefile is parsed before Snakemake picks its executor, so this is asked at DAG time (input functions).
    A cluster executor (and `-n --executor X`, which Snakemake marks by forcing threads) runs jobs elsewhere:
    the login node may lack a GPU there, and each job's `--device cuda` check is what refuses.
    """
    plugin = workflow.executor_plugin
    if plugin is None or workflow.remote_exec:
        return False
    return plugin.common_settings.local_exec and not workflow.execution_settings.use_threads


_DEVICE_CHECKED = []


def check_device():
    """Refuse `device: cuda` without CUDA before any job, when the jobs would run on this machine."""
    if config["device"] == "cuda" and not _DEVICE_CHECKED and jobs_run_here():
        import torch

        configcheck.check_config(config, cuda_available=torch.cuda.is_available(), files=False)
    _DEVICE_CHECKED.append(True)


def image_file(image_id):
    """Where a URL image is cached (a DAG output), or the local file, or None for generated images."""
    return configcheck.image_file(IMAGES[image_id])


def image_input(wildcards):
    path = image_file(wildcards.image)
    return [path] if path else []


def image_args(wildcards):
    """--image/--image-sha256/--target options of ifmsan extract for one image, as a list for {params:q}."""
    image = IMAGES[wildcards.image]
    args = ["--image", image_file(wildcards.image) or image["source"]]
    if image.get("sha256"):
        args += ["--image-sha256", image["sha256"]]
    if image.get("target") is not None:
        args += ["--target", str(image["target"])]
    return args


def weights_file():
    weights = config["model"]["weights"]
    if isinstance(weights, dict):
        return configcheck.file_entry_path(weights)
    if weights == "train":
        return f"{OUT}/model/alexnet_mini.pt"
    return None


def mean_file():
    mean = config["model"]["mean_file"]
    return configcheck.file_entry_path(mean) if mean else None


def model_inputs(wildcards=None):
    """Weights and mean file that model-using jobs wait for; asked at DAG time, so the device check runs here."""
    check_device()
    return [path for path in (weights_file(), mean_file()) if path]


def checksum_args(option, entry):
    """--<option>-sha256 X / --<option>-sha1 X: the job verifies the file again before it loads it."""
    return [arg for a in ("sha256", "sha1") if entry.get(a) for arg in (f"--{option}-{a}", entry[a])]


def model_args(wildcards=None):
    """--model/--weights/--mean-file options shared by extract, sweep and gamma, as a list for {params:q}."""
    weights, mean = config["model"]["weights"], config["model"]["mean_file"]
    args = ["--model", config["model"]["name"]]
    if weights_file():
        args += ["--weights", weights_file()]
        if isinstance(weights, dict):
            args += checksum_args("weights", weights)
    elif isinstance(weights, str):
        args += ["--weights", weights]
    if mean:
        args += ["--mean-file", mean_file(), *checksum_args("mean-file", mean)]
    return args + ["--attr", f"config_hash={CONFIG_HASH}", "--attr", f"run={RUN}", "--device", config["device"]]


def windows_arg():
    """--values of ifmsan sweep and gamma: the configured window range, inclusive."""
    w = config["windows"]
    return f"{w['start']}:{w['stop']}:{w['step']}"


def download(kind):
    """The download entry (url, checksum, file) of the weights or the mean file."""
    return config["model"]["weights"] if kind == "weights" else config["model"]["mean_file"]


def download_args(entry):
    """URL and checksum option of ifmsan fetch, as a list for {params:q}."""
    return [entry["url"], *(["--sha256", entry["sha256"]] if entry.get("sha256") else ["--sha1", entry["sha1"]])]


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
