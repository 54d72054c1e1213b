"""The DAG on a real one-node SLURM through profiles/slurm and snakemake-executor-plugin-slurm.

The cluster tests install SLURM with apt-get, start it (tests/cluster/start_cluster.sh) for the session and always stop
it by PID (stop_cluster.sh); without root or apt they are skipped with the reason. They check that the tiny config gives
byte-identical results on SLURM and locally, with one SLURM job per image (rule `image`: extraction, sweeps, chained
sweeps and gamma controller in one process) that asks SLURM for the CPUs, memory and time limit the rule declares, and
that a failed cluster job is reported, logged and resumed after a fix. Without SLURM, a dry run checks that the profile
parses and that the rules' own resources win over its defaults.
"""

from __future__ import annotations

import collections
import concurrent.futures
import math
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from PIL import Image
from workflow_runner import snakemake

from ifmsan.workflow.plan import planned_jobs

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
TINY = REPO / "tests" / "data" / "tiny.yaml"
SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"
PROFILE = REPO / "profiles" / "slurm"
# Rules the Snakefile declares as localrules: they run beside snakemake, never through sbatch.
LOCAL_RULES = {
    "fetch_weights",
    "convert_weights",
    "fetch_mean_file",
    "fetch_image",
    "tables",
    "figures",
    "notebook",
    "attack_sweeps_key",
    "attack_report",
    "certify_report",
    "all",
}
# The per-image rules before the one `image` rule replaced them: no job of theirs may come back.
FORMER_IMAGE_RULES = {"extract", "sweep", "chain_sweep", "gamma_controller"}


def filled_config(path: Path) -> dict[str, Any]:
    """A config file with the schema's defaults filled in (`workers`, the attacks' and certify's sizes), as the
    Snakefile's validate() fills them before it plans."""
    from snakemake.utils import validate

    config = yaml.safe_load(path.read_text())
    validate(config, str(SCHEMA))
    return config


def image_request(config: dict[str, Any]) -> dict[str, int]:
    """What one `image` job asks a scheduler for under a filled-in config, worked out here from the config alone (not
    by importing workflow/rules/common.smk), so that a change of the rule or of this arithmetic shows up as a mismatch.

    CPUs: threads x workers (each of the job's `workers` pieces at once runs on `threads` torch threads). Memory:
    2000 MB for the model and the IFMs plus 500 per worker. Time: 10 minutes to start, and 10 per round of pieces over
    the workers, where the pieces are the swept layers (the config's layers, then each chained layer for its unchained
    baseline), the chains and the controller's layers.
    """
    assert config["layers"], "`layers: []` means every layer of the model, which this arithmetic does not know"
    swept = list(dict.fromkeys([*config["layers"], *(chain["layer"] for chain in config["chains"])]))
    pieces = len(swept) + len(config["chains"]) + len(config["layers"])
    workers = config["workers"]
    return {
        "cpus": config["threads"] * workers,
        "mem_mb": 2000 + 1000 * workers,
        "runtime": 10 + 10 * math.ceil(pieces / workers),
    }


def dry_run_resources(output: str) -> dict[str, dict[str, str]]:
    """rule -> its resources (name -> value as printed) of each job a `snakemake -n` printed (the last job of a rule
    wins: within a rule they are the same here)."""
    return {
        match["rule"]: dict(re.findall(r"(\w+)=([^,\s]+)", match["resources"]))
        for match in re.finditer(r"^rule (?P<rule>\w+):\n(?:    .*\n)*?    resources: (?P<resources>.*)$", output, re.M)
    }


def cluster_options() -> list[str]:
    """The profile as a user runs it, with the partition and account of the test cluster and a 1 s first status check."""
    settings = yaml.safe_load((PROFILE / "config.yaml").read_text())
    resources = {**settings["default-resources"], "slurm_partition": "debug", "slurm_account": "root"}
    return [
        "--profile",
        str(PROFILE),
        "--default-resources",
        *(f"{key}={value}" for key, value in resources.items()),
        "--slurm-init-seconds-before-status-checks",
        "1",
    ]


def slurm_records(output: str, env: dict[str, str]) -> list[dict[str, str]]:
    """SLURM's accounting record of every job a snakemake run submitted: JobID, State, ReqCPUS, ReqMem, Timelimit and
    rule (from the plugin's job comment)."""
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
    for row in rows:  # the plugin's job comment is rule_<rule>[_wildcards_<values>]
        row["rule"] = re.match(r"rule_(.+?)(?:_wildcards_.*)?$", row["Comment"])[1]
    return rows


def slurm_jobs(output: str, env: dict[str, str]) -> list[tuple[str, str]]:
    """(rule, SLURM state) of every job a snakemake run submitted, as SLURM's accounting recorded them."""
    return [(row["rule"], row["State"]) for row in slurm_records(output, env)]


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
    """profiles/slurm parses with this snakemake and plugin and groups nothing (each image is one job already); the
    image job asks for the CPUs, memory and time its rule declares, the other rules for theirs, and every job sent to
    SLURM gets the profile's placeholders.

    A dry run caps each job's threads at --cores, 1 unless given (a SLURM run does not: the tiny DAG's test checks the
    submitted request with sacct), and the image job's memory and time follow its threads; so this dry run is given
    --cores threads x workers, and shows the request as submitted.
    """
    settings = yaml.safe_load((PROFILE / "config.yaml").read_text())
    assert not {"groups", "group-components"} & settings.keys()
    config = filled_config(TINY)
    request = image_request(config)
    out = snakemake(
        tmp_path, "--profile", str(PROFILE), "-n", "--configfile", str(TINY), "--cores", str(request["cpus"])
    ).stdout
    assert "Using profile" in out and "profiles/slurm" in out
    # A dry run prints the localrules' jobs as `rule X:` too: only the others go to SLURM.
    resources = {rule: values for rule, values in dry_run_resources(out).items() if rule not in LOCAL_RULES}
    assert set(resources) == {rule for rule in planned_jobs(config) if rule not in LOCAL_RULES}
    assert not FORMER_IMAGE_RULES & set(resources)
    threads = re.search(r"^rule image:\n(?:    .*\n)*?    threads: (\d+)$", out, re.M)
    assert threads and int(threads[1]) == request["cpus"], out[-3000:]
    assert resources["image"]["mem_mb"] == str(request["mem_mb"]), resources["image"]
    assert resources["image"]["runtime"] == str(request["runtime"]), resources["image"]
    assert resources["train_mini"]["mem_mb"] == "3000" and resources["train_mini"]["runtime"] == "30"
    assert resources["attack"]["mem_mb"] == str(config["attacks"]["mem_mb"])
    assert resources["attack_doubled"]["runtime"] == str(2 * config["attacks"]["runtime"])
    for rule, values in resources.items():
        assert values["slurm_partition"] == "FILL_IN_PARTITION" and values["slurm_account"] == "FILL_IN_ACCOUNT", rule


def benchmark_row(path: Path) -> dict[str, str]:
    """The one row of a Snakemake benchmark file (s, h:m:s, max_rss, ..., cpu_time, tab-separated), by column."""
    header, row = path.read_text().splitlines()[:2]
    return dict(zip(header.split("\t"), row.split("\t"), strict=True))


@pytest.mark.cluster
@pytest.mark.slow
def test_tiny_dag_on_slurm_gives_the_local_results(
    slurm_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The tiny config locally and through profiles/slurm as it is: the expected SLURM jobs (one `image` job per image
    for its extraction, sweeps, chained sweeps and gamma controller, none of the four rules it replaced), each
    COMPLETED; the image job's request is what its rule declares (threads x workers CPUs, its memory and time limit);
    the localrules beside them; a benchmark file per image job; the local run's bytes on SLURM."""
    config = filled_config(TINY)
    images = len(config["images"])
    attacked = len(config["attacks"]["layers"]) * len(config["attacks"]["knobs"])
    expected = {
        "train_mini": 1,
        "image": images,
        "attack": attacked,
        "attack_doubled": attacked,
        "calibrate": len(config["certify"]["layers"]),
        "certify_maps": images * len(config["certify"]["layers"]),
        "certify_attack": 2 * len(config["certify"]["layers"]) * len(config["certify"]["scales"]),  # budgets B, 2B
    }
    # the same as the package's count (itself checked against snakemake -n), less the localrules
    assert expected == {rule: n for rule, n in planned_jobs(config).items() if rule not in LOCAL_RULES}
    request = image_request(config)
    # more than one CPU, so that a request of one CPU (the plugin ignoring the rule's threads) fails
    assert request["cpus"] == 2, request
    local, cluster = (tmp_path_factory.mktemp(name) for name in ("local", "slurm"))

    def timed(workdir: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], float]:
        started = time.monotonic()
        return snakemake(workdir, *args), time.monotonic() - started

    # The two runs go side by side: the SLURM run spends most of its time waiting between status checks.
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        local_run = pool.submit(timed, local, "--cores", "2", "--configfile", str(TINY))
        result, cluster_seconds = timed(cluster, *cluster_options(), "--configfile", str(TINY))
        _, local_seconds = local_run.result()

    # Every job but the localrules went through sbatch and SLURM recorded it COMPLETED: one image job per image.
    records = slurm_records(result.stdout, slurm_env)
    jobs = [(row["rule"], row["State"]) for row in records]
    assert collections.Counter(rule for rule, _ in jobs) == expected, jobs
    assert {state for _, state in jobs} == {"COMPLETED"}, jobs
    assert not (LOCAL_RULES | FORMER_IMAGE_RULES) & {rule for rule, _ in jobs}
    assert {"tables", "figures"} <= set(re.findall(r"^localrule (\w+):", result.stdout, re.M))

    # The image job asked SLURM for threads x workers CPUs (the plugin's --cpus-per-task), the rule's memory and its
    # time limit, as sacct recorded them.
    image_jobs = [row for row in records if row["rule"] == "image"]
    for row in image_jobs:
        asked = {"cpus": int(row["ReqCPUS"]), "mem_mb": megabytes(row["ReqMem"]), "runtime": minutes(row["Timelimit"])}
        assert asked == request, (row, request)

    # Each image job wrote its benchmark file (wall seconds, max_rss, cpu_time), locally and on the node alike.
    for workdir in (local, cluster):
        for image in config["images"]:
            row = benchmark_row(workdir / "logs" / config["run"] / "benchmarks" / "image" / f"{image['id']}.tsv")
            assert float(row["s"]) > 0 and {"max_rss", "cpu_time"} <= row.keys(), (workdir, row)

    # Byte-identical results (the rules pass fixed --threads; an image job's files do not depend on its workers);
    # metrics.json holds a wall time, notebooks their run times.
    compared = assert_same_results(local / "results", cluster / "results")
    suffixes = collections.Counter(name.suffix for name in compared)
    swept = dict.fromkeys([*config["layers"], *(chain["layer"] for chain in config["chains"])])
    assert (
        suffixes[".nc"]
        == images * (1 + len(swept) * len(config["knobs"]) + len(config["chains"]))
        + sum(expected[rule] for rule in ("attack", "attack_doubled", "certify_maps", "certify_attack"))
        and suffixes[".pt"] == 1
    )
    assert suffixes[".csv"] >= 4
    (image_job,) = image_jobs
    print(
        f"\ntiny DAG: {len(records)} SLURM jobs + {result.stdout.count('localrule ')} local in {cluster_seconds:.0f} s "
        f"on SLURM (the image job: {image_job['ReqCPUS']} CPU, {image_job['ReqMem']}, {image_job['Timelimit']}); "
        f"{local_seconds:.0f} s locally (--cores 2; both at the same time); {len(compared)} result files identical"
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
    """An unreadable image fails its image job on SLURM: reported, logged, the other image's job goes on; after the fix
    only the broken image's job runs again, and the files the other one wrote stay as they were."""
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
    reported = r"Error in rule image:\n\s+message: SLURM-job '\d+' failed, SLURM status is: 'FAILED'"
    assert re.search(reported, out), out[-3000:]
    rule_log = tmp_path / "logs" / "clusterfail" / "image" / "broken.log"
    assert "ifmsan image: error: image images/broken.png" in rule_log.read_text()
    assert "is not a readable image" in rule_log.read_text()
    assert "logs/clusterfail/image/broken.log" in out and "is not a readable image" in out  # named, and shown in place
    slurm_logs = list((tmp_path / ".snakemake" / "slurm_logs" / "rule_image" / "broken").glob("*.log"))
    assert len(slurm_logs) == 1 and str(slurm_logs[0]) in out  # a failed job's SLURM log is kept
    assert sorted(slurm_jobs(out, slurm_env)) == [("image", "COMPLETED"), ("image", "FAILED")]
    done = [  # the other image went on: its IFMs, the targeted sweep and its controller
        tmp_path / "results/clusterfail/ifms/mini_test_1.nc",
        tmp_path / targets[0],
        tmp_path / "results/clusterfail/gamma/controller/mini_test_1.csv",
    ]
    mtimes = [path.stat().st_mtime_ns for path in done]
    results = tmp_path / "results" / "clusterfail"  # no file of the broken image is left: IFMs, sweeps, controller
    left = [path.relative_to(results) for path in results.rglob("*") if path.is_file()]
    assert not [path for path in left if "broken" in path.with_suffix("").parts], left

    pixels = np.indices((48, 64)).sum(axis=0).astype(np.uint8) * 3
    Image.fromarray(np.stack([pixels, pixels[::-1], 255 - pixels], axis=-1)).save(tmp_path / "images" / "broken.png")
    fixed = snakemake(tmp_path, *command)  # the same command after the fix
    assert sorted(slurm_jobs(fixed.stdout, slurm_env)) == [("image", "COMPLETED")]
    assert re.findall(r"^\s+wildcards: (.*)$", fixed.stdout, re.M) == ["image=broken"]
    assert [path.stat().st_mtime_ns for path in done] == mtimes  # what succeeded before was not run again
    assert all((tmp_path / target).stat().st_size > 0 for target in targets)
