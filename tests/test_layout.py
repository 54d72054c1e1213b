"""The package's layout: users' imports keep working, no module imports another's private name, no source file is
over 400 lines, and the subpackages import in one direction."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

import ifmsan

SRC = Path(ifmsan.__file__).resolve().parent
MAX_LINES = 400


@pytest.mark.parametrize("name", ifmsan.__all__)
def test_every_exported_name_resolves(name: str) -> None:
    assert getattr(ifmsan, name) is not None


def test_old_module_names_are_the_same_module_objects() -> None:
    import ifmsan.caffe
    import ifmsan.io
    import ifmsan.minidata
    from ifmsan.io import write_netcdf

    assert ifmsan.io is importlib.import_module("ifmsan.steps.io")
    assert ifmsan.minidata is importlib.import_module("ifmsan.steps.minidata")
    assert ifmsan.caffe is importlib.import_module("ifmsan.models.caffe")
    assert write_netcdf is ifmsan.io.write_netcdf and callable(ifmsan.caffe.read_caffemodel)
    assert ifmsan.minidata.CLASS_NAMES[0] == "circle"
    assert ifmsan.gamma is importlib.import_module("ifmsan.core.controller")
    assert ifmsan.metrics is importlib.import_module("ifmsan.core.metrics")
    assert ifmsan.GammaSanitizer is ifmsan.gamma.GammaSanitizer


def test_the_cli_entry_point_is_where_pyproject_says() -> None:
    from ifmsan.cli import build_parser, console

    assert callable(console)
    verbs = build_parser()._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    assert {"extract", "sweep", "gamma", "report", "figures", "attack", "sanitize"} <= set(verbs)


def modules() -> list[Path]:
    return sorted(SRC.rglob("*.py"))


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_names(path: Path) -> list[tuple[str, str]]:
    """(module, name) of every `from ifmsan... import name` in a file, at any depth."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("ifmsan"):
            found += [(node.module, alias.name) for alias in node.names]
    return found


def test_no_module_imports_another_modules_private_name() -> None:
    offences = [
        f"{path.relative_to(SRC)}: from {module} import {name}"
        for path in modules()
        for module, name in imported_names(path)
        if name.startswith("_") and module != module_name(path) and not name.startswith("__")
    ]
    assert offences == []


def test_no_source_file_is_over_400_lines() -> None:
    long = {str(p.relative_to(SRC)): n for p in modules() if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert long == {}


def test_core_and_shared_do_not_import_the_layers_above_them() -> None:
    above = {"core": ("ifmsan.steps", "ifmsan.report", "ifmsan.workflow", "ifmsan.attacks", "ifmsan.commands"),
             "_shared": ("ifmsan.core", "ifmsan.models", "ifmsan.steps", "ifmsan.report", "ifmsan.workflow",
                         "ifmsan.attacks", "ifmsan.commands")}  # fmt: skip
    offences = [
        f"{path.relative_to(SRC)} imports {module}"
        for package, banned in above.items()
        for path in sorted((SRC / package).glob("*.py"))
        for module, _ in imported_names(path)
        if module.startswith(banned)
    ]
    assert offences == []
