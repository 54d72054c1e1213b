"""Reruns: a job whose Snakemake was SIGKILLed stops on its own and leaves no output (ifmsan._shared.parentwatch via the
CLI); a temporary file a killed writer left is removed when its output is written again (ifmsan._shared.atomic); and
an edited config reruns exactly the jobs whose results it changes (each rule's params hold only what it uses)."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import yaml
from workflow_runner import snakemake

from ifmsan._shared.atomic import atomic_path, owner_tag
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


# --- temporary files a killed writer left -----------------------------------------------------------------------


def dead_pid() -> int:
    """The id of a process that has exited and been reaped."""
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    return gone.pid


def leftover(directory: Path, target: str, pid: int, *, host: str | None = None, suffix: str = ".part.png") -> Path:
    """An empty temporary sibling of `target` as atomic_path names them, written by process `pid` of `host`."""
    path = directory / f".{target}.{pid}@{host or owner_tag().split('@')[1]}.k3j_x9a2{suffix}"
    path.write_bytes(b"")
    return path


def test_a_dead_writers_temporary_file_is_removed_when_its_output_is_written_again(tmp_path: Path) -> None:
    """What a figures job killed mid-savefig leaves (a 0-byte .part.png) goes on the next write of that figure; a live
    writer's, another host's and another output's stay."""
    stale = leftover(tmp_path, "figure2.png", dead_pid())
    live = leftover(tmp_path, "figure2.png", os.getppid())
    remote = leftover(tmp_path, "figure2.png", dead_pid(), host="0badc0de")
    other = leftover(tmp_path, "figure4.png", dead_pid())
    pdf = leftover(tmp_path, "figure2.png", dead_pid(), suffix=".part.pdf")
    with atomic_path(tmp_path / "figure2.png", suffix=".part.png") as tmp:
        assert not stale.exists()
        assert tmp.name.startswith(f".figure2.png.{owner_tag()}.") and tmp.name.endswith(".part.png")
        tmp.write_bytes(b"png")
    assert (tmp_path / "figure2.png").read_bytes() == b"png"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        p.name for p in (live, remote, other, pdf, tmp_path / "figure2.png")
    )


def test_the_default_suffix_is_cleaned_too(tmp_path: Path) -> None:
    stale = leftover(tmp_path, "x.nc", dead_pid(), suffix=".part.nc")
    with atomic_path(tmp_path / "x.nc") as tmp:
        tmp.write_text("nc")
    assert not stale.exists() and [p.name for p in tmp_path.iterdir()] == ["x.nc"]


# --- an edited config reruns exactly the jobs it affects --------------------------------------------------------

REPO = Path(__file__).resolve().parents[1]
TWO_IMAGES = {
    **{
        key: value
        for key, value in yaml.safe_load((REPO / "tests" / "data" / "tiny.yaml").read_text(encoding="utf-8")).items()
        if key != "certify"
    },
    "run": "two",
    "images": [
        {"id": "a", "source": "minidata:test:1", "target": 1},
        {"id": "b", "source": "minidata:test:2", "target": 2},
    ],
    "knobs": ["nonzero_mean", "gaussian"],
    "noise_scales": [0.0, 1.0],
    "gammas": [0.5],
}
TWO_IMAGES["attacks"] = {**TWO_IMAGES["attacks"], "knobs": ["nonzero_mean"], "n_train": 8, "n_test": 4}
"""The tiny config with two images, the per-image stages and one attacked (layer, knob): pool5, nonzero_mean."""
TARGETS = [
    *(f"results/two/sweeps/{image}/{layer}/{knob}.nc" for image in "ab" for layer in ("norm2", "pool5")
      for knob in ("nonzero_mean", "gaussian")),
    *(f"results/two/chains/{image}/pool5/norm2@3.nc" for image in "ab"),
    *(f"results/two/gamma/controller/{image}.csv" for image in "ab"),
    "results/two/attacks/pool5/nonzero_mean.nc",
    "results/two/attacks/pool5/nonzero_mean.2B.nc",
]  # fmt: skip
"""Every image job's files of TWO_IMAGES, and its attack at both budgets."""


def job_counts(text: str) -> dict[str, int]:
    """The 'Job stats' table of a dry run as {rule: count}, without the total; {} when nothing is to be done."""
    if "Job stats:" not in text:
        assert "Nothing to be done" in text, text[-3000:]
        return {}
    counts = {}
    for line in text.split("Job stats:", 1)[1].splitlines()[3:]:
        match = re.match(r"^(\w+)\s+(\d+)$", line.strip())
        if not match:
            break
        counts[match[1]] = int(match[2])
    counts.pop("total", None)
    return counts


@pytest.fixture(scope="module")
def ran_two(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A workdir where TWO_IMAGES' image jobs and attack ran (about a minute on two cores)."""
    workdir = tmp_path_factory.mktemp("two")
    (workdir / "two.yaml").write_text(yaml.safe_dump(TWO_IMAGES, sort_keys=False), encoding="utf-8")
    snakemake(workdir, *TARGETS, "--cores", "2", "--configfile", str(workdir / "two.yaml"))
    return workdir


BOTH = {"image": 2}
ATTACKED = {"attack_sweeps_key": 1, "attack": 1, "attack_doubled": 1}
RERUNS = {
    "unchanged": ({}, {}),
    "windows": ({"windows": {"start": 2, "stop": 11, "step": 1}}, {**BOTH, **ATTACKED}),
    "seed": ({"seed": 1}, BOTH),  # nonzero_mean, the attacked knob, draws nothing
    "batch_size": ({"batch_size": 2}, {**BOTH, **ATTACKED}),  # config_hash, which the attack records
    "noise_scales": ({"noise_scales": [0.0, 2.0]}, BOTH),  # another knob's values: the attack stays
    "gammas": ({"gammas": [0.25]}, BOTH),
    "knobs": ({"knobs": ["nonzero_mean", "gaussian", "first"]}, BOTH),  # one knob more: the attacked sweeps stay
    "layers": ({"layers": ["pool2", "norm2", "pool5"]}, BOTH),  # one layer more
    "chains": ({"chains": [*TWO_IMAGES["chains"], {"steps": "pool2@4", "layer": "pool5"}]}, BOTH),  # a chain more
    "workers": ({"workers": 1}, {}),  # how many pieces run at once changes no file
    "image_source": (
        {"images": [TWO_IMAGES["images"][0], {"id": "b", "source": "minidata:test:3", "target": 2}]},
        {"image": 1, **ATTACKED},
    ),
    "image_target": (
        {"images": [{"id": "a", "source": "minidata:test:1", "target": 4}, TWO_IMAGES["images"][1]]},
        {"image": 1, **ATTACKED},
    ),
    "attacked_seed": ({"attacks": {**TWO_IMAGES["attacks"], "seed": 1}}, {"attack": 1, "attack_doubled": 1}),
}
NEW_FILES = {
    "knobs": [f"results/two/sweeps/{image}/{layer}/first.nc" for image in "ab" for layer in ("norm2", "pool5")],
    "layers": [
        f"results/two/sweeps/{image}/pool2/{knob}.nc" for image in "ab" for knob in ("nonzero_mean", "gaussian")
    ],
    "chains": [f"results/two/chains/{image}/pool5/pool2@4.nc" for image in "ab"],
}
"""The files an edit adds, which the run's tables and figures ask for (an output nobody asks for reruns nothing)."""
"""Config edits and the jobs a dry run then plans. An image job holds all of an image's pieces, so any edit of the
sweep stage reruns every image's job, and an edit of one image only that image's; the attack reruns only when what
its sweeps hold changes (their windows, hashes or images: attack_sweeps_key rewrites its .sweeps.json), never for
another knob's, layer's or chain's settings."""


@pytest.mark.slow
@pytest.mark.parametrize("case", list(RERUNS))
def test_an_edit_reruns_exactly_the_jobs_it_affects(ran_two: Path, case: str) -> None:
    changes, expected = RERUNS[case]
    (ran_two / "edited.yaml").write_text(yaml.safe_dump({**TWO_IMAGES, **changes}, sort_keys=False), encoding="utf-8")
    targets = [*TARGETS, *NEW_FILES.get(case, [])]
    result = snakemake(ran_two, *targets, "-n", "--configfile", str(ran_two / "edited.yaml"))
    assert job_counts(result.stdout) == expected


@pytest.mark.slow
@pytest.mark.parametrize("cores", ["1", "3"])
def test_other_cores_rerun_nothing(ran_two: Path, cores: str) -> None:
    """The job's workers follow --cores (its threads), a derived param that no rerun trigger compares."""
    result = snakemake(ran_two, *TARGETS, "-n", "--cores", cores, "--configfile", str(ran_two / "two.yaml"))
    assert job_counts(result.stdout) == {}


@pytest.mark.slow
def test_the_rerun_trigger_options_behave_as_documented(ran_two: Path) -> None:
    """--rerun-triggers mtime ignores the params; --rerun-triggers params reruns on them; --forcerun image reruns every
    image job and what reads its files (the attack reads them as ancient, so a forced image job leaves it alone)."""
    edited = ran_two / "edited.yaml"
    edited.write_text(yaml.safe_dump({**TWO_IMAGES, "noise_scales": [0.0, 3.0]}, sort_keys=False), encoding="utf-8")
    mtime = snakemake(ran_two, *TARGETS, "-n", "--rerun-triggers", "mtime", "--configfile", str(edited))
    assert job_counts(mtime.stdout) == {}
    params = snakemake(ran_two, *TARGETS, "-n", "--rerun-triggers", "params", "--configfile", str(edited))
    assert job_counts(params.stdout) == BOTH
    forced = snakemake(ran_two, *TARGETS, "-n", "--forcerun", "image", "--configfile", str(ran_two / "two.yaml"))
    assert job_counts(forced.stdout) == BOTH


# --- per-stage provenance hashes still refuse files of different runs ---------------------------------------------


@pytest.fixture(scope="module")
def staged(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """IFMs as the workflow makes them (extract_hash only) and a sweep of them with the sweep stage's config_hash."""
    import numpy as np
    from PIL import Image

    from ifmsan.cli import main

    root = tmp_path_factory.mktemp("staged")
    image = root / "img.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(image)
    ifms, model = root / "ifms.nc", ["--model", "alexnet_mini"]
    assert main(["extract", *model, "--image", str(image), "--image-id", "img", "--out", str(ifms),
                 "--attr", "extract_hash=e1"]) == 0  # fmt: skip
    assert main(["sweep", *model, "--ifms", str(ifms), "--layer", "pool5", "--values", "2:3", "--knob", "nonzero_mean",
                 "--out-dir", str(root / "sw"), "--attr", "extract_hash=e1", "--attr", "config_hash=s1"]) == 0  # fmt: skip
    return {"ifms": ifms, "sweep": root / "sw" / "nonzero_mean.nc", "root": root}


def gamma_args(staged: dict[str, Path], sweep: Path, out: Path, *attrs: str) -> list[str]:
    return ["gamma", "--model", "alexnet_mini", "--ifms", str(staged["ifms"]), "--layers", "pool5", "--gammas", "0.5",
            "--values", "2:3", "--sweeps", str(sweep), "--out", str(out), *attrs]  # fmt: skip


def test_a_sweep_records_its_ifms_extract_hash_and_its_own_config_hash(staged: dict[str, Path], tmp_path: Path) -> None:
    from ifmsan.cli import main
    from ifmsan.steps.io import read_ifms, read_sweep

    assert (
        read_ifms(staged["ifms"]).attrs["extract_hash"] == "e1" and "config_hash" not in read_ifms(staged["ifms"]).attrs
    )
    attrs = read_sweep(staged["sweep"]).attrs
    assert (attrs["extract_hash"], attrs["config_hash"]) == ("e1", "s1")
    out = tmp_path / "g.csv"  # the controller accepts the sweep of its IFMs made under the sweep stage's hash
    assert main(gamma_args(staged, staged["sweep"], out, "--attr", "extract_hash=e1", "--attr", "config_hash=s1")) == 0
    assert out.is_file()


@pytest.mark.parametrize("verb", ["sweep", "gamma"])
def test_an_extract_hash_other_than_the_ifms_is_refused(
    staged: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str], verb: str
) -> None:
    from ifmsan.cli import main

    out = tmp_path / ("x.nc" if verb == "sweep" else "x.csv")
    args = (
        ["sweep", "--model", "alexnet_mini", "--ifms", str(staged["ifms"]), "--layer", "pool5", "--values", "2:3",
         "--out", str(out), "--attr", "extract_hash=e2"]
        if verb == "sweep"
        else gamma_args(staged, staged["sweep"], out, "--attr", "extract_hash=e2")
    )  # fmt: skip
    assert main(args) == 2
    err = capsys.readouterr().err
    assert f"{staged['ifms']} was made under extract_hash 'e1', but --attr extract_hash=e2" in err, err
    assert not out.exists()


def test_gamma_refuses_a_sweep_of_other_ifms_by_extract_hash(
    staged: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from ifmsan.cli import main
    from ifmsan.steps.io import read_sweep, write_netcdf

    other = read_sweep(staged["sweep"]).load()
    other.attrs["extract_hash"] = "e9"
    write_netcdf(other, tmp_path / "other.nc")
    assert main(gamma_args(staged, tmp_path / "other.nc", tmp_path / "g.csv")) == 2
    err = capsys.readouterr().err
    assert "other.nc was made with extract_hash 'e9', but" in err and "'e1'" in err, err
