"""What a run produces, decided once: the figures and tables the CLI writes, and the files the workflow declares.

`ifmsan figures` and `ifmsan report` ask these functions which files to write from the sweeps they were given;
the Snakemake workflow asks `plan(config)` for the same decision from a validated config, so the two cannot drift.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

PLAIN = "nonzero_mean"
"""The paper's knob: the one Tables 1/2, the heatmap, eff_san, Figures 4/5 and every chain sweep use."""
NOTEBOOKS: tuple[str, ...] = ("inspect_ifms", "compare_knobs")
"""The notebooks the workflow executes on a run's results (notebooks/<name>.ipynb)."""
ATTACK_NOTEBOOK = "attacks"
"""The notebook that opens the attack files, executed when the config has an attacks section."""
CERTIFY_NOTEBOOK = "certify"
"""The notebook that opens the certificate, executed when the config has a certify section."""
TABLES: tuple[str, ...] = ("table1", "gamma_report", "gamma_summary")
"""The tables `ifmsan report` always writes, as <name>.csv and <name>.md."""
EXTRACT_KEYS: tuple[str, ...] = ("model",)
"""The config keys extraction uses (model name, weights, mean file, preprocessing), and train_mini when the weights are
trained by the workflow; each image's own entry reaches its job as options (image_args), the device as --device."""
COMPUTE_KEYS: tuple[str, ...] = ("windows", "batch_size", "threads", "device")
"""What every sweep-stage output (an image job's sweeps, chains and controller check; the attacks) uses besides
extraction's keys. Not knobs, noise_scales, seed or chains: a sweep records its knob, values, seed and chain itself,
and the image rule passes them as options, so editing one reruns the image jobs (their params) but not the attacks of
other knobs (workflow/rules/common.smk, attack_sweeps_key). Not images or gammas: adding an image reruns nothing else."""


def _digest(values: Mapping[str, Any]) -> str:
    """16 hex digits of the sha256 of `values` as sorted JSON."""
    import hashlib
    import json

    return hashlib.sha256(json.dumps(values, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _extract_inputs(config: Mapping[str, Any]) -> dict[str, Any]:
    """The config values extraction uses: the model entry, and the training settings of weights it trains."""
    model = config.get("model") or {}
    used = {key: config.get(key) for key in EXTRACT_KEYS}
    used["train_mini"] = (
        config.get("train_mini") if isinstance(model, Mapping) and model.get("weights") == "train" else None
    )
    return used


def extract_hash(config: Mapping[str, Any]) -> str:
    """A short hash of what extraction uses (EXTRACT_KEYS), recorded in IFM files as `extract_hash`: editing the
    windows, seed, batch size, knobs or gammas leaves it, and so the extract jobs, alone."""
    return _digest(_extract_inputs(config))


def config_hash(config: Mapping[str, Any]) -> str:
    """A short hash of what every sweep-stage job uses (extraction's keys and COMPUTE_KEYS), recorded in sweeps and
    attacks as `config_hash`: sweeps of one run share it, so a report refuses sweeps of different runs."""
    return _digest({**_extract_inputs(config), **{key: config.get(key) for key in COMPUTE_KEYS}})


ATTACK_TABLE = "attack_summary"
"""The table `ifmsan attack-report` writes (as .csv and .md) when the config has an attacks section."""


def attack_pairs(config: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    """(layer, knob) of every attack job, layers in the config's order: none when the attacks section is absent."""
    attacks = config.get("attacks") or {}
    return tuple((layer, knob) for layer in attacks.get("layers") or [] for knob in attacks.get("knobs") or [])


CERTIFY_TABLES: tuple[str, ...] = (
    "certificate.csv",
    "certify_attacks.csv",
    "certified_summary.csv",
    "certified_summary.md",
)
"""The tables `ifmsan certify-report` writes when the config has a certify section."""
BUDGETS: tuple[str, ...] = ("b1", "b2")
"""The attacker's budget B (the configured training images and epochs) and 2B: a verdict must survive both."""


def certify_attack_jobs(config: Mapping[str, Any]) -> tuple[tuple[str, str, str, str], ...]:
    """(layer, knob, setting, budget) of every certify attack job: hold_gaussian once per scale ("s<scale>", its windows
    the rows), a noise knob once ("scales", its scales the rows); each at budgets B and 2B."""
    certify = config.get("certify") or {}
    jobs = []
    for layer in certify.get("layers") or []:
        for knob in certify.get("knobs") or []:
            settings = (
                [f"s{float(s):g}" for s in certify.get("scales") or []] if knob == "hold_gaussian" else ["scales"]
            )
            jobs += [(layer, knob, setting, budget) for setting in settings for budget in BUDGETS]
    return tuple(jobs)


def certify_figure_names(config: Mapping[str, Any]) -> list[str]:
    """certificate_<layer> for each certified layer."""
    return [f"certificate_{layer}" for layer in (config.get("certify") or {}).get("layers") or []]


def attack_figure_names(pairs: Iterable[tuple[str, str]]) -> list[str]:
    """frontier_<layer> once per layer (first-seen order), then reconstructions_<layer>_<knob> per attack.

    Layer and knob names become file names, so each must be a safe id (ifmsan.steps.io.check_id).
    """
    from ifmsan.steps.io import check_id

    pairs = list(dict.fromkeys(pairs))
    for layer, knob in pairs:
        check_id(layer, name="layer name (part of a figure file name)")
        check_id(knob, name="knob name (part of a figure file name)")
    layers = list(dict.fromkeys(layer for layer, _ in pairs))
    return [f"frontier_{layer}" for layer in layers] + [f"reconstructions_{layer}_{knob}" for layer, knob in pairs]


class Sweep(NamedTuple):
    """One swept curve as far as planning cares: its layer, its knob and whether earlier layers were pre-sanitized."""

    layer: str
    knob: str
    chained: bool


class Plan(NamedTuple):
    """Everything one validated config makes the workflow produce, per image where it says so."""

    layers: tuple[str, ...]
    """The IFM layers swept with every knob: the config's list, else every IFM layer of the model."""
    knobs: tuple[str, ...]
    chains: tuple[tuple[str, str], ...]
    """(layer, steps) of each chain sweep."""
    baseline_layers: tuple[str, ...]
    """Chained layers whose unchained nonzero_mean sweep is Table 2's first row (and Figure 5's reference)."""
    figures: tuple[str, ...]
    """Figure names per image (each written as .png and .pdf)."""
    tables: tuple[str, ...]
    """Table file names (name.ext) of the whole run."""
    notebooks: tuple[str, ...]
    config_hash: str
    """config_hash(config): the provenance of every sweep-stage output (sweeps, chains, controller, attacks)."""
    extract_hash: str = ""
    """extract_hash(config): the provenance of the IFM files, which sweeps carry on."""
    attacks: tuple[tuple[str, str], ...] = ()
    """(layer, knob) of each attack job (attack_pairs)."""
    attack_figures: tuple[str, ...] = ()
    """Figure names of the attack stage (each written as .png and .pdf)."""
    certify_layers: tuple[str, ...] = ()
    """Layers of the certify section (one calibration, one map per image, one figure each)."""
    certify_attacks: tuple[tuple[str, str, str, str], ...] = ()
    """(layer, knob, setting, budget) of each certify attack job (certify_attack_jobs)."""
    certify_figures: tuple[str, ...] = ()
    """Figure names of the certify stage (each written as .png and .pdf)."""


def figure_names(
    *, sweeps: Iterable[Sweep], layer_order: Sequence[str] | None = None, one_parameter: bool = True
) -> list[str]:
    """The figures the sweeps of one image allow, in drawing order; `ifmsan figures` and the workflow both ask here.

    figure2: pool5 with knobs first and nonzero_mean; figure4: pool5 and fc6 (nonzero_mean); figure5: pool5 plain and
    chained; heatmap (all plain sweeps over one parameter) and effsan: any unchained nonzero_mean sweep;
    knob_coverage_<layer>: each layer with two knobs or more, in layer order.
    """
    from ifmsan.report.curves import layer_ranks

    seen = list(dict.fromkeys(sweeps))
    have = set(seen)
    plain = any(s.knob == PLAIN and not s.chained for s in have)
    wanted = {
        "figure2": {Sweep("pool5", "first", False), Sweep("pool5", PLAIN, False)} <= have,
        "figure4": {Sweep("pool5", PLAIN, False), Sweep("fc6", PLAIN, False)} <= have,
        "figure5": {Sweep("pool5", PLAIN, False), Sweep("pool5", PLAIN, True)} <= have,
        "heatmap": plain and one_parameter,
        "effsan": plain,
    }
    knobs_per_layer: dict[str, set[str]] = {}
    for s in seen:
        if not s.chained:
            knobs_per_layer.setdefault(s.layer, set()).add(s.knob)
    ranks = layer_ranks(knobs_per_layer, layer_order=layer_order)
    coverage = [
        f"knob_coverage_{layer}"
        for layer in sorted(knobs_per_layer, key=ranks.__getitem__)
        if len(knobs_per_layer[layer]) >= 2
    ]
    return [name for name, possible in wanted.items() if possible] + coverage


def table_names(*, chains: bool, n_images: int) -> list[str]:
    """The files `ifmsan report` writes: Table 1, the γ reports, Table 2 with chains, per-image rows for 2+ images."""
    names = [*TABLES, *(["table2"] if chains else [])]
    files = [f"{name}.{ext}" for name in names for ext in ("csv", "md")]
    return files + (["table1_per_image.csv"] if n_images > 1 else [])


def config_sweeps(config: Mapping[str, Any], layers: Sequence[str]) -> list[Sweep]:
    """Every curve one image's sweeps hold under this config: layers x knobs, each chain, and the chains' baselines."""
    chained = [chain["layer"] for chain in config["chains"]]
    plain = [Sweep(layer, knob, False) for layer in layers for knob in config["knobs"]]
    return list(
        dict.fromkeys(
            [
                *plain,
                *(Sweep(layer, PLAIN, False) for layer in chained),
                *(Sweep(layer, PLAIN, True) for layer in chained),
            ]
        )
    )


def plan(config: Mapping[str, Any]) -> Plan:
    """What a validated config (defaults filled in) makes the workflow produce; the model is built at most once."""
    from ifmsan.workflow.configcheck import model_info

    layers = tuple(config["layers"] or model_info(config["model"]["name"]).layers)
    chains = tuple((chain["layer"], chain["steps"]) for chain in config["chains"])
    return Plan(
        layers=layers,
        knobs=tuple(config["knobs"]),
        chains=chains,
        baseline_layers=tuple(sorted({layer for layer, _ in chains})),
        figures=tuple(figure_names(sweeps=config_sweeps(config, layers), layer_order=layers)),
        tables=tuple(table_names(chains=bool(chains), n_images=len(config["images"]))),
        notebooks=NOTEBOOKS
        + ((ATTACK_NOTEBOOK,) if attack_pairs(config) else ())
        + ((CERTIFY_NOTEBOOK,) if (config.get("certify") or {}).get("layers") else ()),
        config_hash=config_hash(config),
        extract_hash=extract_hash(config),
        attacks=attack_pairs(config),
        attack_figures=tuple(attack_figure_names(attack_pairs(config))),
        certify_layers=tuple((config.get("certify") or {}).get("layers") or []),
        certify_attacks=certify_attack_jobs(config),
        certify_figures=tuple(certify_figure_names(config)),
    )


def planned_jobs(config: Mapping[str, Any]) -> dict[str, int]:
    """Jobs per rule that `snakemake` plans for a validated config with its defaults filled in (the same
    counts as `snakemake -n --quiet rules`, `all` included; tests/test_workflow.py checks them against dry runs), read
    off plan(): a 1000-image DAG is sized without a Snakemake dry run (docs/scaling.md)."""
    from ifmsan.workflow.paths import converted_weights_path, image_file, is_download, is_url

    the_plan = plan(config)
    images = config["images"]
    n = len(images)
    model = config["model"]
    downloads = {image_file(image) for image in images if is_url(image["source"])}
    jobs = {
        "fetch_weights": int(is_download(model.get("weights"))),
        "convert_weights": int(converted_weights_path(model) is not None),
        "fetch_mean_file": int(is_download(model.get("mean_file"))),
        "train_mini": int(model.get("weights") == "train"),
        "fetch_image": len(downloads),
        "image": n,
        "tables": 1,
        "figures": n if the_plan.figures else 0,
        "notebook": len(the_plan.notebooks),
        "attack_sweeps_key": len(the_plan.attacks),
        "attack": len(the_plan.attacks),
        "attack_doubled": len(the_plan.attacks),
        "attack_report": int(bool(the_plan.attacks)),
        "calibrate": len(the_plan.certify_layers),
        "certify_maps": n * len(the_plan.certify_layers),
        "certify_attack": len(the_plan.certify_attacks),
        "certify_report": int(bool(the_plan.certify_layers)),
        "all": 1,
    }
    return {rule: count for rule, count in jobs.items() if count}


__all__ = [
    "ATTACK_TABLE",
    "BUDGETS",
    "CERTIFY_NOTEBOOK",
    "CERTIFY_TABLES",
    "COMPUTE_KEYS",
    "EXTRACT_KEYS",
    "NOTEBOOKS",
    "PLAIN",
    "TABLES",
    "Plan",
    "Sweep",
    "attack_figure_names",
    "attack_pairs",
    "certify_attack_jobs",
    "certify_figure_names",
    "config_hash",
    "config_sweeps",
    "extract_hash",
    "figure_names",
    "plan",
    "planned_jobs",
    "table_names",
]
