"""docs/netcdf.md stays true: every dimension, variable and attribute of real IFM and sweep files (alexnet_mini,
made by the CLI in-process) is documented with its type, and every name documented as always present is there."""

from __future__ import annotations

import re
from pathlib import Path

import netCDF4
import numpy as np
import pytest
from PIL import Image

from ifmsan.cli import main
from ifmsan.steps import io

DOC = Path(__file__).resolve().parents[1] / "docs" / "netcdf.md"
MODEL = ["--model", "alexnet_mini"]
WORKFLOW_ATTRS = ["--attr", "config_hash=abc", "--attr", "extract_hash=e1", "--attr", "run=demo"]
ROW = re.compile(r"^\|\s*`(?P<name>[^`]+)`\s*\|(?P<cells>.*)\|\s*$")
ATTR_TYPES = {"str": (str,), "int": (np.int64,), "float": (np.float64,)}


def doc_tables() -> dict[tuple[str, str], dict[str, list[str]]]:
    """(file section, table) -> name -> the row's other cells, e.g. ("IFM file", "Attributes") -> {"p0": [...]}."""
    tables: dict[tuple[str, str], dict[str, list[str]]] = {}
    section = table = ""
    for line in DOC.read_text(encoding="utf-8").splitlines():
        if line.startswith("## "):
            section, table = line[3:].split(" (")[0].strip(), ""
        elif line.startswith("### "):
            table = line[4:].strip()
        elif (match := ROW.match(line)) and section and table:
            tables.setdefault((section, table), {})[match["name"]] = [c.strip() for c in match["cells"].split("|")]
    return tables


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """An IFM file and three sweeps of pool5 (a window knob, a noise knob, a chain), as a workflow run makes them."""
    root = tmp_path_factory.mktemp("docs")
    image = root / "img.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(image)
    ifms = root / "ifms.nc"
    sweep = ["sweep", *MODEL, "--ifms", str(ifms), "--layer", "pool5", "--values", "2:3", *WORKFLOW_ATTRS]
    assert (
        main(["extract", *MODEL, "--image", str(image), "--image-id", "img", "--out", str(ifms), *WORKFLOW_ATTRS]) == 0
    )
    assert main([*sweep, "--knob", "first", "laplace", "--scales", "0,0.5", "--out-dir", str(root / "sw")]) == 0
    assert main([*sweep, "--chain", "conv5@3", "--out", str(root / "chain.nc")]) == 0
    attack = root / "attack.nc"
    assert main([
        "attack", *MODEL, "--layer", "pool5", "--knob", "first", "--values", "3", "--n-train", "4", "--n-test", "4",
        "--epochs-adaptive", "1", "--epochs-inversion", "1", "--epochs-attribute", "1", "--resolution", "32",
        "--n-examples", "2", "--sweeps", str(root / "sw" / "first.nc"), "--out", str(attack), *WORKFLOW_ATTRS,
    ]) == 0  # fmt: skip
    return {
        "attack": attack,
        "ifms": ifms,
        "window": root / "sw" / "first.nc",
        "scale": root / "sw" / "laplace.nc",
        "chain": root / "chain.nc",
    }


def expand(name: str, layers: list[str]) -> re.Pattern[str]:
    """A documented name as a pattern: <layer> is one of the file's layers, <i> a number."""
    pattern = re.escape(name).replace(re.escape("<layer>"), "(?:" + "|".join(map(re.escape, layers)) + ")")
    return re.compile(pattern.replace(re.escape("<i>"), r"\d+") + "$")


def documented(names: dict[str, list[str]], actual: str, layers: list[str]) -> str | None:
    """The documented name that covers an actual name, or None."""
    return next((name for name in names if expand(name, layers).match(actual)), None)


def required(cells: list[str], kind: str) -> bool:
    """Whether a row's `present` cell says every file of this kind (window/scale sweep, CLI, workflow) has it."""
    present = cells[0]
    return present.startswith("always") or present in (
        "workflow runs",
        {"window": "window knobs", "scale": "noise knobs"}[kind],
    )


@pytest.mark.parametrize("which", ["ifms", "window", "scale", "chain", "attack"])
def test_netcdf_doc_lists_every_name_a_real_file_has_and_each_always_present_name_is_there(
    files: dict[str, Path], which: str
) -> None:
    tables = doc_tables()
    section = {"ifms": "IFM file", "attack": "Attack file"}.get(which, "Sweep file")
    kind = "scale" if which == "scale" else "window"
    with netCDF4.Dataset(files[which]) as nc:
        dims = list(nc.dimensions)
        variables = {name: var.dtype for name, var in nc.variables.items()}
        attrs = {name: nc.getncattr(name) for name in nc.ncattrs()}
        layers = [str(v) for v in nc["layer"][:]] if "layer" in nc.variables else [str(attrs["layer"])]
    problems = []
    for table, actual in (("Dimensions", dims), ("Variables", list(variables)), ("Attributes", list(attrs))):
        names = tables[(section, table)]
        problems += [
            f"{table}: {name} is not in docs/netcdf.md" for name in actual if not documented(names, name, layers)
        ]
        for name, cells in names.items():
            if "<" not in name and required(cells, kind) and name not in actual:
                problems.append(f"{table}: {name} is documented as present ({cells[0]}) but missing")
    for name, dtype in variables.items():
        row = documented(tables[(section, "Variables")], name, layers)
        doc_type = tables[(section, "Variables")][row][1] if row else ""
        expected = "str" if dtype is str else np.dtype(dtype).name
        if row and doc_type != expected:
            problems.append(f"variable {name}: documented as {doc_type}, the file has {expected}")
    for name, value in attrs.items():
        doc_type = tables[(section, "Attributes")].get(name, ["", ""])[1]
        if name in tables[(section, "Attributes")] and not isinstance(value, ATTR_TYPES.get(doc_type, ())):
            problems.append(f"attribute {name}: documented as {doc_type!r}, the file has {type(value).__name__}")
    if which == "ifms":  # every IFM layer has its variable, as the `<layer>` row says
        problems += [f"no variable for layer {layer}" for layer in layers if layer not in variables]
    assert not problems, "\n".join(problems)


def test_netcdf_doc_lists_every_attribute_the_library_reserves() -> None:
    tables = doc_tables()
    sections = ("IFM file", "Sweep file", "Attack file", "Certificate map file")
    documented_attrs = set().union(*(tables[(section, "Attributes")] for section in sections))
    assert sorted(set(io.RESERVED_ATTRS) - documented_attrs) == []
    kinds = {section: tables[(section, "Attributes")][io.KIND_ATTR][2] for section in sections}
    assert [f'`"{kind}"`' in kinds[section] for kind, section in zip(io.KINDS, kinds, strict=True)] == [True] * 4


def test_definitions_doc_exists_and_the_modules_point_to_the_docs() -> None:
    docs = DOC.parent
    text = (docs / "definitions.md").read_text(encoding="utf-8")
    for term in ("Short last window", "Algorithm 1", "n\\*(γ)", "eff_san", "Trend inversion", "Unsafe windows"):
        assert term in text, term
    src = DOC.parents[1] / "src" / "ifmsan"
    stale = [
        str(p.relative_to(src)) for p in src.rglob("*.py") if re.search(r"DESIGN\.md|INTERFACES\.md", p.read_text())
    ]
    assert stale == [], f"these modules cite texts that are not in the repository: {stale}"
