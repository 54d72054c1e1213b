"""The conda environment and pyproject.toml list the same dependencies with the same lower bounds."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
CONDA_NAMES = {"torch": "pytorch"}  # pip name -> conda-forge name where they differ


def pip_requirements() -> dict[str, str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = list(project["dependencies"])
    for extra, items in project["optional-dependencies"].items():
        requirements += [r for r in items if not r.startswith("ifmsan[")]
    parsed = {}
    for requirement in requirements:
        name, spec = re.fullmatch(r"([A-Za-z0-9_.-]+)\s*(.*)", requirement).groups()  # type: ignore[union-attr]
        parsed[CONDA_NAMES.get(name.lower(), name.lower())] = spec
    return parsed


def conda_requirements() -> dict[str, str]:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    parsed = {}
    for item in env["dependencies"]:
        if isinstance(item, str):
            name, spec = re.fullmatch(r"([A-Za-z0-9_.-]+)\s*(.*)", item).groups()  # type: ignore[union-attr]
            parsed[name.lower()] = spec
    return parsed


def test_environment_yml_agrees_with_pyproject() -> None:
    pip, conda = pip_requirements(), conda_requirements()
    assert pip, "pyproject lists no dependencies"
    assert set(conda) - {"python", "pip"} == set(pip)
    assert {name: conda[name] for name in pip} == pip
    python = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    assert conda["python"] == python


def test_environment_yml_installs_the_package_itself() -> None:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_sections = [item["pip"] for item in env["dependencies"] if isinstance(item, dict)]
    assert pip_sections == [["-e ."]]


def test_import_makes_idle_openmp_threads_sleep_unless_the_user_chose() -> None:
    import os
    import subprocess
    import sys

    code = "import os, ifmsan; print(os.environ['OMP_WAIT_POLICY'])"
    env = {key: value for key, value in os.environ.items() if key != "OMP_WAIT_POLICY"}
    assert subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout.strip() == "PASSIVE"
    env["OMP_WAIT_POLICY"] = "ACTIVE"
    assert subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout.strip() == "ACTIVE"
