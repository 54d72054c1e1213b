# Input functions and helpers: everything the rules derive from the validated config lives here.
# Every value that reaches a shell command is a params list or a wildcard, formatted with :q (shlex-quoted).
import os
from types import SimpleNamespace

from ifmsan._shared.hashing import digest_path
from ifmsan._shared.ids import SAFE_ID_BODY
from ifmsan.core.knobs import KNOBS, NOISES
from ifmsan.workflow import configcheck, paths
from ifmsan.workflow.plan import plan

SEEDED_KNOBS = ("random", *NOISES)
"""The knobs whose sweeps draw from the seed: the random selector and the noise knobs."""

# Every job's shell exports IFMSAN_PARENT_PID=$PPID: the Snakemake process that started it (the main one locally, the
# per-job one on a SLURM node), which `ifmsan` watches, stopping when it dies (ifmsan._shared.parentwatch). Snakemake's
# own prefix (bash strict mode) is kept. Parsing this file changes no environment variable.
shell.prefix("set -euo pipefail; export IFMSAN_PARENT_PID=$PPID; ")

# Every rule's `conda:` is environment.yml, the one dependency list. It holds no `pip: -e .`, which would break in
# Snakemake's copy of it under .snakemake/conda/; with --sdm conda, Snakemake runs environment.post-deploy.sh in the
# new environment, which installs ifmsan from the working directory Snakemake runs in (docs/cluster.md).
CONDA_ENV_FILE = os.path.join(workflow.basedir, "environment.yml")

RUN = config["run"]
OUT = f"results/{RUN}"
IMAGES = {image["id"]: image for image in config["images"]}
# What this run produces (layers, figures, tables, notebooks), decided by the package that writes it; computed once.
PLAN = plan(config)
# Provenance hashes (ifmsan.workflow.plan): EXTRACT_HASH of what extraction uses (model, weights, preprocessing),
# CONFIG_HASH of what every sweep-stage job uses (those, windows, batch size, threads, device). Each rule passes only
# the ones its jobs use (hash_args, in its params), so an edit reruns exactly the jobs whose results it changes.
EXTRACT_HASH = PLAN.extract_hash
CONFIG_HASH = PLAN.config_hash
# The per-image files, all written by one `image` job per image (workflow/rules/image.smk).
IFMS_FILE = f"{OUT}/ifms/{{image}}.nc"
SWEEP_FILE = f"{OUT}/sweeps/{{image}}/{{layer}}/{{knob}}.nc"
CHAIN_FILE = f"{OUT}/chains/{{image}}/{{layer}}/{{steps}}.nc"
CONTROLLER_FILE = f"{OUT}/gamma/controller/{{image}}.csv"


def hash_args(*keys):
    """--attr extract_hash=... / --attr config_hash=... for the named hashes, as a list for {params:q}."""
    hashes = {"extract_hash": EXTRACT_HASH, "config_hash": CONFIG_HASH}
    return [arg for key in keys for arg in ("--attr", f"{key}={hashes[key]}")]


wildcard_constraints:
    image=SAFE_ID_BODY,
    layer=SAFE_ID_BODY,
    knob="|".join(KNOBS),
    steps="[A-Za-z0-9_.]+@[0-9]+(\+[A-Za-z0-9_.]+@[0-9]+)*",


def model_layers():
    """The IFM layers to sweep: the config's list, else every IFM layer of the model (PLAN, computed once)."""
    return list(PLAN.layers)


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
    return paths.image_file(IMAGES[image_id])


def image_input(wildcards):
    path = image_file(wildcards.image)
    return [path] if path else []


def image_group_args():
    """--image-group ID=GROUP of ifmsan report, for each image the config gives a class group (the summary's rows)."""
    return [arg for i in IMAGES.values() if i.get("group") for arg in ("--image-group", f"{i['id']}={i['group']}")]


def image_args(wildcards):
    """--image/--image-sha256/--target options of ifmsan extract for one image, as a list for {params:q}."""
    image = IMAGES[wildcards.image]
    args = ["--image", image_file(wildcards.image) or image["source"]]
    if image.get("sha256"):
        args += ["--image-sha256", image["sha256"]]
    if image.get("target") is not None:
        args += ["--target", str(image["target"])]
    return args


def download_output(key):
    """[data/<file>] of model.<key> when it is a download (fetched by fetch_<key>), else [], and then that rule makes nothing
    and no job asks for it."""
    entry = config["model"][key]
    return [paths.file_entry_path(entry)] if paths.is_download(entry) else []


def converted_weights_file():
    """bvlc_alexnet's caffemodel converted once to .safetensors (rule convert_weights), else None."""
    return paths.converted_weights_path(config["model"])


def converted_weights_digest():
    """The digest convert_weights writes beside the converted file (<file>.xxh3), which jobs check it against; else None."""
    converted = converted_weights_file()
    return str(digest_path(converted)) if converted else None


def weights_file():
    """The weights file as configured (rule fetch_weights downloads it), or the trained alexnet_mini; None for none."""
    weights = config["model"]["weights"]
    if paths.is_download(weights):
        return rules.fetch_weights.output[0]
    if isinstance(weights, dict):
        return paths.file_entry_path(weights)
    if weights == "train":
        return rules.train_mini.output.weights
    return None


def job_weights_file():
    """The weights file the model-using jobs load: the converted one for bvlc_alexnet's caffemodel, else weights_file()."""
    return rules.convert_weights.output.weights if converted_weights_file() else weights_file()


def mean_file():
    """Caffe's mean file as configured (rule fetch_mean_file downloads it); None for none."""
    mean = config["model"]["mean_file"]
    if paths.is_download(mean):
        return rules.fetch_mean_file.output[0]
    return paths.file_entry_path(mean) if mean else None


def model_inputs(wildcards=None):
    """Weights (with the converted file's digest) and mean file that model-using jobs wait for; asked at DAG time, so
    the device check runs here."""
    check_device()
    digest = rules.convert_weights.output.digest if converted_weights_file() else None
    return [path for path in (job_weights_file(), digest, mean_file()) if path]


def checksum_args(option, entry):
    """--<option>-sha256 X / --<option>-sha1 X (option None: --sha256 X / --sha1 X): the job verifies the file again
    before it loads it; for a converted caffemodel the sums it recorded are compared, nothing is hashed."""
    prefix = f"--{option}-" if option else "--"
    return [arg for a in ("sha256", "sha1") if entry.get(a) for arg in (f"{prefix}{a}", entry[a])]


def model_args(wildcards=None):
    """--model/--weights/--mean-file/--preprocess options shared by extract, sweep and gamma, as a list for {params:q}."""
    weights, mean = config["model"]["weights"], config["model"]["mean_file"]
    args = ["--model", config["model"]["name"]]
    if job_weights_file():
        args += ["--weights", job_weights_file()]
        if converted_weights_file():  # the converted file's bytes against the digest written beside it
            args += ["--weights-digest", rules.convert_weights.output.digest]
        if isinstance(weights, dict):
            args += checksum_args("weights", weights)
    elif isinstance(weights, str):
        args += ["--weights", weights]
    if mean:
        args += ["--mean-file", mean_file(), *checksum_args("mean-file", mean)]
    if config["model"].get("preprocess"):
        args += ["--preprocess", config["model"]["preprocess"]]
    return args + ["--attr", f"run={RUN}", "--device", config["device"]]  # each rule adds its hash_args


def windows_arg():
    """--values of ifmsan sweep and gamma: the configured window range, inclusive."""
    w = config["windows"]
    return f"{w['start']}:{w['stop']}:{w['step']}"


def download_args(entry):
    """URL and checksum option of ifmsan fetch, as a list for {params:q}."""
    return [entry["url"], *(["--sha256", entry["sha256"]] if entry.get("sha256") else ["--sha1", entry["sha1"]])]


def image_sweep_layers():
    """The layers an image job sweeps over every knob: the swept layers, then any chained layer's baseline."""
    return list(dict.fromkeys([*PLAN.layers, *PLAN.baseline_layers]))


def image_outputs(kind):
    """The sweep (kind 'sweeps') or chain ('chains') files of one image job, {image} left a wildcard."""
    if kind == "sweeps":
        return [SWEEP_FILE.format(image="{image}", layer=l, knob=k) for l in image_sweep_layers() for k in PLAN.knobs]
    return [CHAIN_FILE.format(image="{image}", layer=layer, steps=steps) for layer, steps in PLAN.chains]


def image_pieces():
    """What an image job computes besides the extraction: a layer's sweeps, a chain, a layer's controller search."""
    return len(image_sweep_layers()) + len(PLAN.chains) + len(PLAN.layers)


def image_workers():
    """The pieces an image job runs at once: the config's `workers`, but locally no more than the job's share of
    --cores when the images outnumber them (16 images on 2 cores: one each, two images side by side, and single-thread
    jobs such as figures fill any free core). A cluster job, and its own Snakemake on the node, take the config's."""
    cores = workflow.resource_settings.cores
    if cores is None or workflow.remote_exec or not jobs_run_here():
        return config["workers"]
    return max(1, min(config["workers"], cores // (config["threads"] * len(IMAGES))))


def image_threads(wildcards):
    """An image job's threads: `threads` torch threads for each of its workers (the files depend on neither)."""
    return config["threads"] * image_workers()


def image_mem_mb(wildcards, threads):
    """An image job's memory: the model, the IFMs and each worker's batch buffers. Measured peaks (docs/scaling.md):
    1.4 GB for BVLC AlexNet with 2 workers, 2.4 GB for EfficientNet-Lite0 (60 MB of IFMs) with one."""
    return 2000 + 1000 * max(1, threads // config["threads"])


def image_runtime(wildcards, threads):
    """Minutes an image job may take on a cluster: ten per round of pieces over its workers, and ten to start."""
    return 10 + 10 * -(-image_pieces() // max(1, threads // config["threads"]))


def sweep_file(image, layer, knob):
    """One image's sweep of one layer and knob (an output of its image job)."""
    return SWEEP_FILE.format(image=image, layer=layer, knob=knob)


def sweep_files(image=None):
    """Every layer x knob sweep of one image, or of every image."""
    images = IMAGES if image is None else [image]
    return [sweep_file(i, layer, knob) for i in images for layer in PLAN.layers for knob in PLAN.knobs]


def image_sweeps(image):
    """Every sweep file of one image: layer x knob, each chain, and each chained layer's unchained baseline."""
    chains = [CHAIN_FILE.format(image=image, layer=layer, steps=steps) for layer, steps in PLAN.chains]
    baselines = [sweep_file(image, layer, "nonzero_mean") for layer in PLAN.baseline_layers]
    return sorted({*sweep_files(image), *chains, *baselines})


def all_sweeps():
    return sorted({path for image in IMAGES for path in image_sweeps(image)})


def figure_inputs(wildcards):
    """The sweeps of this figure job's image, by name (never by substring of a path)."""
    return image_sweeps(wildcards.image)


def attack_option(key):
    """One option of the attacks section (defaults filled in by the schema), or None when attacks are off."""
    return (config.get("attacks") or {}).get(key)


def attack_files(rule="attack"):
    """The output of rule attack (or attack_doubled) for each attacked (layer, knob)."""
    output = getattr(rules, rule).output[0]
    return [expand(output, layer=layer, knob=knob)[0] for layer, knob in PLAN.attacks]


def attack_sweeps(wildcards):
    """The sweeps of the attacked layer and knob, every image: n*(gamma) is the largest over them. Marked ancient: an
    image job rewrites all of its sweeps when any of its settings changes, so their times say nothing; the attack's
    input attacks/<layer>/<knob>.sweeps.json (rule attack_sweeps_key) changes when what they hold does."""
    return [ancient(sweep_file(image, wildcards.layer, wildcards.knob)) for image in IMAGES]


def attack_sweeps_key(wildcards):
    """Everything the attacked layer and knob's sweeps depend on, as JSON: both hashes, every image's options, the
    knob's values and, for a knob that draws, the seed; another knob's or layer's settings leave it alone."""
    import json

    knob = wildcards.knob
    return json.dumps(
        {
            "layer": wildcards.layer,
            "knob": knob,
            "extract_hash": EXTRACT_HASH,
            "config_hash": CONFIG_HASH,
            "images": {image: image_args(SimpleNamespace(image=image)) for image in IMAGES},
            "values": config["noise_scales"] if knob in NOISES else windows_arg(),
            "seed": config["seed"] if knob in SEEDED_KNOBS else None,
        },
        sort_keys=True,
    )


def attack_values(wildcards):
    """Windows for the window knobs, scales for the noise knobs, as one --values text."""
    if wildcards.knob in NOISES:
        return ",".join(repr(float(s)) for s in attack_option("scales"))
    return ",".join(str(w) for w in attack_option("windows"))


def attack_model_args(wildcards=None):
    """The model options of the other jobs, with --device cpu: the attack stage runs on the CPU (docs/attacks.md)."""
    args = model_args(wildcards)
    return [*args[: args.index("--device")], "--device", "cpu"]


def attack_options(factor=1):
    """Sizes, epochs, seed and threads of ifmsan attack, as a list for {params:q}; factor 2: the attacker's budget doubled
    (twice the training images and every epoch count), which a verdict must survive."""
    if not PLAN.attacks:
        return []
    epochs = attack_option("epochs")
    return [
        *("--n-train", str(factor * attack_option("n_train")), "--n-test", str(attack_option("n_test"))),
        *("--epochs-adaptive", str(factor * epochs["adaptive"])),
        *("--epochs-inversion", str(factor * epochs["inversion"])),
        *("--epochs-attribute", str(factor * epochs["attribute"]), "--resolution", str(attack_option("resolution"))),
        *("--n-examples", str(attack_option("n_examples")), "--seed", str(attack_option("seed"))),
        *("--batch-size", str(attack_option("batch_size")), "--threads", str(attack_option("threads"))),
    ]


def certify_option(key):
    """One option of the certify section (defaults filled in by the schema), or None when certify is off."""
    return (config.get("certify") or {}).get(key)


def certify_image_args(wildcards):
    """--image/--image-sha256 of one image for ifmsan certify (which takes no --target)."""
    args = image_args(wildcards)
    if "--target" in args:
        del args[args.index("--target") : args.index("--target") + 2]
    return args


def certify_map_files():
    return [
        expand(rules.certify_maps.output[0], layer=layer, image=image)[0]
        for layer in PLAN.certify_layers
        for image in IMAGES
    ]


def certify_calibration_files():
    return [expand(rules.calibrate.output[0], layer=layer)[0] for layer in PLAN.certify_layers]


def certify_attack_files():
    return [
        expand(rules.certify_attack.output[0], layer=layer, knob=knob, setting=setting, budget=budget)[0]
        for layer, knob, setting, budget in PLAN.certify_attacks
    ]


def certify_attack_values(wildcards):
    """hold_gaussian: its windows (n = 1, the identity, is the unsanitized row); a noise knob: its scales."""
    if wildcards.setting == "scales":
        return ",".join(repr(float(s)) for s in certify_option("scales"))
    return ",".join(str(w) for w in certify_option("windows") if w != 1)


def certify_knob_args(wildcards):
    """--noise-scale of a hold_gaussian job (its setting s<scale>); nothing for a noise knob."""
    return [] if wildcards.setting == "scales" else ["--noise-scale", wildcards.setting[1:]]


def certify_attack_options(wildcards):
    """ifmsan attack's sizes and epochs at budget B (b1) or 2B (b2: twice the training images and epochs)."""
    factor = 2 if wildcards.budget == "b2" else 1
    epochs = certify_option("epochs")
    optimize = certify_option("optimize")
    return [
        *("--n-train", str(factor * certify_option("n_train")), "--n-test", str(certify_option("n_test"))),
        *("--epochs-adaptive", str(factor * epochs["adaptive"])),
        *("--epochs-inversion", str(factor * epochs["inversion"])),
        *("--epochs-attribute", str(factor * epochs["attribute"])),
        *("--resolution", str(certify_option("resolution")), "--seed", str(certify_option("seed"))),
        *("--batch-size", str(certify_option("batch_size")), "--threads", str(certify_option("threads"))),
        *("--optimize-images", str(optimize["images"]), "--optimize-iterations", str(optimize["iterations"])),
        *("--optimize-lr", repr(float(optimize["lr"])), "--optimize-tv", repr(float(optimize["tv_weight"]))),
        *("--attr", f"budget={wildcards.budget}"),
    ]


def job_priority(wildcards):
    """Local scheduling order among ready jobs: an image's figures (the longest of the final jobs) before the tables
    and notebooks, which need every image."""
    return len(PLAN.layers) + 1


def controller_files():
    """The gamma controller's CSV of every image, which the tables rule checks against the nonzero_mean sweeps."""
    if "nonzero_mean" not in config["knobs"]:
        return []  # no sweep of the controller's knob to check against
    return expand(CONTROLLER_FILE, image=IMAGES)


def all_targets():
    """What a run produces: the outputs of the final rules (attack_report only with attacks), every image's."""
    return [
        *(rules.attack_report.output if PLAN.attacks else []),
        *(rules.certify_report.output if PLAN.certify_layers else []),
        *rules.tables.output,
        *expand(CONTROLLER_FILE, image=IMAGES),
        *(expand(rules.figures.output, image=IMAGES) if PLAN.figures else []),
        *expand(rules.notebook.output[0], notebook=PLAN.notebooks),
    ]
