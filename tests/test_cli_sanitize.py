"""`ifmsan sanitize` and `ifmsan --help` as a user runs them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import ifmsan
from ifmsan.cli import main


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ifmsan.cli", *args], capture_output=True, text=True, check=False)


@pytest.mark.slow
def test_help_lists_the_verbs_and_sanitize_help_reads_well() -> None:
    top = run_cli("--help")
    assert top.returncode == 0 and "sanitize" in top.stdout and "sample-and-hold" in top.stdout
    sub = run_cli("sanitize", "--help")
    assert sub.returncode == 0
    for option in ("--window", "--knob", "--scale", "--seed", "nonzero_mean"):
        assert option in sub.stdout


def test_sanitize_npy_round_trip_equals_library(tmp_path: Path) -> None:
    ifm = np.random.default_rng(0).normal(size=(8, 6, 6)).astype(np.float32).clip(min=0)
    np.save(tmp_path / "in.npy", ifm)
    assert main(["sanitize", "--window", "7", str(tmp_path / "in.npy"), str(tmp_path / "out.npy")]) == 0
    got = np.load(tmp_path / "out.npy")
    expected = ifmsan.sample_and_hold(torch.from_numpy(ifm), 7).numpy()
    assert got.dtype == np.float32 and np.array_equal(got, expected)
    assert (
        main(["sanitize", "--knob", "gaussian", "--scale", "0.5", str(tmp_path / "in.npy"), str(tmp_path / "g.npy")])
        == 0
    )
    assert np.load(tmp_path / "g.npy").shape == ifm.shape


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--window", "0"], "window must be an integer >= 1"),
        (["--window", "3", "--knob", "laplace"], "noise knob: give --scale"),
        (["--scale", "1.0"], "sample-and-hold knob: give --window"),
    ],
)
def test_sanitize_bad_options_fail_cleanly_without_output(
    tmp_path: Path, args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    np.save(tmp_path / "in.npy", np.ones((4, 4), dtype=np.float32))
    out = tmp_path / "out.npy"
    assert main(["sanitize", *args, str(tmp_path / "in.npy"), str(out)]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists() and list(tmp_path.iterdir()) == [tmp_path / "in.npy"]


def test_sanitize_missing_or_corrupt_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sanitize", "--window", "2", str(tmp_path / "nope.npy"), str(tmp_path / "o.npy")]) == 2
    assert "IN not found" in capsys.readouterr().err
    (tmp_path / "bad.npy").write_bytes(b"not an array")
    assert main(["sanitize", "--window", "2", str(tmp_path / "bad.npy"), str(tmp_path / "o.npy")]) == 2
    assert "is not a .npy array file" in capsys.readouterr().err
    np.save(tmp_path / "nan.npy", np.array([1.0, np.nan]))
    assert main(["sanitize", "--window", "2", str(tmp_path / "nan.npy"), str(tmp_path / "o.npy")]) == 2
    assert "NaN or infinite" in capsys.readouterr().err
    assert not (tmp_path / "o.npy").exists()


@pytest.mark.parametrize("fast", [True, False])
@pytest.mark.slow
def test_the_command_exits_fast_with_its_output_and_code_intact(tmp_path: Path, fast: bool) -> None:
    """The `ifmsan` command (cli.console) skips the interpreter's teardown: the file, the message on a pipe and the
    exit code are what main() produced, as with IFMSAN_NO_FAST_EXIT=1's normal exit."""
    import hashlib
    import os

    ifm = np.random.default_rng(1).normal(size=(4, 5, 5)).astype(np.float32)
    np.save(tmp_path / "in.npy", ifm)
    env = {**os.environ, "IFMSAN_NO_FAST_EXIT": "" if fast else "1"}
    code = "import sys; from ifmsan.cli import console; sys.argv[0] = 'ifmsan'; console(); print('not reached')"

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-c", code, *args]
        return subprocess.run(command, capture_output=True, text=True, env=env, check=False)

    done = run("sanitize", "--window", "3", str(tmp_path / "in.npy"), str(tmp_path / "out.npy"))
    assert done.returncode == 0 and "not reached" not in done.stdout
    assert np.array_equal(np.load(tmp_path / "out.npy"), ifmsan.sample_and_hold(torch.from_numpy(ifm), 3).numpy())
    source = tmp_path / "source.txt"
    source.write_text("hello\n")
    digest = hashlib.sha256(b"hello\n").hexdigest()
    fetched = run("fetch", source.as_uri(), str(tmp_path / "copy.txt"), "--sha256", digest)
    assert fetched.returncode == 0 and fetched.stdout.strip() == str(tmp_path / "copy.txt")  # printed through a pipe
    assert (tmp_path / "copy.txt").read_text() == "hello\n"
    failed = run("sanitize", "--window", "0", str(tmp_path / "in.npy"), str(tmp_path / "bad.npy"))
    assert failed.returncode == 2 and "--window" in failed.stderr and not (tmp_path / "bad.npy").exists()
