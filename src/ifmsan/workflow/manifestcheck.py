"""The checks of `python -m ifmsan.workflow.manifest` around the config it writes: the base config read strictly, and
the generated config checked as `snakemake -n` would check it, each problem naming where it comes from."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from typing import Any

STRICT_INTEGER = re.compile(r"-?[0-9]+")
"""An integer as a manifest writes it: ASCII digits, optionally a minus (not 1_0, +1, ' 1', or other scripts' digits,
all of which Python's int() accepts)."""


def strict_int(text: str, *, where: str, column: str, expected: str) -> int:
    """`text` as an integer when it is only ASCII digits (with an optional minus), else a ValueError naming `where`."""
    if not STRICT_INTEGER.fullmatch(text):
        raise ValueError(f"{where}: {column} {text!r} is not an integer; expected {expected}")
    return int(text)


def load_base(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The base config: a YAML mapping without anchors or aliases; a ValueError names the file (and the line)."""
    import yaml

    name = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except IsADirectoryError:
        raise ValueError(f"--base {name} is a directory; expected a workflow config (YAML file)") from None
    except OSError as exc:
        raise ValueError(f"--base {name}: cannot read it: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ValueError(f"--base {name}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    try:
        for event in yaml.parse(text, Loader=yaml.SafeLoader):  # events: aliases are not expanded here
            if isinstance(event, yaml.AliasEvent):
                line = f" line {event.start_mark.line + 1}" if event.start_mark is not None else ""
                raise ValueError(
                    f"{name}{line}: YAML alias *{event.anchor}; a config made from a manifest is written out in full, "
                    "so its base may not use anchors and aliases (write the value out)"
                )
        base = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{name} line {mark.line + 1}" if mark is not None else name
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ValueError(f"{where}: not valid YAML: {problem}") from None
    if not isinstance(base, Mapping):
        raise ValueError(f"{name}: not a YAML mapping (a workflow config) but {type(base).__name__}")
    from ifmsan.workflow.schema import yaml_duplicate_keys

    if repeated := yaml_duplicate_keys(path):
        raise ValueError(f"{repeated[0]}; a YAML loader keeps only the last value: give each key once")
    return dict(base)


def _origin(problem: str, *, lines: Sequence[int], manifest: str, base: str, options: Mapping[str, str]) -> str:
    """A config problem prefixed with where its value came from: the manifest line, an option, or the base file."""
    image = re.match(r"images\[([0-9]+)\]", problem)
    if image and int(image[1]) < len(lines):
        return f"{manifest} line {lines[int(image[1])]}: {problem}"
    key = re.match(r"[A-Za-z_]+", problem)
    if key and key[0] == "images":
        return f"{manifest}: {problem}"
    if key and key[0] in options:
        return f"{options[key[0]]}: {problem}"
    return f"{base}: {problem}"


def generated_config_problems(
    config: Mapping[str, Any],
    *,
    lines: Sequence[int],
    manifest: str | os.PathLike[str],
    base: str | os.PathLike[str],
    options: Mapping[str, str],
) -> list[str]:
    """What the workflow's schema and its plan-time checks (ifmsan.workflow.configcheck, without reading files) refuse
    in a config made from a manifest: one line each, naming the manifest line of images[i] (`lines[i]`), the option
    that set a key (`options`: key -> option text) or else the base file."""
    from ifmsan.workflow.configcheck import config_problems
    from ifmsan.workflow.schema import load_schema, schema_problems, with_defaults

    schema = load_schema()
    problems = schema_problems(config, schema)
    if not problems:  # the plan-time checks expect a schema-valid config, as the Snakefile runs them
        problems = config_problems(with_defaults(config, schema), files=False)
    where = {"manifest": os.fspath(manifest), "base": os.fspath(base)}
    return [_origin(problem, lines=lines, options=options, **where) for problem in problems]


__all__ = ["STRICT_INTEGER", "generated_config_problems", "load_base", "strict_int"]
