"""Run the project's Snakefile as a user does, for the workflow, hardening and cluster tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def snakemake(
    workdir: Path, *args: str, check: bool = True, timeout: int = 900, output_tail: int = 6000
) -> subprocess.CompletedProcess[str]:
    """`snakemake --snakefile Snakefile --directory workdir ARGS` with the venv's tools first on PATH, as `make demo`
    runs it; stdout and stderr together in `.stdout`. On timeout the whole process group gets SIGINT (the SLURM
    executor cancels its jobs then), SIGKILL a minute later; `check` raises with the output's tail on failure."""
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    command = [str(BIN / "snakemake"), "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir), *args]
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, start_new_session=True
    ) as process:
        try:
            output, _ = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGINT)
            try:
                output, _ = process.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                output, _ = process.communicate()
            raise AssertionError(f"snakemake {' '.join(args)} ran past {timeout} s:\n{output[-output_tail:]}") from None
    result = subprocess.CompletedProcess(command, process.returncode, output, "")
    if check and result.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{output[-output_tail:]}")
    return result


def shell_commands(text: str, verb: str) -> list[list[str]]:
    """The planned `ifmsan VERB` commands of a dry run with -p, each split as a shell would, up to the redirection."""
    import shlex

    lines = [line.removeprefix("Shell command: ") for line in text.splitlines()]
    return [shlex.split(line.split(" > ", 1)[0])[1:] for line in lines if line.startswith(f"ifmsan {verb} ")]
