"""A job whose Snakemake was SIGKILLed stops on its own and leaves no output (ifmsan._shared.parentwatch via the CLI)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from ifmsan._shared.parentwatch import ENV_VAR, PARENT_GONE_EXIT, parent_pid, watch_parent

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc and prctl")

# The job: `ifmsan.cli.main` with a verb that writes its output atomically and takes forever.
CHILD = textwrap.dedent("""
    import sys, time, types
    from ifmsan import cli
    from ifmsan._shared.atomic import atomic_path

    def run(args):
        with atomic_path(args.out) as tmp:
            tmp.write_text("half of it")
            print("writing", flush=True)
            while True:
                time.sleep(0.05)

    verb = types.ModuleType("slowverb")
    verb.HELP, verb.configure, verb.run = "never ends", lambda parser: parser.add_argument("out"), run
    sys.modules["slowverb"] = verb
    cli.commands = lambda: {"slow": "slowverb"}
    sys.exit(cli.main(["slow", sys.argv[1]]))
""")
# The Snakemake stand-in: starts the job with its own pid in IFMSAN_PARENT_PID, as the rules' shell prefix does ($PPID), waits.
PARENT = textwrap.dedent("""
    import os, subprocess, sys
    env = {**os.environ, "IFMSAN_PARENT_PID": str(os.getpid())}
    child = subprocess.Popen([sys.executable, "-c", sys.argv[1], sys.argv[2]], stdout=sys.stdout, stderr=sys.stderr, env=env)
    print(child.pid, flush=True)
    child.wait()
""")
# Adopts the orphaned job (PR_SET_CHILD_SUBREAPER) so its exit status can be read after the parent is killed.
REAPER = textwrap.dedent("""
    import ctypes, os, subprocess, sys, time
    assert ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0) == 0  # PR_SET_CHILD_SUBREAPER
    parent = subprocess.Popen([sys.executable, "-c", sys.argv[1], sys.argv[2], sys.argv[3]], stdout=subprocess.PIPE, text=True)
    child = int(parent.stdout.readline())
    print(parent.pid, child, flush=True)
    for line in parent.stdout:
        print(line.strip(), flush=True)
        break
    if sys.argv[4] == "reap":
        parent.wait()
    while True:
        try:
            pid, status = os.waitpid(child, os.WNOHANG)
        except ChildProcessError:  # not adopted yet
            pid = 0
        if pid:
            print("exit", os.waitstatus_to_exitcode(status), flush=True)
            break
        time.sleep(0.05)
    parent.wait()
""")


def ignore_sigint() -> None:
    """What a non-interactive shell does for a command started in the background: SIGINT ignored, and inherited."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@pytest.mark.parametrize("sigint", ["handled", "ignored"])
@pytest.mark.parametrize("reap", ["reap", "zombie"])
def test_job_stops_when_its_parent_is_killed_and_leaves_no_output(tmp_path: Path, reap: str, sigint: str) -> None:
    """The parent is SIGKILLed mid-write (reaped at once, or left a zombie): the job exits within seconds, also when
    it was started with SIGINT ignored (`make test &`, nohup)."""
    out = tmp_path / "result.nc"
    env = {key: value for key, value in os.environ.items() if key != ENV_VAR}
    reaper = subprocess.Popen(
        [sys.executable, "-c", REAPER, PARENT, CHILD, str(out), reap],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=tmp_path,
        preexec_fn=ignore_sigint if sigint == "ignored" else None,
    )
    started: list[int] = []
    try:
        parent, child = (int(word) for word in reaper.stdout.readline().split())
        started += [parent, child]
        assert reaper.stdout.readline().strip() == "writing"
        assert [p.name for p in tmp_path.iterdir()] != [], "the job should have its temporary file open"
        killed = time.monotonic()
        os.kill(parent, signal.SIGKILL)
        stdout, stderr = reaper.communicate(timeout=30)
        elapsed = time.monotonic() - killed
        started.clear()  # the reaper has waited for both: their pids may be reused now
    finally:
        reaper.kill()
        for pid in started:  # on a failure, leave no stand-in running
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    assert stdout.strip() == f"exit {PARENT_GONE_EXIT}", (stdout, stderr)
    assert elapsed < 5.0
    assert f"workflow process {parent} ({ENV_VAR}) that started this job is gone" in stderr
    assert "Traceback" not in stderr
    assert list(tmp_path.iterdir()) == [], "neither the output nor its temporary file may remain"


def test_job_started_after_its_parent_died_does_not_start(tmp_path: Path) -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    out = tmp_path / "result.nc"
    env = {**os.environ, ENV_VAR: str(gone.pid)}
    result = subprocess.run(
        [sys.executable, "-c", CHILD, str(out)], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == PARENT_GONE_EXIT, result.stderr
    assert f"error: the workflow process {gone.pid} ({ENV_VAR}) that started this job is gone" in result.stderr
    assert "writing" not in result.stdout and list(tmp_path.iterdir()) == []


def test_without_the_variable_nothing_is_watched() -> None:
    assert parent_pid({}) is None and parent_pid({ENV_VAR: " "}) is None
    assert watch_parent(env={}) is None


def test_a_live_parent_is_watched_without_stopping_anything() -> None:
    thread = watch_parent(env={ENV_VAR: str(os.getpid())}, interval=0.05)
    assert thread is not None and thread.daemon
    time.sleep(0.2)
    assert thread.is_alive()


@pytest.mark.parametrize("value", ["abc", "0", "-12", "1.5", "12 34"])
def test_a_malformed_variable_is_refused(value: str) -> None:
    with pytest.raises(ValueError, match=rf"{ENV_VAR} must be a positive process id .*got {value!r}"):
        parent_pid({ENV_VAR: value})


def test_the_cli_names_a_malformed_variable(tmp_path: Path) -> None:
    env = {**os.environ, ENV_VAR: "snakemake"}
    result = subprocess.run(
        [sys.executable, "-c", CHILD, str(tmp_path / "x.nc")], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert f"ifmsan slow: error: {ENV_VAR} must be a positive process id" in result.stderr
    assert list(tmp_path.iterdir()) == []
