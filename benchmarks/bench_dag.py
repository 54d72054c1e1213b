"""DAG benchmark: wall time and efficiency of whole Snakemake runs of the paper's DAG, served from local files.

For each chosen config (`paper`: config/config.yaml, BVLC AlexNet on the king penguin, 13 layers x 2 knobs, chains and
the γ controller; `imagenet16`: config/imagenet16.yaml, the 16 ImageNet sample images) it writes a full-size BVLC
AlexNet caffemodel with seeded random weights (nothing can be downloaded here), rewrites the config's downloads as
file:// URLs with their real checksums (weights, Caffe's mean file and the images, found by file name in --samples),
runs `snakemake --cores N` in a fresh folder and reports:

- wall_s: the whole DAG, from `snakemake` start to exit (fetches, conversion, extract, sweeps, γ, tables, figures,
  notebooks);
- per rule, from the `benchmark:` file Snakemake writes for every job (logs/<run>/benchmarks/<rule>/...tsv): jobs,
  the sum of their wall seconds (`s`), of their sampled CPU seconds (`cpu_time`: Snakemake samples a job every 0.5 s
  for its first 15 s, then every 30 s, so this is a lower bound) and the largest `max_rss` (MB) of one job;
- efficiency = sweep compute / (wall_s x cores), the share of the machine the sweeps get. Sweep compute is the CPU
  seconds the image jobs' threads spent inside the sweeps and chained sweeps (each job's `pieces:` line: per-thread
  CPU time, which no Snakemake benchmark can see inside a job); all_compute_efficiency adds the γ controller's
  searches. An earlier revision that logs none gets the current run's figure (the same work);
- files and bytes per image under results/ (for docs/scaling.md).

With --before REV the same DAG also runs with the code of git revision REV (`git archive`, its Snakefile and its
src/ on PYTHONPATH ahead of the installed ifmsan), right after the current code's run, so the two compare side by
side. Results go to benchmarks/results/dag-<time>.json. Run it as `make bench-dag` or
`.venv/bin/python benchmarks/bench_dag.py --help`.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import resource
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ifmsan._shared.hashing import file_checksum

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
CONFIGS = {"paper": ROOT / "config" / "config.yaml", "imagenet16": ROOT / "config" / "imagenet16.yaml"}
COMPUTE_LOGS = ("image", "extract", "sweep", "chains", "gamma")
"""Log folders of the per-image compute jobs: `image` now, the four rules it replaced in earlier revisions."""
PIECES = re.compile(r"pieces: sweep_cpu_s=(?P<sweep>[\d.]+) controller_cpu_s=(?P<controller>[\d.]+)")
"""An image job's log line: CPU seconds of its sweeps (chains included) and of its controller searches."""


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The benchmark's options; the defaults run both DAGs with the current code at --cores 2."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", default="paper,imagenet16", help="comma list of paper, imagenet16 (default: both)")
    parser.add_argument("--cores", type=int, default=2, help="snakemake --cores (default 2)")
    parser.add_argument(
        "--samples",
        type=Path,
        default=Path(os.environ.get("IFMSAN_SAMPLES", ROOT / "data" / "samples")),
        help="folder holding imagenet-samples/*.JPEG and caffe/ilsvrc_2012_mean.npy (default: data/samples or "
        "$IFMSAN_SAMPLES); without it the paper config uses skimage's chelsea and imagenet16 is skipped",
    )
    parser.add_argument("--before", metavar="REV", help="also run each DAG with the code of git revision REV")
    parser.add_argument("--keep", type=Path, help="keep the run folders under this folder (default: deleted)")
    parser.add_argument(
        "--snakemake-args", default="", help="extra snakemake options for every run, e.g. '--scheduler greedy'"
    )
    args = parser.parse_args(argv)
    args.configs = [name.strip() for name in args.configs.split(",") if name.strip()]
    unknown = [name for name in args.configs if name not in CONFIGS]
    if unknown or not args.configs:
        parser.error(f"--configs: unknown {unknown}; expected a comma list of {', '.join(CONFIGS)}")
    if args.cores < 1:
        parser.error(f"--cores must be >= 1, got {args.cores}")
    return args


def bvlc_caffemodel(cache: Path) -> Path:
    """A full-size BVLC AlexNet caffemodel with seeded random weights (tests/caffemodel_writer.py), written once."""
    path = cache / "bvlc_alexnet_seed0.caffemodel"
    if not path.is_file():
        sys.path.insert(0, str(ROOT / "tests"))
        from caffemodel_writer import bvlc_random_blobs, write_caffemodel

        cache.mkdir(parents=True, exist_ok=True)
        write_caffemodel(path, bvlc_random_blobs(0))
    return path


def mean_file(samples: Path, cache: Path) -> Path:
    """Caffe's ilsvrc_2012_mean.npy from --samples, else a synthetic one of its shape (3, 256, 256)."""
    real = samples / "caffe" / "ilsvrc_2012_mean.npy"
    if real.is_file():
        return real
    import numpy as np

    path = cache / "synthetic_mean.npy"
    if not path.is_file():
        cache.mkdir(parents=True, exist_ok=True)
        np.save(path, np.full((3, 256, 256), 110.0))
    return path


def local_config(name: str, *, samples: Path, cache: Path) -> dict[str, Any] | None:
    """The config with every download served from a local file (file:// URL and its real checksum), or None."""
    import yaml

    config = yaml.safe_load(CONFIGS[name].read_text())
    weights = bvlc_caffemodel(cache)
    config["model"]["weights"] = {
        "url": weights.as_uri(),
        "sha1": file_checksum(weights, algorithm="sha1"),
        "file": "bvlc_alexnet.caffemodel",
    }
    mean = mean_file(samples, cache)
    config["model"]["mean_file"] = {
        "url": mean.as_uri(),
        "sha256": file_checksum(mean, algorithm="sha256"),
        "file": "ilsvrc_2012_mean.npy",
    }
    images = []
    for image in config["images"]:
        local = samples / "imagenet-samples" / str(image["source"]).rsplit("/", 1)[-1]
        if local.is_file():
            images.append({**image, "source": local.as_uri(), "sha256": file_checksum(local, algorithm="sha256")})
        elif name == "paper":
            images.append({"id": image["id"], "source": "skimage:chelsea", "target": image.get("target")})
        else:
            print(f"{name}: {local} not found; skipped (give --samples)", file=sys.stderr)
            return None
    config["images"] = images
    return config


def source_tree(revision: str, folder: Path) -> Path:
    """The files of git revision `revision` (git archive) unpacked into folder/src-<rev>."""
    tree = folder / f"src-{revision}"
    tree.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", revision], check=True, capture_output=True).stdout
    with tempfile.TemporaryFile() as handle:
        handle.write(archive)
        handle.seek(0)
        with tarfile.open(fileobj=handle) as tar:
            tar.extractall(tree, filter="data")
    return tree


def tool_env(tree: Path) -> dict[str, str]:
    """PATH with this venv's tools first; for an earlier revision's tree, its src/ on PYTHONPATH and an `ifmsan`
    command that calls that revision's cli.main (the venv's entry point names today's)."""
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    env = dict(os.environ, PATH=path)
    if tree != ROOT:
        env["PYTHONPATH"] = str(tree / "src")
        shim = tree / "bin" / "ifmsan"
        if not shim.exists():
            shim.parent.mkdir(parents=True)
            shim.write_text(f"#!{sys.executable}\nimport sys\nfrom ifmsan.cli import main\nsys.exit(main())\n")
            shim.chmod(0o755)
        env["PATH"] = f"{shim.parent}{os.pathsep}{path}"
    return env


def warm_up(tree: Path, workdir: Path, config: dict[str, Any]) -> None:
    """Compile and cache the tree's numba kernels (first use in a fresh tree) outside the timed run: one small sweep."""
    ifmsan = [sys.executable, "-m", "ifmsan.cli"]
    env = tool_env(tree)
    warm = workdir / "warm"
    warm.mkdir(parents=True)
    image = config["images"][0]["source"]
    image = image.removeprefix("file://") if image.startswith("file://") else image
    subprocess.run([*ifmsan, "extract", "--model", "alexnet_mini", "--image", image, "--image-id", "warm",
                    "--out", str(warm / "ifms.nc")], check=True, capture_output=True, env=env)  # fmt: skip
    subprocess.run([*ifmsan, "sweep", "--model", "alexnet_mini", "--ifms", str(warm / "ifms.nc"), "--layer", "conv1",
                    "--values", "2:100", "--out", str(warm / "sweep.nc")], check=True, capture_output=True, env=env)  # fmt: skip
    shutil.rmtree(warm)


def job_costs(workdir: Path) -> dict[str, dict[str, float]]:
    """Per rule, from its jobs' benchmark files: jobs, summed wall and (sampled) CPU seconds, the largest max_rss."""
    import csv

    rules: dict[str, dict[str, float]] = {}
    for path in sorted(workdir.glob("logs/*/benchmarks/*/**/*.tsv")) + sorted(workdir.glob("logs/*/benchmarks/*.tsv")):
        parts = path.relative_to(workdir / "logs").parts
        rule = parts[2] if len(parts) > 3 else path.stem
        row = rules.setdefault(rule, {"jobs": 0, "wall_s": 0.0, "cpu_s": 0.0, "max_rss_mb": 0.0})
        with path.open(newline="") as handle:
            for record in csv.DictReader(handle, delimiter="\t"):
                row["jobs"] += 1
                row["wall_s"] += float(record["s"])
                row["cpu_s"] += float(record["cpu_time"]) if record["cpu_time"] not in ("", "NA") else 0.0
                if record["max_rss"] not in ("", "NA"):
                    row["max_rss_mb"] = max(row["max_rss_mb"], float(record["max_rss"]))
    return rules


def compute_logs(workdir: Path) -> int:
    """How many per-image compute jobs ran: their logs (an earlier revision writes no benchmark files)."""
    return sum(len(list(workdir.glob(f"logs/*/{folder}/**/*.log"))) for folder in COMPUTE_LOGS)


def piece_seconds(workdir: Path) -> dict[str, float]:
    """The image jobs' CPU seconds in sweeps and in controller searches, summed over their logs' `pieces:` lines."""
    total = {"sweep": 0.0, "controller": 0.0}
    for log in sorted(workdir.glob("logs/*/image/*.log")):
        match = PIECES.search(log.read_text(errors="replace"))
        if match:
            total["sweep"] += float(match["sweep"])
            total["controller"] += float(match["controller"])
    return total


def files_per_image(workdir: Path, images: Sequence[str]) -> dict[str, Any]:
    """Result files and bytes under results/: per image (paths naming the image) and for the whole run."""
    files = [path for path in (workdir / "results").rglob("*") if path.is_file()]
    per_image = [
        [path for path in files if any(part == image or part.startswith(f"{image}.") for part in path.parts)]
        for image in images
    ]
    count = [len(paths) for paths in per_image]
    size = [sum(path.stat().st_size for path in paths) for paths in per_image]
    return {
        "files": len(files),
        "bytes": sum(path.stat().st_size for path in files),
        "files_per_image": sum(count) / max(1, len(images)),
        "bytes_per_image": sum(size) / max(1, len(images)),
    }


def run_dag(
    name: str, config: dict[str, Any], *, tree: Path, cores: int, folder: Path, extra: Sequence[str] = ()
) -> dict[str, Any]:
    """One timed `snakemake --cores N` of the config with the code in `tree`, in a fresh folder."""
    import yaml

    workdir = folder / f"{name}-{'current' if tree == ROOT else tree.name}"
    workdir.mkdir(parents=True)
    config_path = workdir / "config.yaml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    warm_up(tree, workdir, config)
    snakemake = Path(sys.executable).parent / "snakemake"
    command = [str(snakemake), "--snakefile", str(tree / "Snakefile"), "--directory", str(workdir),
               "--cores", str(cores), "--configfile", str(config_path), *extra]  # fmt: skip
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(command, cwd=workdir, env=tool_env(tree), capture_output=True, text=True)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    if done.returncode != 0:
        raise RuntimeError(f"{name}: snakemake failed ({done.returncode}):\n{done.stderr[-4000:]}")
    steps = re.findall(r"(\d+) of (\d+) steps", done.stderr)
    rules = job_costs(workdir)
    pieces = piece_seconds(workdir)
    sweep_compute, all_compute = pieces["sweep"], pieces["sweep"] + pieces["controller"]
    jobs = int(steps[-1][1]) if steps else None
    result = {
        "config": name,
        "code": "current" if tree == ROOT else tree.name.removeprefix("src-"),
        "cores": cores,
        "command": " ".join(command[1:]),
        "wall_s": wall,
        "cpu_s": cpu,
        "jobs": jobs,
        "processes": None if jobs is None else jobs - 1,  # every job but `all` runs a command
        "compute_jobs_per_image": compute_logs(workdir) / max(1, len(config["images"])),
        "peak_rss_mb": max((row["max_rss_mb"] for row in rules.values()), default=None),
        "rules": rules,
        "sweep_compute_s": sweep_compute,
        "all_compute_s": all_compute,
        "efficiency": sweep_compute / (wall * cores),
        "all_compute_efficiency": all_compute / (wall * cores),
        **files_per_image(workdir, [str(image["id"]) for image in config["images"]]),
    }
    if name == "paper":
        result["startup"] = startup(workdir, config, tree=tree)
    print(
        f"{name} [{result['code']}]: {wall:.1f} s wall, {cpu:.1f} CPU s, {result['jobs']} jobs, sweep compute "
        f"{sweep_compute:.1f} s, "
        f"efficiency {result['efficiency']:.3f} (with the gamma controller {result['all_compute_efficiency']:.3f})",
        flush=True,
    )
    return result


def startup(workdir: Path, config: dict[str, Any], *, tree: Path, reps: int = 5) -> dict[str, Any]:
    """The fc8 sweep of the run's first image through the `ifmsan` command of `tree`, alternating with a bare
    `python -c "import torch"`: the fixed cost of a job against the floor, side by side (medians and ranges)."""
    import statistics

    image = str(config["images"][0]["id"])
    run = str(config.get("run", "paper"))
    weights = workdir / "data" / ("bvlc_alexnet.safetensors" if tree == ROOT else "bvlc_alexnet.caffemodel")
    if not weights.is_file():
        weights = workdir / "data" / "bvlc_alexnet.caffemodel"
    ifms = workdir / "results" / run / "ifms" / f"{image}.nc"
    weights_entry = config["model"]["weights"]
    out = workdir / "startup"
    sweep = ["ifmsan", "sweep", "--model", "bvlc_alexnet", "--weights", str(weights), "--weights-sha1",
             weights_entry["sha1"], "--mean-file", str(workdir / "data" / "ilsvrc_2012_mean.npy"), "--preprocess",
             str(config["model"].get("preprocess", "caffe_cpp")), "--ifms", str(ifms), "--layer", "fc8", "--knob",
             *config["knobs"], "--values", "2:150", "--threads", "1", "--out-dir", str(out)]  # fmt: skip
    bare = [sys.executable, "-c", "import torch"]
    env = tool_env(tree)
    times: dict[str, list[float]] = {"fc8_sweep_s": [], "import_torch_s": []}
    for _ in range(reps):
        for key, command in (("fc8_sweep_s", sweep), ("import_torch_s", bare)):
            shutil.rmtree(out, ignore_errors=True)
            started = time.perf_counter()
            subprocess.run(command, check=True, capture_output=True, env=env, cwd=workdir)
            times[key].append(time.perf_counter() - started)
    shutil.rmtree(out, ignore_errors=True)
    result = {key: {"median": statistics.median(v), "min": min(v), "max": max(v)} for key, v in times.items()}
    result["difference_s"] = result["fc8_sweep_s"]["median"] - result["import_torch_s"]["median"]
    print(
        f"fc8 sweep {result['fc8_sweep_s']['median']:.2f} s against import torch "
        f"{result['import_torch_s']['median']:.2f} s (medians of {reps}): {result['difference_s']:+.2f} s",
        flush=True,
    )
    return result


def print_table(runs: Sequence[dict[str, Any]]) -> None:
    """The runs side by side, then per rule of each run: jobs, summed wall and sampled CPU seconds, largest RSS."""
    print(
        f"\n{'DAG':<11}{'code':<10}{'wall_s':>8}{'cpu_s':>8}{'procs':>6}{'jobs/img':>9}{'eff':>7}{'eff_all':>8}{'rss_MB':>8}"
    )
    for run in runs:
        rss = f"{run['peak_rss_mb']:>8.0f}" if run.get("peak_rss_mb") else f"{'-':>8}"
        print(f"{run['config']:<11}{run['code'][:9]:<10}{run['wall_s']:>8.1f}{run['cpu_s']:>8.1f}{run['processes']:>6}"
              f"{run['compute_jobs_per_image']:>9.1f}{run['efficiency']:>7.3f}{run['all_compute_efficiency']:>8.3f}{rss}")  # fmt: skip
    for run in runs:
        if not run["rules"]:
            continue
        print(f"\n{run['config']} [{run['code']}]: {run['files_per_image']:.1f} files and "
              f"{run['bytes_per_image'] / 1e6:.2f} MB per image; per rule, from its benchmark files")  # fmt: skip
        print(f"  {'rule':<16}{'jobs':>6}{'wall_s':>10}{'cpu_s':>10}{'max_rss_MB':>12}")
        for rule, row in run["rules"].items():
            print(
                f"  {rule:<16}{int(row['jobs']):>6}{row['wall_s']:>10.1f}{row['cpu_s']:>10.1f}{row['max_rss_mb']:>12.0f}"
            )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the chosen DAGs (and with --before, the same with an earlier revision) and write the JSON."""
    args = parse_args(argv)
    cache = RESULTS / "cache"
    runs = []
    with tempfile.TemporaryDirectory(prefix="ifmsan-bench-dag-") as tmp:
        folder = args.keep or Path(tmp)
        trees = [ROOT]
        if args.before:
            trees.append(source_tree(args.before, folder))
        for name in args.configs:
            config = local_config(name, samples=args.samples, cache=cache)
            if config is None:
                continue
            extra = args.snakemake_args.split()
            pair = [run_dag(name, config, tree=tree, cores=args.cores, folder=folder, extra=extra) for tree in trees]
            for before in pair[1:]:  # an earlier revision logs no pieces: its sweeps did the current run's compute
                before["sweep_compute_s"] = pair[0]["sweep_compute_s"]
                before["all_compute_s"] = pair[0]["all_compute_s"]
                before["efficiency"] = pair[0]["sweep_compute_s"] / (before["wall_s"] * args.cores)
                before["all_compute_efficiency"] = pair[0]["all_compute_s"] / (before["wall_s"] * args.cores)
                before["efficiency_note"] = "sweep compute taken from the current code's run of the same DAG"
                print(
                    f"{name} [{before['code']}]: efficiency {before['efficiency']:.3f} (with the current run's compute)"
                )
            runs += pair
    print_table(runs)
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True).stdout
    out = RESULTS / f"dag-{stamp}.json"
    out.write_text(json.dumps({"machine": platform.platform(), "cpus": os.cpu_count(), "commit": commit.strip(),
                               "before": args.before, "load": os.getloadavg(), "runs": runs}, indent=2))  # fmt: skip
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
