"""A whole Snakemake run of a config, once per --cores value, through bench_dag.run_dag (--dag)."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Any


def reduced(settings: dict[str, Any]) -> dict[str, Any]:
    """The config with its first image only and a one-epoch alexnet_mini: every rule still runs, the sweeps dominate."""
    settings = {**settings, "images": settings["images"][:1]}
    if isinstance(settings.get("train_mini"), dict):
        settings["train_mini"] = {
            **settings["train_mini"],
            "epochs": 1,
            "train_per_class": 20,
            "test_per_class": 10,
            "min_accuracy": 0.0,
        }
    return settings


def time_dag(config: Path, *, cores: list[int], reduce: bool) -> dict[str, Any]:
    """`snakemake --cores N --configfile CONFIG` with the current code in a fresh temporary folder, once per N.

    bench_dag.run_dag does the run: it compiles the numba kernels outside the timed run, times the DAG and reads the
    jobs' benchmark files; benchmarked_jobs is the number of jobs they describe.
    """
    import bench_dag  # benchmarks/bench_dag.py, next to the package; imported here so that --help stays light
    import yaml

    if not (Path(sys.executable).parent / "snakemake").exists():
        raise FileNotFoundError("snakemake not found next to this Python; install ifmsan's dev extras")
    settings = yaml.safe_load(config.read_text())
    if reduce:
        settings = reduced(settings)
    runs = []
    for n in cores:
        with tempfile.TemporaryDirectory(prefix="ifmsan-dag-") as tmp:
            run = bench_dag.run_dag(config.stem, settings, tree=bench_dag.ROOT, cores=n, folder=Path(tmp))
        run["benchmarked_jobs"] = int(sum(row["jobs"] for row in run["rules"].values()))
        runs.append(run)
        print(f"DAG --cores {n}: {run['wall_s']:.1f} s", flush=True)
    return {"config": str(config), "reduced": reduce, "settings": settings, "runs": runs}
