"""Performance harness: the full Table 1 sweep of BVLC AlexNet (13 IFMs × windows 2..150) through ifmsan's sweep path.

For one image it runs `ifmsan.steps.sweep.sweep_ifm` (the engine behind `ifmsan sweep`) on every layer, timing the
sanitizer and the forward passes inside it, then the same forward batches on the unsanitized IFM, and prints and
writes as JSON (median, min and max over --reps) per layer and in total:

- sanitize_s, forward_s, sweep_s (wall time of sweep_ifm), bare_forward_s, overhead = sanitize_s / bare_forward_s,
  forward_share = the layer's bare_forward_s / the total's (the overhead target counts per layer from 2 % on);
- sweep_gflops = useful FLOPs / sweep_s, where useful FLOPs are 2 × the multiply-accumulates of every convolution and
  fully connected layer the partial forward passes run (LRN, pooling, ReLU and softmax are not counted), against two
  limits (benchmarks/machine_limits.py): flop_efficiency = sweep_gflops / the GEMM limit (the best of a torch.mm scan over
  the sweep's own GEMM shapes and square sizes, and of every layer's rate inside the sweeps: it cannot exceed 1), and
  peak_efficiency = sweep_gflops / the theoretical peak (cores × clock × fp32 lanes × 2 × FMA units, assumptions in
  the JSON);
- peak_rss_mb, the process's peak resident memory during the sweep (model, IFMs and buffers included);
- with --before, sanitize_before_s and overhead_before: the same sanitizer calls on the torch path (the algorithm
  before the fused sanitizer), timed beside the fused path;
- naive_speedup: a per-window transcription of Algorithm 1 with torch ops against the vectorized sanitizer on pool5
  (python_speedup: the same against a plain-Python transcription).

Optional: --profile splits the sanitizer's time (stream tables, mean and distance pass, fill, call overhead, first
touch of the batch buffer); --compare-cpu (with --device cuda) compares p(n) and the sanitized IFMs with the CPU
path; --dag times a Snakemake run of the demo DAG in a temporary folder; --forward-before re-runs every sweep
with the forward path as it was before the fused layers (nn.LocalResponseNorm, torch max pooling, no gathered
head), back to back, and reports the forward time ratio, max |Δp| and eff_san changes.
Each measurement lives in benchmarks/sweep_experiments/, the timers in benchmarks/timing.py and the verdict and table
in benchmarks/sweep_report.py; this script parses the options, loads the network and the IFMs, runs the chosen
measurements and writes the JSON. Run it as `make bench` or `.venv/bin/python benchmarks/bench_sweep.py --help`.
"""

from __future__ import annotations

import argparse
import datetime
import functools
import json
import os
import platform
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import machine_limits as limits  # the benchmarks' own modules, next to this script (sys.path[0])
import profile_sanitizer
import sweep_report
from sweep_experiments import batch_scan, compare_cpu, dag, forward_before, fused_check, naive, overhead
from timing import spread, useful_flops

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The harness's options; the defaults run the full Table 1 sweep on two threads, three times."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads, set once (default 2)")
    parser.add_argument("--reps", type=int, default=3, help="repetitions of every measurement (default 3)")
    parser.add_argument("--layers", default="all", help="comma list of IFM layers (default: the 13 of Table 1)")
    parser.add_argument("--windows", default="2:150", help="window sizes START:STOP inclusive (default 2:150)")
    parser.add_argument(
        "--batch-size", type=int, default=None, help="sanitized IFMs per forward batch (default: the sweep's)"
    )
    parser.add_argument("--image", default="skimage:chelsea", help="image source as `ifmsan extract` takes it")
    parser.add_argument("--weights", help="bvlc_alexnet .caffemodel (default: seeded random weights)")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="where the network runs")
    parser.add_argument(
        "--sanitizer",
        default="auto",
        choices=("auto", "torch"),
        help="auto: the fused numba path where it applies; torch: force the torch path everywhere",
    )
    parser.add_argument(
        "--before",
        action="store_true",
        help="also time the torch sanitizer path (no fused kernel) on the same batches, side by side",
    )
    parser.add_argument(
        "--naive-layer", default="pool5", help="IFM for the naive Algorithm 1 comparison (default pool5)"
    )
    parser.add_argument("--skip-naive", action="store_true", help="skip the naive Algorithm 1 comparison")
    parser.add_argument(
        "--check",
        action="store_true",
        help="also check the fused sanitizer against the torch path, bit for bit, on every IFM and window",
    )
    parser.add_argument(
        "--forward-before",
        action="store_true",
        help="also run every sweep with the forward path before the fused layers (nn.LocalResponseNorm, "
        "torch max pooling, no gathered head), back to back: time ratio, max |Δp|, eff_san changes",
    )
    parser.add_argument(
        "--scan",
        metavar="SIZES",
        help="also time the bare forward per layer at these batch sizes (e.g. 16,32,64,149), "
        "contiguous and channels_last, to choose the sweep's batch size and memory format",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="also split the sanitizer's time: stream tables, mean and distance pass, fill, call overhead, first touch",
    )
    parser.add_argument(
        "--compare-cpu",
        action="store_true",
        help="also run every sweep and sanitizer call on the CPU and compare (for --device cuda): max |Δp|, "
        "windows whose sanitized IFM differs",
    )
    parser.add_argument("--dag", action="store_true", help="also time the demo DAG with Snakemake (several minutes)")
    parser.add_argument("--dag-config", type=Path, default=ROOT / "config" / "demo.yaml", help="config for --dag")
    parser.add_argument(
        "--dag-reduce",
        action="store_true",
        help="--dag on a reduced copy of the config: its first image, alexnet_mini trained for one epoch",
    )
    parser.add_argument("--cores", default="2", help="comma list of --cores values for --dag (default 2), e.g. 1,2")
    parser.add_argument(
        "--out", type=Path, help="JSON output (default benchmarks/results/bench_<time>_t<threads>.json)"
    )
    args = parser.parse_args(argv)
    if args.threads < 1 or args.reps < 1:
        parser.error("--threads and --reps must be >= 1")
    if args.batch_size is not None and args.batch_size < 1:
        parser.error("--batch-size must be >= 1")
    first, _, last = args.windows.partition(":")
    if not (first.isdigit() and (last or first).isdigit() and 1 <= int(first) <= int(last or first)):
        parser.error(f"--windows must be START:STOP with 1 <= START <= STOP, got {args.windows!r}")
    if not all(c.strip().isdigit() and int(c) >= 1 for c in args.cores.split(",")):
        parser.error(f"--cores must be a comma list of integers >= 1, got {args.cores!r}")
    if args.scan and not all(c.strip().isdigit() and int(c) >= 1 for c in args.scan.split(",")):
        parser.error(f"--scan must be a comma list of batch sizes >= 1, got {args.scan!r}")
    if args.dag and not args.dag_config.is_file():
        parser.error(f"--dag-config {args.dag_config} is not a file")
    return args


def _version(package: str) -> str | None:
    """An installed package's version, or None."""
    from importlib import metadata

    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def setup(args: argparse.Namespace) -> dict[str, Any]:
    """Threads, network, IFMs, windows, FLOPs per image, the theoretical peak and the run's meta data."""
    if args.sanitizer == "torch":
        os.environ["IFMSAN_NO_NUMBA"] = "1"
    import torch

    torch.set_num_threads(args.threads)
    torch.backends.cuda.matmul.allow_tf32 = False  # fp32 everywhere: the limits and the CPU comparison assume it
    torch.backends.cudnn.allow_tf32 = False
    import ifmsan
    import ifmsan.core.sanitize as sanitize
    from ifmsan import models
    from ifmsan.core.kernels import compiled_kernels
    from ifmsan.steps.extract import extract_ifms, ifms_of
    from ifmsan.steps.images import load_image
    from ifmsan.steps.sweep import DEFAULT_BATCH_SIZE

    batch_size = args.batch_size or DEFAULT_BATCH_SIZE
    first, _, last = args.windows.partition(":")
    windows = list(range(int(first), int(last or first) + 1))
    net = models.load("bvlc_alexnet", weights=args.weights).to(args.device)
    layers = list(net.ifm_layers) if args.layers == "all" else [s.strip() for s in args.layers.split(",")]
    for layer in layers:
        if layer not in net.ifm_layers:
            raise ValueError(f"--layers: {layer!r} is not an IFM layer of bvlc_alexnet ({', '.join(net.ifm_layers)})")
    image = net.preprocess(load_image(args.image))
    extracted = extract_ifms(net, image)
    target = int(extracted.attrs["target"])
    ifms = {layer: value.to(args.device) for layer, value in ifms_of(extracted).items()}

    warm = time.perf_counter()
    kernels = compiled_kernels()
    sanitize.sample_and_hold_sweep(torch.ones(8), [2, 3])
    startup_s = time.perf_counter() - warm
    flops = useful_flops(net, layers)
    peak = limits.device_peak(args.device, threads=torch.get_num_threads())
    meta = {
        "when": datetime.datetime.now().isoformat(timespec="seconds"),
        "argv": sys.argv[1:],
        "threads": torch.get_num_threads(),
        "interop_threads": torch.get_num_interop_threads(),
        "device": args.device,
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "load_average_start": os.getloadavg(),
        "torch": torch.__version__,
        "ifmsan": ifmsan.__version__,
        "numba": _version("numba"),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "sanitizer_path": "fused numba kernel" if kernels is not None else "torch",
        "sanitizer_startup_s": startup_s,
        "model": "bvlc_alexnet",
        "weights": args.weights or "seeded random initialisation",
        "image": args.image,
        "target": target,
        "windows": f"{windows[0]}..{windows[-1]} ({len(windows)})",
        "batch_size": batch_size,
        "layers": layers,
        "useful_flops_per_image": flops,
        "flop_counting": "2 x multiply-accumulates of Conv2d and Linear layers; LRN, pooling, ReLU, softmax not counted",
    }
    print(
        f"bvlc_alexnet, {args.image}, {len(layers)} layers x windows {meta['windows']}, batch {batch_size}, "
        f"{meta['threads']} threads, sanitizer: {meta['sanitizer_path']} (startup {startup_s:.2f} s)",
        flush=True,
    )
    if peak.get("gflops"):
        print(f"theoretical peak {peak['gflops']:.1f} GFLOP/s: {'; '.join(peak['assumptions'])}", flush=True)
    else:
        print(f"theoretical peak: not computed ({peak.get('why')})", flush=True)
    return {
        "net": net,
        "ifms": ifms,
        "layers": layers,
        "windows": windows,
        "target": target,
        "batch_size": batch_size,
        "flops": flops,
        "peak": peak,
        "meta": meta,
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    """All measurements, in the order the JSON lists them."""
    s = setup(args)
    import numpy as np

    from ifmsan.core.metrics import eff_san

    net, ifms, layers, windows = s["net"], s["ifms"], s["layers"], s["windows"]
    sweep = {"layers": layers, "windows": windows, "target": s["target"], "batch_size": s["batch_size"]}
    own_ifms = {layer: ifms[layer] for layer in layers}
    compare_naive = None
    if not args.skip_naive:
        compare_naive = functools.partial(
            naive.naive_comparison, ifms[args.naive_layer], windows, batch_size=s["batch_size"]
        )
    measured = overhead.measure(
        net,
        ifms,
        **sweep,
        device=args.device,
        reps=args.reps,
        flops=s["flops"],
        peak=s["peak"],
        before=args.before,
        each_rep=compare_naive,
    )
    probabilities = measured["probabilities"]

    result: dict[str, Any] = {
        "meta": s["meta"],
        "limits": {
            "gemm": "the best of the GEMM scan (torch.mm, same threads) and of every conv/fc layer's rate inside the "
            "measured sweeps; sweep FLOPs / sweep time cannot exceed it (see benchmarks/machine_limits.py)",
            "gemm_limit_source": measured["limit_sources"],
            "scan": measured["scans"],
            "peak": s["peak"],
        },
        "total": {key: spread(values) for key, values in measured["totals"].items()},
        "layers": {
            layer: {key: spread(values) for key, values in figures.items()}
            for layer, figures in measured["per_layer"].items()
        },
    }
    if measured["each_rep"]:
        result["naive"] = naive.summary(measured["each_rep"], layer=args.naive_layer)
        result["total"]["naive_speedup"] = result["naive"]["naive_speedup"]
    if args.check:
        result["check"] = fused_check.check_paths(own_ifms, windows, batch_size=s["batch_size"])
        print(f"fused vs torch sanitizer, bit for bit on every IFM and window: {result['check']['bit_identical']}")
    if args.forward_before:
        result["forward_before"] = forward_before.experiment(
            net, ifms, **sweep, device=args.device, baseline=probabilities, eff_san=eff_san, reps=args.reps
        )
    if args.scan:
        sizes = [int(size) for size in args.scan.split(",")]
        result["scan"] = batch_scan.scan_batches(
            net, ifms, layers=layers, n_values=len(windows), reps=args.reps, device=args.device, sizes=sizes
        )
    if args.profile:
        result["profile"] = profile_sanitizer.profile(own_ifms, windows, batch_size=s["batch_size"], reps=args.reps)
    if args.compare_cpu:
        result["compare_cpu"] = compare_cpu.compare_with_cpu(net, ifms, **sweep, probabilities=probabilities)
    if args.dag:
        cores = [int(c) for c in args.cores.split(",")]
        result["dag"] = dag.time_dag(args.dag_config, cores=cores, reduce=args.dag_reduce)
    result["meta"]["load_average_end"] = os.getloadavg()
    result["meta"]["max_probability"] = {layer: float(np.max(p)) for layer, p in probabilities.items()}
    return result


def main(argv: Sequence[str] | None = None) -> int:
    """Measure, print, write the JSON atomically."""
    args = parse_args(argv)
    from ifmsan._shared.atomic import atomic_path
    from ifmsan.cli import use_openmp_advice

    use_openmp_advice()  # OMP_WAIT_POLICY=PASSIVE unless the user chose, before run() imports torch

    result = run(args)
    result["verdict"] = sweep_report.verdict(result)
    sweep_report.print_table(result)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = args.out or RESULTS / f"bench_{stamp}_t{args.threads}_{args.sanitizer}.json"
    with atomic_path(out) as tmp:
        tmp.write_text(json.dumps(result, indent=1, default=float) + "\n")
    print(f"-> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
