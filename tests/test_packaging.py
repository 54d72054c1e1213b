"""The conda environment and pyproject.toml list the same dependencies with the same lower bounds."""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
CONDA_NAMES = {"torch": "pytorch", "xxhash": "python-xxhash"}  # pip name -> conda-forge name where they differ


def pip_requirements() -> dict[str, str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = list(project["dependencies"])
    for items in project["optional-dependencies"].values():
        requirements += [r for r in items if not r.startswith("ifmsan[")]
    parsed = {}
    for requirement in requirements:
        name, spec = re.fullmatch(r"([A-Za-z0-9_.-]+)\s*(.*)", requirement).groups()  # type: ignore[union-attr]
        parsed[CONDA_NAMES.get(name.lower(), name.lower())] = spec
    return parsed


def conda_requirements() -> dict[str, str]:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    parsed = {}
    pip_items = [item for entry in env["dependencies"] if isinstance(entry, dict) for item in entry.get("pip", [])]
    for item in [entry for entry in env["dependencies"] if isinstance(entry, str)] + pip_items:
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


def test_environment_yml_has_no_pip_entry_that_breaks_in_snakemakes_copy() -> None:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    assert "pip" in env["dependencies"]  # for the post-deploy script and by-hand installs
    others = [item for item in env["dependencies"] if not isinstance(item, str)]
    assert all(set(item) == {"pip"} for item in others)
    pip_items = [requirement for item in others for requirement in item["pip"]]
    # registry packages only: no editable install, path or URL, which would resolve inside .snakemake/conda/
    assert pip_items and all(re.fullmatch(r"[A-Za-z0-9_.-]+\s*[=<>!~]=?\s*[0-9.]+", r) for r in pip_items)


def test_post_deploy_script_installs_the_checkout_it_is_given(tmp_path: Path) -> None:
    """Snakemake runs it with the new environment's python first on PATH; a stand-in python records the call."""
    import os
    import subprocess

    (tmp_path / "python").write_text('#!/bin/sh\necho "$@" > "$(dirname "$0")/called"\n')
    (tmp_path / "python").chmod(0o755)
    script = ROOT / "environment.post-deploy.sh"
    env = {"PATH": f"{tmp_path}{os.pathsep}{os.environ['PATH']}", "IFMSAN_CHECKOUT": "/some/checkout dir"}
    subprocess.run(["bash", str(script)], env=env, check=True)
    assert (tmp_path / "called").read_text().strip() == "-m pip install --no-deps -e /some/checkout dir"
    del env["IFMSAN_CHECKOUT"]
    (tmp_path / "called").unlink()
    subprocess.run(["bash", str(script)], env=env, cwd=ROOT, check=True)  # Snakemake runs it in the checkout
    assert (tmp_path / "called").read_text().strip() == f"-m pip install --no-deps -e {ROOT}"
    (tmp_path / "called").unlink()
    result = subprocess.run(["bash", str(script)], env=env, cwd=tmp_path, capture_output=True, text=True, check=False)
    assert result.returncode != 0 and "IFMSAN_CHECKOUT" in result.stderr and not (tmp_path / "called").exists()


RULE_ENVS = """
import json, sys
from pathlib import Path
from snakemake.api import SnakemakeApi
from snakemake.settings.types import ConfigSettings, OutputSettings, ResourceSettings
from snakemake.sourcecache import infer_source_file
envs = {}
for configfile in sys.argv[1:]:
    with SnakemakeApi(OutputSettings(quiet={"all"})) as api:
        settings = ConfigSettings(configfiles=[Path(configfile)])
        workflow = api.workflow(resource_settings=ResourceSettings(cores=1), config_settings=settings, snakefile=Path("Snakefile"))
        envs.update({rule.name: rule.conda_env for rule in workflow._workflow.rules})
post_deploy = {env and str(infer_source_file(env).replace_suffix([".yaml", ".yml"], ".post-deploy.sh")) for env in envs.values()}
print(json.dumps({"envs": envs, "post_deploy": sorted(map(str, post_deploy))}))
"""


@pytest.mark.slow
def test_every_rule_uses_environment_yml_and_its_post_deploy_script() -> None:
    """--sdm conda builds environment.yml, then the post-deploy script Snakemake finds next to it installs ifmsan."""
    import json
    import subprocess
    import sys

    configs = ["config/config.yaml", "config/demo.yaml"]  # together they hold every rule (fetch_*, train_mini)
    result = subprocess.run(
        [sys.executable, "-c", RULE_ENVS, *configs], cwd=ROOT, capture_output=True, text=True, check=True
    )
    found = json.loads(result.stdout.strip().splitlines()[-1])
    envs = found["envs"]
    assert {
        "fetch_weights",
        "fetch_mean_file",
        "fetch_image",
        "train_mini",
        "image",
        "tables",
        "notebook",
        "attack",
    } <= set(envs)
    assert envs.pop("all") is None
    assert set(envs.values()) == {str(ROOT / "environment.yml")}
    assert found["post_deploy"] == sorted(["None", str(ROOT / "environment.post-deploy.sh")])


@pytest.mark.slow
def test_import_has_no_side_effects_and_the_cli_sets_openmp_advice_unless_the_user_chose() -> None:
    import os
    import subprocess
    import sys

    def run(code: str, **extra: str) -> str:
        env = {key: value for key, value in os.environ.items() if key != "OMP_WAIT_POLICY"} | extra
        return subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
        ).stdout.strip()

    imported = "import os, sys, ifmsan; print(os.environ.get('OMP_WAIT_POLICY'), 'torch' in sys.modules)"
    assert run(imported) == "None False"  # import ifmsan changes nothing and loads no torch
    assert run(imported, OMP_WAIT_POLICY="ACTIVE") == "ACTIVE False"
    # the CLI entry point sets it before any verb loads torch (--version exits after parsing: torch is loaded by then)
    cli = "import os, ifmsan.cli as c\ntry: c.main(['--version'])\nexcept SystemExit: pass\nprint(os.environ.get('OMP_WAIT_POLICY'))"
    assert run(cli).splitlines()[-1] == "PASSIVE"
    assert run(cli, OMP_WAIT_POLICY="ACTIVE").splitlines()[-1] == "ACTIVE"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc thresholds: Linux only")
@pytest.mark.slow
def test_the_cli_keeps_large_buffers_on_the_heap_so_they_are_not_faulted_in_again() -> None:
    """Allocate, fill and free a 64 MiB torch tensor 50 times: glibc's default maps and unmaps it each time, so all its
    16384 pages fault in again every round; with the CLI's advice the heap keeps and reuses it (a few early rounds may
    still grow the heap while small allocations settle: 3 to 7 of them, seen here)."""
    import os
    import subprocess

    code = (
        "import resource, sys, torch, ifmsan.cli as c\n"
        "changed = c.use_malloc_advice() if sys.argv[1] == 'advice' else False\n"
        "torch.ones(1 << 24)\n"  # a first round of the size, outside the count
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt\n"
        "for _ in range(50):\n"
        "    a = torch.ones(1 << 24); del a\n"
        "print(changed, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("MALLOC_MMAP_THRESHOLD_", "GLIBC_TUNABLES")}

    def faults(mode: str, **extra: str) -> tuple[str, int]:
        out = subprocess.run(
            [sys.executable, "-c", code, mode], env=env | extra, capture_output=True, text=True, check=True
        ).stdout.split()
        return out[0], int(out[1])

    (plain_changed, plain), (advised_changed, advised) = faults("plain"), faults("advice")
    assert plain_changed == "False" and advised_changed == "True"
    assert plain >= 0.9 * 50 * (64 << 20) // 4096  # every round faults all its pages in again
    assert advised < plain / 3
    assert faults("advice", MALLOC_MMAP_THRESHOLD_="1000")[0] == "False"  # the user's own setting wins
