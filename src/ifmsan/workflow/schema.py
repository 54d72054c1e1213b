"""The workflow config's JSON schema: loaded, its defaults filled in, and its violations as one readable line each."""

from __future__ import annotations

import copy
import difflib
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

SCHEMA_FILE = Path(__file__).resolve().parents[3] / "workflow" / "schemas" / "config.schema.yaml"
"""The schema in the checkout ifmsan is installed from (editable); schema_file() looks in the working directory too."""


def schema_file() -> Path:
    """The checkout's schema, else workflow/schemas/config.schema.yaml under the working directory."""
    for path in (SCHEMA_FILE, Path("workflow") / "schemas" / "config.schema.yaml"):
        if path.is_file():
            return path
    raise FileNotFoundError(
        f"the workflow schema is neither at {SCHEMA_FILE} nor at workflow/schemas/config.schema.yaml in "
        f"{os.getcwd()}; run this from the ifmsan checkout"
    )


def load_schema(path: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """The workflow's YAML schema as a dict (schema_file() when no path is given)."""
    import yaml

    with open(schema_file() if path is None else path) as handle:
        schema: dict[str, Any] = yaml.safe_load(handle)
    return schema


def with_defaults(config: Mapping[str, Any], schema: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of `config` with the schema's defaults filled in, as Snakemake's validate(config, schema) does."""
    import jsonschema

    base = jsonschema.validators.validator_for(schema)
    check_properties = base.VALIDATORS["properties"]

    def set_defaults(validator: Any, properties: Mapping[str, Any], instance: Any, subschema: Any) -> Iterator[Any]:
        if isinstance(instance, dict):
            for name, item in properties.items():
                if isinstance(item, Mapping) and "default" in item:
                    instance.setdefault(name, copy.deepcopy(item["default"]))
        yield from check_properties(validator, properties, instance, subschema)

    filled = copy.deepcopy(dict(config))
    for _ in jsonschema.validators.extend(base, {"properties": set_defaults})(schema).iter_errors(filled):
        pass  # validity is schema_problems' business: this only fills in
    return filled


def key_path(parts: Iterable[str | int]) -> str:
    """images[2].target from ('images', 2, 'target'), for messages."""
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "config"


def _entry_message(where: str, error: Any) -> str:
    """A weights or mean_file entry that fits none of its forms: what it is and which forms are allowed."""
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
        return _entry_message(where, error)
    if error.validator == "required" and where.startswith("images[") and "'sha256'" in error.message:
        source = error.instance.get("source")
        return f"{where}.sha256: missing for the URL {source!r}; a downloaded image must name its sha256"
    if (
        error.validator == "type"
        and isinstance(error.instance, float)
        and "integer" in (error.validator_value if isinstance(error.validator_value, list) else [error.validator_value])
    ):
        whole = f" (write {int(error.instance)})" if error.instance.is_integer() else ""
        return f"{where}: {error.instance!r} is not an integer{whole}; the value must be a whole number"
    description = schema.get("description")
    expected = f" (expected: {' '.join(str(description).split())})" if description else ""
    if (
        error.validator == "contains"
        and isinstance(error.validator_value, Mapping)
        and "const" in error.validator_value
    ):
        return f"{where}: {error.instance!r} lacks {error.validator_value['const']}{expected}"
    return f"{where}: {error.message}{expected}"


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


MAX_CONFIG_VALUES = 100_000
"""Most values (keys, items, scalars, and string characters / 100) a config may expand to: the largest shipped one
(config/imagenet1000.yaml) has about 12000; YAML aliases can make a 1 kB file expand to 10**9 (a "billion laughs")."""


def expanded_size(value: Any, *, limit: int = MAX_CONFIG_VALUES) -> int:
    """How many values `value` holds with every shared (aliased) part counted each time it is used, up to `limit`+1.

    Shared parts are sized once (memoized by identity), so this takes time in the unique values, not the expansion.
    """
    memo: dict[int, int] = {}

    def size(item: Any, depth: int) -> int:
        if depth > 100:
            return limit + 1  # deeper than any config; refused as too large
        if isinstance(item, str):
            return 1 + len(item) // 100
        if not isinstance(item, (Mapping, list)):
            return 1
        if id(item) in memo:
            return memo[id(item)]
        children = [*item.keys(), *item.values()] if isinstance(item, Mapping) else item
        total = 1
        for child in children:
            total = min(total + size(child, depth + 1), limit + 1)
            if total > limit:
                break
        memo[id(item)] = total
        return total

    return size(value, 0)


def yaml_aliases(path: str | os.PathLike[str]) -> list[str]:
    """'<file>:<line>: *name' for each alias in a YAML file, read as events (no value is built); [] if unreadable."""
    import yaml

    try:
        with open(path, encoding="utf-8") as handle:
            return [
                f"{path}:{event.start_mark.line + 1}: *{event.anchor}"
                for event in yaml.parse(handle)
                if isinstance(event, yaml.AliasEvent) and event.start_mark is not None
            ]
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return []


def yaml_duplicate_keys(path: str | os.PathLike[str]) -> list[str]:
    """'<file>:<line>: key 'run' given twice (first at line 3)' for each repeated mapping key in a YAML file.

    YAML loaders keep the last of two equal keys without a word; the node graph is walked once (aliases shared).
    """
    import yaml

    try:
        with open(path, encoding="utf-8") as handle:
            root = yaml.compose(handle)
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return []
    found: list[tuple[int, str]] = []
    seen: set[int] = set()
    stack = [root] if root is not None else []
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            first: dict[str, int] = {}
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode):
                    line = key.start_mark.line + 1
                    if key.value in first:
                        found.append(
                            (line, f"{path}:{line}: key {key.value!r} given twice (first at line {first[key.value]})")
                        )
                    first.setdefault(key.value, line)
                stack.extend((key, value))
        elif isinstance(node, yaml.SequenceNode):
            stack.extend(node.value)
    return [text for _, text in sorted(found)]


def _snakemake_configfiles() -> list[str]:
    """The config files of the Snakemake workflow whose Snakefile calls check_schema (its global `workflow`), if any."""
    import sys

    frame: Any = sys._getframe(1)
    for _ in range(4):
        if frame is None:
            break
        workflow = frame.f_globals.get("workflow")
        files = getattr(workflow, "configfiles", None)
        if isinstance(files, list):
            return [str(f) for f in files]
        frame = frame.f_back
    return []


def size_problems(config: Mapping[str, Any], files: Iterable[str | os.PathLike[str]] = ()) -> list[str]:
    """One line when the config expands past MAX_CONFIG_VALUES (YAML aliases), naming the files and their aliases."""
    if expanded_size(config) <= MAX_CONFIG_VALUES:
        return []
    aliases = list(dict.fromkeys(alias for path in files for alias in yaml_aliases(path)))
    where = f" in {', '.join(str(f) for f in files)}" if files else ""
    shown = f" (aliases: {', '.join(aliases[:5])}{', ...' if len(aliases) > 5 else ''})" if aliases else ""
    return [
        f"config{where}: expands to more than {MAX_CONFIG_VALUES} values, which no run needs: YAML anchors and aliases "
        f"(&name, *name) repeat a value at every use and can multiply it without end{shown}; write the values out"
    ]


def _strict_validator(schema: Mapping[str, Any]) -> Any:
    """The schema's validator class, with 'integer' meaning an int: jsonschema takes 20.0 as an integer, the jobs not."""
    import jsonschema

    base = jsonschema.validators.validator_for(schema)
    checker = base.TYPE_CHECKER.redefine(
        "integer", lambda _checker, value: isinstance(value, int) and not isinstance(value, bool)
    )
    return jsonschema.validators.extend(base, type_checker=checker)


def schema_problems(
    config: Mapping[str, Any], schema: Mapping[str, Any], *, files: Iterable[str | os.PathLike[str]] = ()
) -> list[str]:
    """Every schema violation of `config` as one readable line each, in config order.

    A config that expands past MAX_CONFIG_VALUES is refused first, in time linear in its unique values: walking its
    expansion would take minutes.
    """
    files = list(files)
    if too_large := size_problems(config, files):
        return too_large
    if repeated := [problem for path in files for problem in yaml_duplicate_keys(path)]:
        return [f"{problem}; a YAML loader keeps only the last value: give each key once" for problem in repeated]
    if control := _control_characters(config):
        return control

    errors = sorted(
        _strict_validator(schema)(schema).iter_errors(config), key=lambda e: [str(p) for p in e.absolute_path]
    )
    return list(dict.fromkeys(_schema_message(error) for error in errors))


def raise_problems(problems: list[str]) -> None:
    """One ValueError for every problem, one per line; nothing when there is none."""
    if problems:
        raise ValueError(
            f"invalid config ({len(problems)} problem{'s' * (len(problems) > 1)}):\n  - " + "\n  - ".join(problems)
        )


def check_schema(
    config: Mapping[str, Any],
    schema: Mapping[str, Any] | str | os.PathLike[str],
    *,
    files: Iterable[str | os.PathLike[str]] | None = None,
) -> None:
    """Raise one ValueError naming every key that breaks the schema, its value and what is allowed.

    files: the config files, named when the config is too large; None: the calling Snakefile's configfiles.
    """
    loaded = schema if isinstance(schema, Mapping) else load_schema(schema)
    sources = _snakemake_configfiles() if files is None else list(files)
    raise_problems(schema_problems(config, loaded, files=sources))


__all__ = [
    "MAX_CONFIG_VALUES",
    "SCHEMA_FILE",
    "check_schema",
    "expanded_size",
    "key_path",
    "load_schema",
    "raise_problems",
    "schema_file",
    "schema_problems",
    "size_problems",
    "with_defaults",
    "yaml_aliases",
    "yaml_duplicate_keys",
]
