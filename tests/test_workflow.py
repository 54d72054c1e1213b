"""The Snakemake DAG end to end on a tiny config, its plans for the paper configs, and recovery after SIGKILL."""

from __future__ import annotations

import contextlib
import csv
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest
import yaml
from workflow_runner import shell_commands, snakemake

from ifmsan._shared.atomic import owner_tag
from ifmsan.core import metrics
from ifmsan.steps.io import read_netcdf

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "tests" / "data" / "tiny.yaml"
BIN = Path(sys.executable).parent


def job_counts(text: str) -> dict[str, int]:
    """The 'Job stats' table of a dry run as {rule: count}."""
    block = text.split("Job stats:", 1)[1]
    counts = {}
    for line in block.splitlines()[3:]:
        match = re.match(r"^(\w+)\s+(\d+)$", line.strip())
        if not match:
            break
        counts[match[1]] = int(match[2])
    return counts


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    workdir = tmp_path_factory.mktemp("tiny")
    snakemake(workdir, "--cores", "2", "--configfile", str(TINY))
    return workdir


def test_tiny_dag_tables_agree_with_the_sweeps(tiny_run: Path) -> None:
    out = tiny_run / "results" / "tiny"
    table1 = pd.read_csv(out / "tables" / "table1.csv")
    sweeps = {(p.parent.name, p.stem): read_netcdf(p) for p in (out / "sweeps" / "mini_test_1").glob("*/*.nc")}
    assert set(sweeps) == {
        (layer, knob) for layer in ("norm2", "pool5") for knob in ("nonzero_mean", "first", "gaussian")
    }
    for (layer, knob), sweep in sweeps.items():
        row = table1[(table1["layer"] == layer) & (table1["knob"] == knob)]
        assert len(row) == 1, (layer, knob)
        p = sweep["probability"].values
        distinct = len(set(np.round(p, 4).tolist()))
        assert row["n_distinct"].iloc[0] == distinct
        assert row["eff_san"].iloc[0] == pytest.approx(distinct / len(p))
        assert row["zero_ratio"].iloc[0] == pytest.approx(sweep.attrs["zero_ratio"])
    table2 = pd.read_csv(out / "tables" / "table2.csv")
    chained = read_netcdf(out / "chains" / "mini_test_1" / "pool5" / "norm2@3.nc")
    assert chained.attrs["chain"] == "norm2@3"
    assert len(table2) == 2 and table2["eff_san"].iloc[1] == pytest.approx(
        metrics.eff_san(chained["probability"].values)
    )
    report = pd.read_csv(out / "tables" / "gamma_report.csv")
    base = sweeps[("pool5", "nonzero_mean")]
    for gamma in (0.01, 0.5):
        row = report[
            (report["layer"] == "pool5")
            & (report["knob"] == "nonzero_mean")
            & (report["chain"].fillna("") == "")
            & (report["gamma"] == gamma)
        ]
        expected = metrics.n_star_for_gamma(
            base["window"].values, base["probability"].values, p0=base.attrs["p0"], gamma=gamma
        )
        got = row["n_star"].iloc[0]
        assert (pd.isna(got) and expected is None) or got == expected
    with open(out / "gamma" / "controller" / "mini_test_1.csv") as handle:
        controller = list(csv.DictReader(handle))
    assert len(controller) == 4
    for row in controller:  # the tables job checked the controller against the sweeps; so do we, independently
        base = sweeps[(row["layer"], "nonzero_mean")]
        expected = metrics.n_star_for_gamma(
            base["window"].values, base["probability"].values, p0=base.attrs["p0"], gamma=float(row["gamma"])
        )
        assert (row["window"] == "" and expected is None) or int(row["window"]) == expected, row
    log = (tiny_run / "logs" / "tiny" / "tables.log").read_text()
    assert "the gamma controller agrees with the sweeps' n*(gamma) in all 4 rows checked" in log
    # the attack stage scored the sweeps' n*(γ): with one image it is that image's n*, as in the γ report
    attacks = pd.read_csv(out / "tables" / "attack_summary.csv")
    assert sorted(zip(attacks["knob"], attacks["gamma"], strict=True)) == [("gaussian", 0.5), ("nonzero_mean", 0.5)]
    for knob in ("nonzero_mean", "gaussian"):
        sweep = sweeps[("pool5", knob)]
        values = sweep[sweep.attrs["parameter"]].values
        expected = metrics.n_star_for_gamma(values, sweep["probability"].values, p0=sweep.attrs["p0"], gamma=0.5)
        got = attacks.loc[attacks["knob"] == knob, "n_star"].iloc[0]
        assert (pd.isna(got) and expected is None) or got == expected, (knob, got, expected)
        attack = read_netcdf(out / "attacks" / "pool5" / f"{knob}.nc")
        assert (
            attack["parameter"].values[0] == "unsanitized" and attack.attrs["config_hash"] == sweep.attrs["config_hash"]
        )


def test_tiny_dag_figures_notebooks_and_report(tiny_run: Path) -> None:
    out = tiny_run / "results" / "tiny"
    for name in ("figure2", "figure5", "heatmap", "effsan", "knob_coverage_norm2", "knob_coverage_pool5"):
        for ext in ("png", "pdf"):
            path = out / "figures" / "mini_test_1" / f"{name}.{ext}"
            assert path.stat().st_size > 1000, path
    for name in ("frontier_pool5", "reconstructions_pool5_nonzero_mean", "reconstructions_pool5_gaussian"):
        for ext in ("png", "pdf"):
            assert (out / "figures" / "attacks" / f"{name}.{ext}").stat().st_size > 1000, name
    assert (out / "figures" / "certify" / "certificate_pool5.png").stat().st_size > 1000
    summary = pd.read_csv(out / "tables" / "certified_summary.csv")
    assert list(summary["target"]) == ["mean_image", "psnr<=20dB", "psnr<=25dB"] and set(summary["gamma"]) == {0.5}
    beside = pd.read_csv(out / "tables" / "certify_attacks.csv")
    assert (
        list(beside["window"]) == [3] and (beside["mse_floor"] > 0).all() and (beside["optimization_mse_b2"] > 0).all()
    )
    attack_md = (out / "tables" / "attack_summary.md").read_text()
    assert "ε adaptive 2B" in attack_md and "holds at B only" not in attack_md  # the DAG always runs the 2B twins
    for name in ("inspect_ifms", "compare_knobs", "attacks", "certify"):
        notebook = nbformat.read(out / "notebooks" / f"{name}.ipynb", as_version=4)
        code = [cell for cell in notebook.cells if cell.cell_type == "code"]
        assert all(cell.outputs is not None for cell in code)
        assert not any(o.get("output_type") == "error" for cell in code for o in cell.outputs)
        assert any(o.get("output_type") == "display_data" for cell in code for o in cell.outputs)  # figures drawn
        source = nbformat.read(REPO / "notebooks" / f"{name}.ipynb", as_version=4)
        assert all(not cell.get("outputs") for cell in source.cells if cell.cell_type == "code"), "stored with outputs"
    snakemake(tiny_run, "--configfile", str(TINY), "--report", "report.html")
    html = (tiny_run / "report.html").read_text(errors="replace")
    assert "figure2.png" in html and "table1.csv" in html and "Paper Table 1" in html


def session_processes(sid: int) -> dict[int, str]:
    """Live (not zombie) processes of a session, pid -> command line, from /proc."""
    found = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if fields[0] != "Z" and int(fields[3]) == sid:  # state, ppid, pgrp, session
                found[int(stat.parent.name)] = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, IndexError, ValueError):
            continue
    return found


def without_timings(value: object) -> object:
    """model/metrics.json without its wall and CPU times (keys with 'seconds'), the one part that may vary."""
    if isinstance(value, dict):
        return {k: without_timings(v) for k, v in value.items() if "seconds" not in k}
    if isinstance(value, list):
        return [without_timings(v) for v in value]
    return value


@pytest.mark.slow
def test_rerun_after_sigkill_finishes_with_identical_results(tiny_run: Path, tmp_path: Path) -> None:
    """SIGKILL Snakemake alone while a job runs: the job stops by itself without outputs, and after --unlock
    and --rerun-incomplete every output (tables, figures, notebooks, model, sweeps) equals a clean run's bytes."""
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    command = [
        str(BIN / "snakemake"),
        "--snakefile",
        str(REPO / "Snakefile"),
        "--directory",
        str(tmp_path),
        "--cores",
        "1",
        "--configfile",
        str(TINY),
    ]
    process = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, start_new_session=True
    )
    try:
        deadline, job = time.monotonic() + 300, None
        while time.monotonic() < deadline and job is None and process.poll() is None:
            job = next((cmd for cmd in session_processes(process.pid).values() if "ifmsan image " in cmd), None)
            time.sleep(0.05)
        assert job is not None, "the run finished before it could be interrupted"
        os.kill(process.pid, signal.SIGKILL)  # Snakemake alone: its job is orphaned and must notice
        process.wait()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and session_processes(process.pid):
            time.sleep(0.2)
        assert not session_processes(process.pid), "jobs kept running after Snakemake was killed"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    log = (tmp_path / re.search(r"> '?(logs/[^' ]+\.log)'? 2>&1", job)[1]).read_text()  # an image job
    assert "IFMSAN_PARENT_PID) that started this job is gone" in log, log
    for option in ("--ifms-out", "--sweeps-dir", "--chains-dir", "--controller-out"):
        out = tmp_path / re.search(rf" {option} '?([^' ]+)'?", job)[1]
        assert not (any(out.rglob("*.*")) if out.is_dir() else out.exists()), f"the stopped job left {out}"
    assert not (tmp_path / "results" / "tiny" / "tables" / "table1.csv").exists()
    locked = snakemake(tmp_path, "--cores", "2", "--configfile", str(TINY), check=False)
    assert locked.returncode != 0 and "--unlock" in locked.stdout + locked.stderr  # a killed run leaves its lock
    snakemake(tmp_path, "--configfile", str(TINY), "--unlock")
    # What a job killed with SIGKILL mid-write leaves (a kill -9 of the whole group): an empty temporary sibling of
    # an output, named for its dead writer. The job that writes that output again removes it.
    dead = subprocess.Popen(["true"])
    dead.wait()
    tables = tmp_path / "results" / "tiny" / "tables"
    tables.mkdir(parents=True, exist_ok=True)
    leftover = tables / f".table1.csv.{dead.pid}@{owner_tag().split('@', 1)[1]}.x1y2z3.part.csv"
    leftover.touch()
    snakemake(tmp_path, "--cores", "2", "--configfile", str(TINY), "--rerun-incomplete")
    assert not leftover.exists(), "a killed writer's temporary file survived the rerun"
    first, second = tiny_run / "results" / "tiny", tmp_path / "results" / "tiny"
    outputs = sorted(path.relative_to(first) for path in first.rglob("*") if path.is_file())
    assert outputs == sorted(path.relative_to(second) for path in second.rglob("*") if path.is_file())
    for relative in outputs:
        if relative.name == "metrics.json":
            old, new = (json.loads((root / relative).read_text()) for root in (first, second))
            assert without_timings(new) == without_timings(old)
            continue
        assert (second / relative).read_bytes() == (first / relative).read_bytes(), relative
    assert {path.suffix for path in outputs} >= {".nc", ".csv", ".md", ".png", ".pdf", ".ipynb", ".pt", ".json"}
    assert len(outputs) >= 40


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        (
            "config/config.yaml",
            {
                "fetch_weights": 1,
                "convert_weights": 1,
                "fetch_mean_file": 1,
                "fetch_image": 1,
                "image": 1,
                "tables": 1,
                "figures": 1,
                "notebook": 2,
            },
        ),
        (
            "config/imagenet16.yaml",
            {
                "fetch_weights": 1,
                "convert_weights": 1,
                "fetch_mean_file": 1,
                "fetch_image": 16,
                "image": 16,
                "tables": 1,
                "figures": 16,
                "notebook": 2,
            },
        ),
        (
            "config/real.yaml",
            {
                "image": 5,
                "tables": 1,
                "figures": 5,
                "notebook": 4,
                "attack_sweeps_key": 4,
                "attack": 4,
                "attack_doubled": 4,
                "attack_report": 1,
                "calibrate": 2,
                "certify_maps": 10,  # 5 images x 2 layers
                "certify_attack": 8,  # 2 layers x hold_gaussian x 2 scales x budgets B, 2B
                "certify_report": 1,
            },
        ),
        (
            "config/imagenet16_lite0.yaml",
            {
                "fetch_image": 16,
                "image": 16,
                "tables": 1,
                "figures": 16,
                "notebook": 2,
            },
        ),
        (
            "config/demo.yaml",
            {
                "train_mini": 1,
                "image": 3,
                "tables": 1,
                "figures": 3,
                "notebook": 4,
                "attack_sweeps_key": 4,
                "attack": 4,
                "attack_doubled": 4,
                "attack_report": 1,
                "calibrate": 1,
                "certify_maps": 3,
                "certify_attack": 4,  # conv2 x hold_gaussian x 2 scales x budgets B, 2B
                "certify_report": 1,
            },
        ),
        (
            "config/attacks.yaml",
            {
                "train_mini": 1,
                "image": 3,
                "tables": 1,
                "figures": 3,
                "notebook": 4,
                "attack_sweeps_key": 20,
                "attack": 20,
                "attack_doubled": 20,
                "attack_report": 1,
                "calibrate": 3,
                "certify_maps": 9,
                "certify_attack": 30,  # 3 layers x (hold_gaussian: 4 scales, gaussian: 1) x budgets B, 2B
                "certify_report": 1,
            },
        ),
    ],
)
@pytest.mark.slow
def test_configs_plan_the_expected_jobs(tmp_path: Path, config: str, expected: dict[str, int]) -> None:
    result = snakemake(tmp_path, "-n", "--configfile", str(REPO / config), "--quiet", "rules")
    counts = job_counts(result.stdout + result.stderr)
    assert counts.pop("all") == 1 and counts.pop("total") == sum(counts.values()) + 1
    assert counts == expected
    # the package's own count (what docs/scaling.md and config/imagenet1000.yaml's header use) is Snakemake's
    from snakemake.utils import validate

    from ifmsan.workflow.plan import planned_jobs

    settings = yaml.safe_load((REPO / config).read_text())
    validate(settings, str(REPO / "workflow" / "schemas" / "config.schema.yaml"))  # fills in the defaults
    assert planned_jobs(settings) == {**expected, "all": 1}


@pytest.mark.slow
def test_offline_paper_run_stops_at_the_first_download_with_instructions(tmp_path: Path) -> None:
    text = (REPO / "config" / "config.yaml").read_text()
    offline = re.sub(r"url: \S+", "url: http://127.0.0.1:9/unreachable", text)
    (tmp_path / "offline.yaml").write_text(offline)
    result = snakemake(
        tmp_path, "--cores", "1", "--configfile", str(tmp_path / "offline.yaml"), check=False, timeout=300
    )
    assert result.returncode != 0
    logs = "\n".join(p.read_text() for p in (tmp_path / "logs").rglob("*.log"))
    assert "place it by hand at data/" in logs and "make demo" in logs
    assert not any((tmp_path / "data").glob("*.caffemodel")) and not (tmp_path / "results").exists()


@pytest.mark.slow
def test_schema_rejects_ids_unsafe_as_paths(tmp_path: Path) -> None:
    bad = (REPO / "config" / "demo.yaml").read_text().replace("id: mini_test_0", "id: ../escape")
    (tmp_path / "bad.yaml").write_text(bad)
    result = snakemake(tmp_path, "-n", "--configfile", str(tmp_path / "bad.yaml"), check=False)
    assert result.returncode != 0 and "does not match" in (result.stdout + result.stderr)
    assert not (tmp_path / "results").exists()


@pytest.mark.slow
def test_lint_is_clean() -> None:
    for extra in ([], ["--configfile", str(REPO / "config" / "demo.yaml")]):
        result = snakemake(REPO, "--lint", *extra, check=False)
        assert result.returncode == 0 and "Congratulations" in result.stdout + result.stderr, result.stdout[-3000:]
    assert shutil.which("ifmsan", path=str(BIN))


def option(args: list[str], name: str) -> list[str]:
    """The values after --name, up to the next option."""
    start = args.index(name) + 1
    end = next((i for i in range(start, len(args)) if args[i].startswith("--")), len(args))
    return args[start:end]


@pytest.fixture(scope="module")
def own_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Tiny without a chains key, run `mine`, and image ids equal to layer names: merged into the paper config it
    would gain the paper's chains and images; its figures jobs must each get only their own image's sweeps."""
    import yaml

    config = yaml.safe_load(TINY.read_text())
    del config["chains"]
    config["run"] = "mine"
    config["images"] = [{"id": "pool5", "source": "minidata:test:1"}, {"id": "norm2", "source": "minidata:test:2"}]
    path = tmp_path_factory.mktemp("config") / "mine.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.slow
def test_config_alone_adjusts_the_paper_config(tmp_path: Path) -> None:
    text = snakemake(tmp_path, "-n", "-p", "--config", "threads=2").stdout
    [job] = shell_commands(text, "image")  # one image, one job
    assert len(option(job, "--layers")) == 13 and job.count("--chain") == 2  # the paper's 13 layers and 2 chains
    assert option(job, "--threads") == ["2"] and "run=paper" in job


@pytest.mark.slow
def test_configfile_replaces_the_paper_config(tmp_path: Path, own_config: Path) -> None:
    text = snakemake(tmp_path, "-n", "-p", "--configfile", str(own_config)).stdout
    jobs = shell_commands(text, "image")
    assert len(jobs) == 2 and not any("--chain" in args for args in jobs)  # 2 images, no chains
    assert all(option(args, "--layers") == ["norm2", "pool5"] for args in jobs)
    assert all(option(args, "--threads") == ["1"] and "run=mine" in args for args in jobs)


@pytest.mark.slow
def test_configfile_and_config_together_and_figures_get_only_their_images_sweeps(
    tmp_path: Path, own_config: Path
) -> None:
    text = snakemake(tmp_path, "-n", "-p", "--configfile", str(own_config), "--config", "threads=3", "run=both").stdout
    jobs = shell_commands(text, "image")
    assert len(jobs) == 2 and all(option(args, "--threads") == ["3"] and "run=both" in args for args in jobs)
    figures = {option(args, "--image")[0]: option(args, "--sweeps") for args in shell_commands(text, "figures")}
    assert set(figures) == {"pool5", "norm2"}
    for image, paths in figures.items():
        expected = {
            f"results/both/sweeps/{image}/{layer}/{knob}.nc"
            for layer in ("norm2", "pool5")
            for knob in ("nonzero_mean", "first", "gaussian")
        }
        assert set(paths) == expected
