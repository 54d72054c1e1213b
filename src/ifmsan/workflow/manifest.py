"""Workflow configs from an image manifest: a tab-separated list of downloadable images with class and checksum.

The manifest is the one of the ImageNet sample images (`data/imagenet-samples/MANIFEST.tsv`:
one image per class), with the columns file, class_index, wnid, label, sha256, bytes and url; file, class_index,
sha256 and url are required, the others are kept if present. `config_from_manifest` turns it into the `images` list
of a workflow config (id = the file name without its extension, made a safe id; source = url; sha256; target =
class_index; group = a coarse class group) on top of a base config that gives everything else. The manifest is read
when the config is made, never at run time: the config holds the URLs and checksums themselves.

Regenerate the shipped 1000-image config with

    python -m ifmsan.workflow.manifest MANIFEST.tsv --base config/imagenet16.yaml --out config/imagenet1000.yaml
"""

from __future__ import annotations

import argparse
import csv
import os
import re
import sys
import textwrap
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from ifmsan.workflow.manifestcheck import generated_config_problems, load_base, strict_int

REQUIRED_COLUMNS: tuple[str, ...] = ("file", "class_index", "sha256", "url")
"""Columns a manifest must have (in any order, others allowed)."""
OPTIONAL_COLUMNS: tuple[str, ...] = ("wnid", "label", "bytes")
"""Columns read when present."""
IMAGENET_CLASSES = 1000

IMAGENET_GROUPS: tuple[tuple[str, tuple[tuple[int, int], ...]], ...] = (
    ("animal", ((0, 397),)),
    ("artifact", ((398, 922), (999, 999))),
    ("food", ((923, 969),)),
    ("nature", ((970, 980), (984, 998))),
    ("person", ((981, 983),)),
)
"""A coarse grouping of the 1000 ImageNet-1k classes by class index (inclusive ranges), checked against the labels:
animal 0-397 (tench .. puffer: fish, birds, amphibians, reptiles, invertebrates, mammals); artifact 398-922
(abacus .. menu: man-made objects, vehicles, buildings, clothing, signs) and 999 (toilet tissue); food 923-969
(plate, guacamole .. eggnog: dishes, fruit, vegetables, drinks, and hay, which WordNet files under food); nature
970-980 (alp .. volcano: landscapes and geological formations) and 984-998 (rapeseed .. ear: plants, flowers,
fungi); person 981-983 (ballplayer, groom, scuba diver). Class index order is WordNet id order, so each range is a
run of related synsets; the borders follow the labels, not a published taxonomy."""

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_URL = re.compile(r"^(https?|file)://\S+$")
_QUOTES = re.compile(r"['\u2019`\"]")
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")  # what ifmsan._shared.ids.SAFE_ID_PATTERN allows after the first character


class ManifestRow(NamedTuple):
    """One image of a manifest."""

    file: str
    class_index: int
    sha256: str
    url: str
    wnid: str = ""
    label: str = ""
    bytes: int | None = None
    line: int = 0
    """Line number in the manifest (the header is line 1), for messages."""


def imagenet_group(class_index: int) -> str:
    """The coarse class group (IMAGENET_GROUPS) of an ImageNet-1k class index, or a ValueError outside 0..999."""
    for name, ranges in IMAGENET_GROUPS:
        if any(low <= class_index <= high for low, high in ranges):
            return name
    raise ValueError(f"class index {class_index!r} is not an ImageNet-1k class; allowed: 0..{IMAGENET_CLASSES - 1}")


def image_id(file: str) -> str:
    """The config id of a manifest file: its name without the extension, quotes dropped and any other character
    that a safe id (ifmsan.steps.io.check_id) does not allow replaced by '_' ("n03590841_jack-o'-lantern.JPEG" ->
    "n03590841_jack-o-lantern")."""
    from ifmsan.steps.io import check_id

    stem = Path(file).stem
    return check_id(_UNSAFE.sub("_", _QUOTES.sub("", stem)), name=f"image id made from file {file!r}")


def _where(path: str | os.PathLike[str], line: int) -> str:
    return f"{os.fspath(path)} line {line}"


def read_manifest(path: str | os.PathLike[str], *, classes: int = IMAGENET_CLASSES) -> list[ManifestRow]:
    """The rows of a tab-separated manifest with a header line, each checked; a ValueError names the file, the line,
    the column and what is allowed: a missing column, a row with too few or too many fields, a sha256 that is not 64
    lowercase hex digits, a class_index that is not an integer (ASCII digits only: 1_0 is none) in 0..classes-1, a url
    that is not http(s):// or file:// (without spaces), an empty file name, a file whose id (image_id) is not unique."""
    with open(path, newline="", encoding="utf-8") as handle:
        lines = list(csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))
    if not lines or not any(cell.strip() for cell in lines[0]):
        raise ValueError(
            f"{os.fspath(path)}: empty manifest; expected a tab-separated header line with the columns "
            + ", ".join(REQUIRED_COLUMNS)
        )
    header = [cell.strip() for cell in lines[0]]
    if missing := [column for column in REQUIRED_COLUMNS if column not in header]:
        raise ValueError(
            f"{os.fspath(path)}: missing column{'s' * (len(missing) > 1)} {', '.join(missing)}; the header has "
            f"{', '.join(map(repr, header))}, expected the tab-separated columns {', '.join(REQUIRED_COLUMNS)} "
            f"(and optionally {', '.join(OPTIONAL_COLUMNS)})"
        )
    if twice := sorted({c for c in header if header.count(c) > 1}):
        raise ValueError(f"{os.fspath(path)}: column {', '.join(twice)} appears twice in the header")
    rows: list[ManifestRow] = []
    seen: dict[str, int] = {}
    for number, cells in enumerate(lines[1:], start=2):
        if not any(cell.strip() for cell in cells):
            continue  # blank line
        where = _where(path, number)
        if len(cells) != len(header):
            raise ValueError(f"{where}: {len(cells)} tab-separated fields, but the header has {len(header)}")
        record = {column: cell.strip() for column, cell in zip(header, cells, strict=True)}
        rows.append(_row(record, where=where, line=number, classes=classes))
        ident = _image_id_at(rows[-1].file, where)
        if ident in seen:
            raise ValueError(
                f"{where}: file {rows[-1].file!r} gives the image id {ident!r}, which line {seen[ident]} gives too; "
                "every image id must be unique"
            )
        seen[ident] = number
    if not rows:
        raise ValueError(f"{os.fspath(path)}: no images below the header")
    return rows


def _image_id_at(file: str, where: str) -> str:
    """image_id with the manifest line in its error."""
    try:
        return image_id(file)
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None


def _row(record: Mapping[str, str], *, where: str, line: int, classes: int) -> ManifestRow:
    """One checked row."""
    if not record["file"]:
        raise ValueError(f"{where}: column file is empty; expected the image's file name")
    class_index = strict_int(record["class_index"], where=where, column="class_index", expected=f"0..{classes - 1}")
    if not 0 <= class_index < classes:
        raise ValueError(f"{where}: class_index {class_index} is out of range; expected 0..{classes - 1}")
    if not _SHA256.match(record["sha256"]):
        raise ValueError(f"{where}: sha256 {record['sha256']!r} is not 64 lowercase hexadecimal digits")
    if not _URL.match(record["url"]):
        raise ValueError(f"{where}: url {record['url']!r} is not an http(s):// or file:// URL without spaces")
    size = record.get("bytes", "")
    if size and (not size.isascii() or not size.isdigit()):
        raise ValueError(f"{where}: bytes {size!r} is not a non-negative integer (ASCII digits only)")
    return ManifestRow(
        file=record["file"],
        class_index=class_index,
        sha256=record["sha256"],
        url=record["url"],
        wnid=record.get("wnid", ""),
        label=record.get("label", ""),
        bytes=int(size) if size else None,
        line=line,
    )


def config_from_manifest(
    manifest: str | os.PathLike[str] | Sequence[ManifestRow],
    *,
    base: Mapping[str, Any],
    run: str | None = None,
    groups: Callable[[int], str] | None = imagenet_group,
    classes: int = IMAGENET_CLASSES,
    **overrides: Any,
) -> dict[str, Any]:
    """A workflow config: `base` (model, layers, windows, ...; its own images are dropped) with the manifest's
    images, in manifest order, as {id, source: url, sha256, target: class_index[, group: groups(class_index)]};
    `run` and keyword `overrides` (knobs=[...], chains=[], ...) replace top-level keys. Keys keep base's order."""
    rows = read_manifest(manifest, classes=classes) if isinstance(manifest, str | os.PathLike) else list(manifest)
    images = []
    for row in rows:
        image: dict[str, Any] = {
            "id": image_id(row.file),
            "source": row.url,
            "sha256": row.sha256,
            "target": row.class_index,
        }
        if groups is not None:
            image["group"] = groups(row.class_index)
        images.append(image)
    config: dict[str, Any] = {"run": run} if run is not None and "run" not in base else {}
    config.update(base)
    config["images"] = images
    if run is not None:
        config["run"] = run
    config.update(overrides)
    return config


# --- the YAML file ----------------------------------------------------------------------------------------------


CLUSTER_RULES: tuple[str, ...] = (
    "train_mini", "image", "attack", "attack_doubled", "calibrate", "certify_maps", "certify_attack",
)  # fmt: skip
"""The rules a cluster executor submits; the workflow's localrules (fetch_*, convert_weights, tables, figures, notebook,
the reports) run locally."""
PER_IMAGE_RULES: tuple[str, ...] = ("image", "fetch_image", "figures")
"""The rules with one job per image, listed first in the header."""


def header(config: Mapping[str, Any], *, command: str, configfile: str) -> str:
    """The comment block at the top of a generated config: what it is for, what it runs, how it was made."""
    from ifmsan.workflow.plan import plan, planned_jobs
    from ifmsan.workflow.schema import load_schema, with_defaults

    full = with_defaults(config, load_schema())
    jobs = planned_jobs(full)
    layers = plan(full).layers
    windows = full["windows"]
    step = "" if windows["step"] == 1 else f" step {windows['step']}"
    per_image = ", ".join(f"{jobs[r]} {r}" for r in PER_IMAGE_RULES if r in jobs)
    rest = ", ".join(f"{count} {rule}" for rule, count in jobs.items() if rule not in PER_IMAGE_RULES)
    n = len(full["images"])
    prefix = os.path.commonprefix([str(image["source"]) for image in full["images"]])
    shared = f" (all under {prefix[: prefix.rindex('/') + 1]})" if n > 1 and "://" in prefix else ""
    cluster = [rule for rule in CLUSTER_RULES if rule in jobs]
    paragraphs = [
        f"{n} ImageNet sample images (one per class, ground truth as target) through {full['model']['name']}: the "
        "paper's evaluation over many images, for the statistics of n*(gamma) over images and per class group in the "
        "gamma summary. For users with network access (the images, weights and mean file are downloaded and checked "
        "by checksum) and a cluster:",
        f"  snakemake --profile profiles/slurm --configfile {configfile}",
        f"It sweeps {len(layers)} layers ({', '.join(layers)}) with the knob{'s' * (len(full['knobs']) > 1)} "
        f"{', '.join(full['knobs'])}, {len(full['chains'])} chains, windows {windows['start']}..{windows['stop']}"
        f"{step}, gammas {', '.join(format(g, 'g') for g in full['gammas'])}, and plans about {sum(jobs.values())} "
        f"jobs: {per_image}; {rest}. With profiles/slurm {sum(jobs[rule] for rule in cluster)} of them "
        f"({', '.join(cluster)}) go to the cluster, one job per image with threads x workers CPUs each; the others run "
        "where snakemake runs.",
        f"Images: the manifest's url{shared}, sha256 and class_index (target); id = the file name without its "
        "extension, quotes dropped (ifmsan.workflow.manifest.image_id).",
    ]
    if all("group" in image for image in full["images"]):
        ranges_text = "; ".join(
            f"{name} " + " and ".join(f"{low}-{high}" if low != high else str(low) for low, high in ranges)
            for name, ranges in IMAGENET_GROUPS
        )
        paragraphs.append(
            "group = a coarse class group by class index (ifmsan.workflow.manifest.IMAGENET_GROUPS; the borders follow the "
            f"labels, not a published taxonomy): {ranges_text}. The workflow's tables rule passes the groups to "
            "`ifmsan report --image-group ID=GROUP`, so the gamma summary has rows per group beside the rows over all "
            f"images (by hand: `ifmsan report ... --image-groups {configfile}`)."
        )
    paragraphs += ["Generated from the manifest; do not edit by hand. Regenerate with", f"  {command}"]
    lines = [
        line
        for paragraph in paragraphs
        for line in (
            [paragraph]
            if paragraph.startswith("  ")
            else textwrap.wrap(paragraph, width=116, break_on_hyphens=False, break_long_words=False)
        )
    ]
    return "".join(f"# {line}".rstrip() + "\n" for line in lines)


def _flow(value: Any) -> str:
    """One YAML value on one line (flow style)."""
    import yaml

    text: str = yaml.safe_dump(value, default_flow_style=True, sort_keys=False, width=1 << 30, allow_unicode=True)
    return text.removesuffix("\n...\n").strip()


def to_yaml(config: Mapping[str, Any], *, comment: str = "") -> str:
    """A config as readable YAML: the model block-style, one flow-style mapping per image, short lists flow-style."""
    import yaml

    parts = [comment]
    for key, value in config.items():
        if key == "images":
            parts.append("images:\n" + "".join(f"  - {_flow(image)}\n" for image in value))
        elif isinstance(value, Mapping) and any(isinstance(v, Mapping | list) for v in value.values()):
            parts.append(yaml.safe_dump({key: value}, default_flow_style=False, sort_keys=False, width=1 << 30))
        else:
            parts.append(f"{key}: {_flow(value)}\n")
    return "".join(parts)


def _display(path: str | os.PathLike[str]) -> str:
    """A path relative to the working directory when it lies below it, with forward slashes."""
    try:
        return Path(path).resolve().relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return Path(path).as_posix()


def main(argv: Sequence[str] | None = None) -> int:
    """python -m ifmsan.workflow.manifest MANIFEST.tsv --base BASE.yaml --out OUT.yaml: write a config from a manifest."""
    parser = argparse.ArgumentParser(
        prog="python -m ifmsan.workflow.manifest",
        description="Write a workflow config whose images are the rows of a tab-separated image manifest "
        "(file, class_index, sha256, url, ...) and whose other keys come from a base config.",
    )
    parser.add_argument("manifest", type=Path, help="the manifest (MANIFEST.tsv)")
    parser.add_argument("--base", type=Path, required=True, help="config giving model, layers, windows, gammas, ...")
    parser.add_argument("--out", type=Path, required=True, help="the config to write")
    parser.add_argument("--run", default=None, help="run name (default: the --out file name without .yaml)")
    parser.add_argument(
        "--knobs", nargs="+", default=["nonzero_mean"], help="knobs to sweep (default: nonzero_mean, the paper's)"
    )
    parser.add_argument("--keep-chains", action="store_true", help="keep the base's chains (default: no chains)")
    parser.add_argument(
        "--groups",
        choices=("imagenet", "none"),
        default="imagenet",
        help="set each image's group from its class index (ifmsan.workflow.manifest.IMAGENET_GROUPS), or none",
    )
    args = parser.parse_args(argv)
    prog = parser.prog
    run = args.run or args.out.name.removesuffix(".yaml").removesuffix(".yml")
    options = {"run": f"--run {args.run}" if args.run else f"run {run!r} (from --out {args.out})", "knobs": "--knobs"}
    try:
        if args.out.is_dir():
            raise ValueError(f"--out {args.out} is a directory; expected the path of the config file to write")
        base = load_base(args.base)
        overrides: dict[str, Any] = {"knobs": list(args.knobs)}
        if not args.keep_chains:
            overrides["chains"] = []
        rows = read_manifest(args.manifest)
        groups = imagenet_group if args.groups == "imagenet" else None
        config = config_from_manifest(rows, base=base, run=run, groups=groups, **overrides)
        lines = [row.line for row in rows]
        problems = generated_config_problems(
            config, lines=lines, manifest=args.manifest, base=args.base, options=options
        )
        if problems:
            raise ValueError(
                f"the config made from {args.manifest} and {args.base} would be refused by the workflow, nothing "
                f"written ({len(problems)} problem{'s' * (len(problems) > 1)}):\n  - " + "\n  - ".join(problems)
            )
    except (OSError, ValueError) as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    command = f"python -m ifmsan.workflow.manifest MANIFEST.tsv --base {_display(args.base)} --out {_display(args.out)}"
    if args.run:
        command += f" --run {args.run}"
    if args.knobs != ["nonzero_mean"]:
        command += " --knobs " + " ".join(args.knobs)
    if args.keep_chains:
        command += " --keep-chains"
    if args.groups != "imagenet":
        command += f" --groups {args.groups}"
    from ifmsan._shared.atomic import atomic_path

    try:
        text = to_yaml(config, comment=header(config, command=command, configfile=_display(args.out)))
        with atomic_path(args.out) as tmp:
            tmp.write_text(text, encoding="utf-8")
    except (OSError, ValueError) as exc:  # the schema, whose defaults the header counts with; the output
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {args.out}: {len(config['images'])} images", file=sys.stderr)
    return 0


__all__ = [
    "IMAGENET_GROUPS",
    "OPTIONAL_COLUMNS",
    "REQUIRED_COLUMNS",
    "ManifestRow",
    "config_from_manifest",
    "header",
    "image_id",
    "imagenet_group",
    "read_manifest",
    "to_yaml",
]

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
