"""The DAG on a real one-node SLURM through profiles/slurm and snakemake-executor-plugin-slurm.

The cluster tests install SLURM with apt-get, start it (tests/cluster/start_cluster.sh) for the session and always stop
it by PID (stop_cluster.sh); without root or apt they are skipped with the reason. They check that the tiny config gives
byte-identical results on SLURM and locally, with the profile as it is and with its group-jobs block uncommented (one
SLURM job per image), and that a failed cluster job is reported, logged and resumed after a fix.
"""

from __future__ import annotations

import collections
import concurrent.futures
import itertools
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image
from workflow_runner import snakemake

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
TINY = REPO / "tests" / "data" / "tiny.yaml"
PROFILE = REPO / "profiles" / "slurm"
BIN = Path(sys.executable).parent
# The rules profiles/slurm's group-jobs block puts into the group `image`; Snakemake names a group job
# <group>_<its rules, sorted>, and the SLURM plugin comments it rule_<that name>.
GROUPED_RULES = ("extract", "sweep", "chain_sweep", "gamma_controller")
GROUP_JOB = "image_" + "_".join(sorted(GROUPED_RULES))
# Rules the Snakefile declares as localrules: they run beside snakemake, never through sbatch.
LOCAL_RULES = {
    "fetch_weights",
    "convert_weights",
    "fetch_mean_file",
    "fetch_image",
    "tables",
    "figures",
    "notebook",
    "attack_report",
    "certify_report",
    "all",
}


def grouped_profile(directory: Path) -> Path:
    """A copy of profiles/slurm in `directory` with its group-jobs block uncommented, as docs/cluster.md tells users to.

    The block is the run of lines that starts with the line `#groups:` and ends before the next line that does not start
    with "#"; uncommenting deletes the first character of each of its lines.
    """
    lines = (PROFILE / "config.yaml").read_text().splitlines(keepends=True)
    start = lines.index("#groups:\n")
    end = next((i for i in range(start, len(lines)) if not lines[i].startswith("#")), len(lines))
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.yaml").write_text(
        "".join(lines[:start] + [line[1:] for line in lines[start:end]] + lines[end:])
    )
    return directory


def cluster_options(profile: Path = PROFILE) -> list[str]:
    """The profile as a user runs it, with the partition and account of the test cluster and a 1 s first status check."""
    settings = yaml.safe_load((profile / "config.yaml").read_text())
    resources = {**settings["default-resources"], "slurm_partition": "debug", "slurm_account": "root"}
    return [
        "--profile",
        str(profile),
        "--default-resources",
        *(f"{key}={value}" for key, value in resources.items()),
        "--slurm-init-seconds-before-status-checks",
        "1",
    ]


def slurm_records(output: str, env: dict[str, str]) -> list[dict[str, str]]:
    """SLURM's accounting record of every job a snakemake run submitted: JobID, State, ReqCPUS, ReqMem, Timelimit and
    rule (the rule, or for a group job <group>_<its rules>, from the plugin's job comment)."""
    ids = re.findall(r"has been submitted with SLURM jobid (\d+)", output)
    if not ids:
        return []
    fields = ["JobID", "State", "ReqCPUS", "ReqMem", "Timelimit", "Comment"]
    deadline = time.monotonic() + 60
    while True:  # accounting records a job's end a moment after squeue does
        result = subprocess.run(
            ["sacct", "-X", "-n", "-P", "-j", ",".join(ids), "-o", ",".join(fields)],
            capture_output=True,
            text=True,
            env=env,
            check=True,
        )
        rows = [
            dict(zip(fields, line.split("|", len(fields) - 1), strict=True))
            for line in result.stdout.splitlines()
            if line.strip()
        ]
        if (
            len(rows) == len(ids)
            and all(row["State"] not in ("PENDING", "RUNNING") for row in rows)
            or time.monotonic() > deadline
        ):
            break
        time.sleep(1)
    for row in rows:  # the plugin's job comment is rule_<rule>[_wildcards_<values>], rule_<group job name> for a group
        row["rule"] = re.match(r"rule_(.+?)(?:_wildcards_.*)?$", row["Comment"])[1]
    return rows


def slurm_jobs(output: str, env: dict[str, str]) -> list[tuple[str, str]]:
    """(rule, SLURM state) of every job a snakemake run submitted, as SLURM's accounting recorded them."""
    return [(row["rule"], row["State"]) for row in slurm_records(output, env)]


def job_steps(jobid: str, env: dict[str, str]) -> list[tuple[str, str]]:
    """(start, end) of each srun step of SLURM job `jobid` (<jobid>.0, .1, ...; not .batch), in step order."""
    result = subprocess.run(
        ["sacct", "-n", "-P", "-j", jobid, "-o", "JobID,Start,End"], capture_output=True, text=True, env=env, check=True
    )
    steps = [line.split("|") for line in result.stdout.splitlines() if re.match(rf"{jobid}\.\d+\|", line)]
    return [(start, end) for _, start, end in sorted(steps, key=lambda step: int(step[0].split(".")[1]))]


def minutes(timelimit: str) -> int:
    """A SLURM time limit ([days-]hours:minutes:seconds) in minutes."""
    days, _, clock = timelimit.rpartition("-")
    hours, mins, _ = (int(part) for part in clock.split(":"))
    return int(days or 0) * 24 * 60 + hours * 60 + mins


def megabytes(reqmem: str) -> int:
    """A sacct ReqMem (2500M, 4G; SLURM 22.05 and later, without the per-node/per-CPU suffix) in MB."""
    number, unit = re.fullmatch(r"(\d+)([MG])", reqmem).groups()
    return int(number) * (1024 if unit == "G" else 1)


def assert_same_results(first: Path, second: Path) -> list[Path]:
    """The same result files in both folders, byte for byte but for the wall time in metrics.json and the notebooks'
    run times; the names compared."""
    names = {p.relative_to(first) for p in first.rglob("*") if p.is_file()}
    assert names == {p.relative_to(second) for p in second.rglob("*") if p.is_file()}
    compared = [name for name in sorted(names) if name.name != "metrics.json" and name.suffix != ".ipynb"]
    different = [str(name) for name in compared if (first / name).read_bytes() != (second / name).read_bytes()]
    assert not different, (first, second, different)
    return compared


def node_resources() -> dict[str, int]:
    """CPUs and RealMemory (MB) of this machine as slurmd sees it."""
    line = subprocess.run(["/usr/sbin/slurmd", "-C"], capture_output=True, text=True, check=True).stdout.splitlines()[0]
    return {key: int(value) for key, value in re.findall(r"(CPUs|RealMemory)=(\d+)", line)}


@pytest.fixture(scope="session")
def slurm_installed() -> None:
    """SLURM, munge, slurmdbd and MariaDB installed with apt-get (once per session), or the reason to skip."""
    if os.geteuid() != 0:
        pytest.skip(
            "the SLURM test installs slurm-wlm, munge, slurmdbd and mariadb-server and starts their daemons: run as root"
        )
    try:
        result = subprocess.run(
            ["bash", str(HERE / "install_slurm.sh")], capture_output=True, text=True, timeout=900, check=False
        )
    except subprocess.TimeoutExpired:
        pytest.skip("installing SLURM with apt-get took more than 15 minutes (is apt reachable?)")
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-5:])
        pytest.skip(f"could not install SLURM with apt-get (is apt reachable?):\n{tail}")
    resources = node_resources()
    if resources["CPUs"] < 2 or resources["RealMemory"] < 4000:
        pytest.skip(f"the tiny DAG's jobs ask for up to 2 CPUs and 4000 MB; this machine has {resources}")


@pytest.fixture(scope="session")
def slurm_env(slurm_installed: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A running one-node SLURM with accounting for the session; the environment its clients need. Always stopped after."""
    state = Path(tempfile.mkdtemp(prefix="ifmsan-slurm-", dir="/tmp"))  # the users slurm and mysql must reach it
    state.chmod(0o755)
    logs = tmp_path_factory.mktemp("slurm-cluster")
    try:
        with open(logs / "start_cluster.log", "w") as out:
            started = subprocess.run(
                ["bash", str(HERE / "start_cluster.sh"), str(state)],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                timeout=300,
                check=False,
            )
        text = (logs / "start_cluster.log").read_text()
        if started.returncode in (3, 4):  # a port is taken, or the machine has its own /etc/slurm/slurm.conf
            pytest.skip(f"cannot start a private SLURM here: {text.strip().splitlines()[-1]}")
        assert started.returncode == 0, f"start_cluster.sh failed:\n{text}"
        yield {**os.environ, "SLURM_CONF": str(state / "slurm.conf")}
    finally:
        stopped = subprocess.run(
            ["bash", str(HERE / "stop_cluster.sh"), str(state)],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        (logs / "stop_cluster.log").write_text(stopped.stdout + stopped.stderr)
        if (state / "log").is_dir():
            shutil.copytree(state / "log", logs / "daemons", dirs_exist_ok=True)
        if stopped.returncode == 0:
            shutil.rmtree(state, ignore_errors=True)
        assert stopped.returncode == 0, (
            f"stop_cluster.sh could not stop every daemon (state in {state}):\n{stopped.stdout}{stopped.stderr}"
        )


@pytest.mark.slow
def test_profile_is_valid_and_rules_override_its_defaults(tmp_path: Path) -> None:
    """profiles/slurm parses with this snakemake and plugin; rules keep their own resources and get the placeholders."""
    result = snakemake(tmp_path, "--profile", str(PROFILE), "-n", "--configfile", str(TINY))
    out = result.stdout
    assert "Using profile" in out and "profiles/slurm" in out
    resources = {
        match["rule"]: dict(re.findall(r"(\w+)=([^,\s]+)", match["resources"]))
        for match in re.finditer(r"^rule (?P<rule>\w+):\n(?:    .*\n)*?    resources: (?P<resources>.*)$", out, re.M)
    }
    assert resources["sweep"]["mem_mb"] == "2500" and resources["sweep"]["runtime"] == "60"
    assert resources["extract"]["mem_mb"] == "2000" and resources["extract"]["runtime"] == "10"
    for rule in ("sweep", "extract", "chain_sweep"):
        assert (
            resources[rule]["slurm_partition"] == "FILL_IN_PARTITION"
            and resources[rule]["slurm_account"] == "FILL_IN_ACCOUNT"
        )


@pytest.mark.slow
def test_grouped_profile_bundles_each_image_or_k_images(tmp_path: Path) -> None:
    """The uncommented group-jobs block parses and makes one group job of each image's extract, sweeps, chain sweeps and
    gamma controller, or of K images' with --group-components image=K (the demo's 3 images, K=2: 2 group jobs, of 2
    images and of 1); the grouped rules, and only they, take a group_slot."""
    profile = grouped_profile(tmp_path / "profile")
    demo = REPO / "config" / "demo.yaml"
    config = yaml.safe_load(demo.read_text())
    images, layers, chains = len(config["images"]), len(config["layers"]), len(config["chains"])
    assert images == 3
    out = snakemake(
        tmp_path / "work", "--profile", str(profile), "-n", "--configfile", str(demo), "--group-components", "image=2"
    ).stdout
    groups = out.split("Group job image (jobs in lexicogr. order):")[1:]
    # a group's jobs are printed indented, the jobs outside it are not
    sizes = sorted(
        (collections.Counter(re.findall(r"^    rule (\w+):", group, re.M)) for group in groups),
        key=lambda jobs: jobs["extract"],
    )
    assert sizes == [
        {"extract": k, "sweep": k * layers, "chain_sweep": k * chains, "gamma_controller": k} for k in (1, 2)
    ], out[-3000:]
    slots = {
        match["rule"]: dict(re.findall(r"(\w+)=([^,\s]+)", match["resources"])).get("group_slot")
        for match in re.finditer(r"^ *rule (?P<rule>\w+):\n(?: {4,}.*\n)*? +resources: (?P<resources>.*)$", out, re.M)
    }
    assert {rule for rule, slot in slots.items() if slot == "1"} == set(GROUPED_RULES)
    ungrouped = {"train_mini", "attack", "attack_doubled", "calibrate", "certify_maps", "certify_attack"}
    assert {rule for rule, slot in slots.items() if slot is None} == ungrouped | (LOCAL_RULES & set(slots))


@pytest.mark.cluster
@pytest.mark.slow
def test_tiny_dag_on_slurm_gives_the_local_results(
    slurm_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The tiny config locally, through profiles/slurm as it is and with its group-jobs block uncommented: the expected
    SLURM jobs (grouped: one per image for extract, sweeps, chain sweeps and gamma controller, which run inside it one
    after the other, and a request sized for that), the localrules beside them, the local run's bytes in both."""
    local, cluster, grouped = (tmp_path_factory.mktemp(name) for name in ("local", "slurm", "slurm-grouped"))
    profile = grouped_profile(tmp_path_factory.mktemp("profile") / "slurm-grouped")

    def timed(workdir: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], float]:
        started = time.monotonic()
        return snakemake(workdir, *args), time.monotonic() - started

    # The three runs go side by side: the SLURM runs spend most of their time waiting between status checks. The grouped
    # run keeps the SLURM logs of its successful jobs, to show what ran inside the group job.
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        local_run = pool.submit(timed, local, "--cores", "2", "--configfile", str(TINY))
        grouped_run = pool.submit(
            timed, grouped, *cluster_options(profile), "--slurm-keep-successful-logs", "--configfile", str(TINY)
        )
        result, cluster_seconds = timed(cluster, *cluster_options(), "--configfile", str(TINY))
        grouped_result, grouped_seconds = grouped_run.result()
        _, local_seconds = local_run.result()

    # Every job but the localrules went through sbatch and SLURM recorded it COMPLETED: one per image x layer sweep.
    config = yaml.safe_load(TINY.read_text())
    images, layers = len(config["images"]), len(config["layers"])
    expected = {
        "train_mini": 1,
        "extract": images,
        "sweep": images * layers,
        "chain_sweep": images * len(config["chains"]),
        "gamma_controller": images,
        "attack": len(config["attacks"]["layers"]) * len(config["attacks"]["knobs"]),
        "attack_doubled": len(config["attacks"]["layers"]) * len(config["attacks"]["knobs"]),
        "calibrate": len(config["certify"]["layers"]),
        "certify_maps": images * len(config["certify"]["layers"]),
        "certify_attack": 2 * len(config["certify"]["layers"]) * len(config["certify"]["scales"]),  # budgets B, 2B
    }
    records = slurm_records(result.stdout, slurm_env)
    jobs = [(row["rule"], row["State"]) for row in records]
    assert collections.Counter(rule for rule, _ in jobs) == expected, jobs
    assert {state for _, state in jobs} == {"COMPLETED"}, jobs
    for out in (result.stdout, grouped_result.stdout):
        assert re.search(r"^localrule tables:", out, re.M) and re.search(r"^localrule figures:", out, re.M)
    assert not LOCAL_RULES & {rule for rule, _ in jobs}

    # Grouped: one SLURM job per image instead of the image's extract, sweeps, chain sweeps and gamma controller.
    grouped_records = slurm_records(grouped_result.stdout, slurm_env)
    ungrouped = ("attack", "attack_doubled", "calibrate", "certify_maps", "certify_attack")
    grouped_expected = {"train_mini": 1, GROUP_JOB: images, **{rule: expected[rule] for rule in ungrouped}}
    assert collections.Counter(row["rule"] for row in grouped_records) == grouped_expected, grouped_records
    assert {row["State"] for row in grouped_records} == {"COMPLETED"}, grouped_records
    assert len(grouped_records) < len(records)
    # The group job asks for its largest job's CPUs and memory and the sum of its jobs' time limits (the ungrouped run's
    # jobs of the one image), not for the sum of those that could run side by side; they ran inside it as its job steps,
    # one after the other (the plugin runs a group's jobs one at a time: if that changes, so must the group_slot).
    assert images == 1, "the group job's request is checked against the ungrouped jobs of the tiny config's one image"
    members = [row for row in records if row["rule"] in GROUPED_RULES]
    (group,) = (row for row in grouped_records if row["rule"] == GROUP_JOB)
    assert int(group["ReqCPUS"]) == max(int(row["ReqCPUS"]) for row in members), (group, members)
    assert megabytes(group["ReqMem"]) == max(megabytes(row["ReqMem"]) for row in members), (group, members)
    assert minutes(group["Timelimit"]) == sum(minutes(row["Timelimit"]) for row in members), (group, members)
    steps = job_steps(group["JobID"], slurm_env)
    assert len(steps) == len(members), steps
    assert all(end <= start for (_, end), (start, _) in itertools.pairwise(steps)), steps
    # Its SLURM log is the group's: .snakemake/slurm_logs/group_<group job name>/<SLURM job id>.log names every job that
    # the ungrouped run submitted on its own for those rules.
    log = grouped / ".snakemake" / "slurm_logs" / f"group_{GROUP_JOB}" / f"{group['JobID']}.log"
    job_wildcards = r"^rule (\w+):\n(?:    .*\n)*?    wildcards: (.*)$"
    planned = {(rule, wildcards) for rule, wildcards in re.findall(job_wildcards, result.stdout, re.M)}
    ran = set(re.findall(job_wildcards, log.read_text(), re.M))
    assert ran == {(rule, wildcards) for rule, wildcards in planned if rule in GROUPED_RULES}, ran
    assert len(ran) == len(members)

    # Byte-identical results (the rules pass fixed --threads); metrics.json holds a wall time, notebooks their run times.
    compared = assert_same_results(local / "results", cluster / "results")
    assert assert_same_results(local / "results", grouped / "results") == compared
    suffixes = collections.Counter(name.suffix for name in compared)
    assert (
        suffixes[".nc"]
        == images * (1 + layers * len(config["knobs"]) + len(config["chains"]))
        + sum(expected[rule] for rule in ("attack", "attack_doubled", "certify_maps", "certify_attack"))
        and suffixes[".pt"] == 1
    )
    assert suffixes[".csv"] >= 4
    print(
        f"\ntiny DAG: {len(records)} SLURM jobs + {result.stdout.count('localrule ')} local in {cluster_seconds:.0f} s "
        f"on SLURM; grouped {len(grouped_records)} SLURM jobs (the group: {group['ReqCPUS']} CPU, {group['ReqMem']}, "
        f"{group['Timelimit']}, {len(steps)} steps) in {grouped_seconds:.0f} s; {local_seconds:.0f} s locally "
        f"(--cores 2; all three at the same time); {len(compared)} result files identical"
    )


BROKEN_CONFIG = """\
run: clusterfail
model: {name: alexnet_mini, weights: null}
images:
  - {id: mini_test_1, source: "minidata:test:1", target: 1}
  - {id: broken, source: images/broken.png, target: 3}
layers: [pool5]
windows: {start: 2, stop: 12, step: 1}
knobs: [nonzero_mean]
chains: []
gammas: [0.5]
seed: 0
batch_size: 4
threads: 1
device: cpu
"""


@pytest.mark.cluster
@pytest.mark.slow
def test_failed_cluster_job_is_reported_logged_and_resumed_after_the_fix(
    slurm_env: dict[str, str], tmp_path: Path
) -> None:
    """An unreadable image fails its SLURM job: reported, logged, the rest goes on; after the fix only what is missing runs."""
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "broken.png").write_bytes(b"this is not a PNG\n")
    (tmp_path / "broken.yaml").write_text(BROKEN_CONFIG)
    targets = [f"results/clusterfail/sweeps/{image}/pool5/nonzero_mean.nc" for image in ("mini_test_1", "broken")]
    command = [
        *targets,
        *cluster_options(),
        "--configfile",
        str(tmp_path / "broken.yaml"),
    ]  # targets first: options take lists

    failed = snakemake(tmp_path, *command, check=False)
    out = failed.stdout
    assert failed.returncode != 0, out[-3000:]
    assert re.search(r"Error in rule extract:\n\s+message: SLURM-job '\d+' failed, SLURM status is: 'FAILED'", out), (
        out[-3000:]
    )
    rule_log = tmp_path / "logs" / "clusterfail" / "extract" / "broken.log"
    assert "is not a readable image" in rule_log.read_text()
    assert (
        "logs/clusterfail/extract/broken.log" in out and "is not a readable image" in out
    )  # named, and shown in place
    slurm_logs = list((tmp_path / ".snakemake" / "slurm_logs" / "rule_extract" / "broken").glob("*.log"))
    assert len(slurm_logs) == 1 and str(slurm_logs[0]) in out  # a failed job's SLURM log is kept
    assert sorted(slurm_jobs(out, slurm_env)) == [
        ("extract", "COMPLETED"),
        ("extract", "FAILED"),
        ("sweep", "COMPLETED"),
    ]
    done = [tmp_path / "results/clusterfail/ifms/mini_test_1.nc", tmp_path / targets[0]]  # the other image went on
    mtimes = [path.stat().st_mtime_ns for path in done]
    assert not (tmp_path / "results/clusterfail/ifms/broken.nc").exists()

    pixels = np.indices((48, 64)).sum(axis=0).astype(np.uint8) * 3
    Image.fromarray(np.stack([pixels, pixels[::-1], 255 - pixels], axis=-1)).save(tmp_path / "images" / "broken.png")
    fixed = snakemake(tmp_path, *command)  # the same command after the fix
    assert sorted(slurm_jobs(fixed.stdout, slurm_env)) == [("extract", "COMPLETED"), ("sweep", "COMPLETED")]
    assert re.findall(r"^\s+wildcards: (.*)$", fixed.stdout, re.M) == ["image=broken", "image=broken, layer=pool5"]
    assert [path.stat().st_mtime_ns for path in done] == mtimes  # what succeeded before was not run again
    assert all((tmp_path / target).stat().st_size > 0 for target in targets)
