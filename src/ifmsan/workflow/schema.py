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


def schema_problems(config: Mapping[str, Any], schema: Mapping[str, Any]) -> list[str]:
    """Every schema violation of `config` as one readable line each, in config order."""
    import jsonschema

    if control := _control_characters(config):
        return control

    validator_class = jsonschema.validators.validator_for(schema)
    errors = sorted(validator_class(schema).iter_errors(config), key=lambda e: [str(p) for p in e.absolute_path])
    return list(dict.fromkeys(_schema_message(error) for error in errors))


def raise_problems(problems: list[str]) -> None:
    """One ValueError for every problem, one per line; nothing when there is none."""
    if problems:
        raise ValueError(
            f"invalid config ({len(problems)} problem{'s' * (len(problems) > 1)}):\n  - " + "\n  - ".join(problems)
        )


def check_schema(config: Mapping[str, Any], schema: Mapping[str, Any] | str | os.PathLike[str]) -> None:
    """Raise one ValueError naming every key that breaks the schema, its value and what is allowed."""
    raise_problems(schema_problems(config, schema if isinstance(schema, Mapping) else load_schema(schema)))


__all__ = [
    "SCHEMA_FILE",
    "check_schema",
    "key_path",
    "load_schema",
    "raise_problems",
    "schema_file",
    "schema_problems",
    "with_defaults",
]
