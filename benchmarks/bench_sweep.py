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
  before this issue), timed beside the fused path;
- naive_speedup: a per-window transcription of Algorithm 1 with torch ops against the vectorized sanitizer on pool5
  (python_speedup: the same against a plain-Python transcription).

Optional: --profile splits the sanitizer's time (stream tables, mean and distance pass, fill, call overhead, first
touch of the batch buffer); --compare-cpu (with --device cuda) compares p(n) and the sanitized IFMs with the CPU
path; --dag times a Snakemake run of the demo DAG in a temporary folder; --forward-before re-runs every sweep
with the forward path as it was before the fused layers (nn.LocalResponseNorm, torch max pooling, no gathered
head), back to back, and reports the forward time ratio, max |Δp| and eff_san changes.
Run it as `make bench` or `.venv/bin/python benchmarks/bench_sweep.py --help`.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import functools
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import machine_limits as limits  # benchmarks/machine_limits.py and profile_sanitizer.py, next to this script
import profile_sanitizer

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The harness's options; every default reproduces the issue's measurement."""
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
        help="auto: the fused numba path where it applies; torch: force the torch path (the pre-issue code)",
    )
    parser.add_argument(
        "--before",
        action="store_true",
        help="also time the torch sanitizer path (the pre-issue algorithm) on the same batches, side by side",
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


def spread(values: Sequence[float]) -> dict[str, Any]:
    """Median, min and max of one figure over the repetitions (and the raw values)."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "values": list(values)}


def synchronize(device: str) -> None:
    """Wait for queued GPU work so wall-clock timers measure it."""
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def useful_flops(net: Any, layers: Sequence[str]) -> dict[str, float]:
    """FLOPs per image of forward_from(layer): 2 × multiply-accumulates of every Conv2d and Linear it runs (counted by
    the same hooks that time the layers inside the sweeps)."""
    import torch

    device = next(net.parameters()).device
    flops = {}
    with torch.inference_mode():
        for layer in layers:
            batch = torch.zeros((1, *net.ifm_shape(layer)), device=device)  # outside the hooks: it may probe the net
            clock = limits.OpClock(net, synchronize=lambda: None)
            with clock.watch():
                net.forward_from(layer, batch)
            flops[layer] = sum(clock.flops.values())
    return flops


class PeakRss:
    """Peak resident memory of this process over a block: Linux's VmHWM after resetting it, else sampled."""

    def __init__(self) -> None:
        """Start with no reading."""
        self.peak_mb = float("nan")
        self._stop = threading.Event()
        self._sampled = 0

    @staticmethod
    def _status(field: str) -> float:
        """A memory field of /proc/self/status in MiB (NaN where there is none)."""
        try:
            for line in Path("/proc/self/status").read_text().splitlines():
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
        except OSError:
            pass
        return float("nan")

    def _sample(self) -> None:
        """Poll the current RSS every 20 ms until stopped."""
        while not self._stop.wait(0.02):
            self._sampled = max(self._sampled, self._status("VmRSS"))

    @contextlib.contextmanager
    def watch(self) -> Iterator[PeakRss]:
        """Measure the peak over the with-block."""
        try:
            Path("/proc/self/clear_refs").write_text("5")
            reset = True
        except OSError:
            reset = False
        self._sampled = self._status("VmRSS")
        self._stop.clear()
        sampler = threading.Thread(target=self._sample, daemon=True)
        sampler.start()
        try:
            yield self
        finally:
            self._stop.set()
            sampler.join()
            high_water = self._status("VmHWM") if reset else float("nan")
            self.peak_mb = high_water if high_water == high_water else self._sampled


class TimedNet:
    """The network with its forward_from timed; everything else is the network's own (sweep_ifm sees no difference)."""

    def __init__(self, net: Any, *, device: str) -> None:
        """Wrap net; forward_s accumulates."""
        self._net = net
        self._device = device
        self.forward_s = 0.0

    def __getattr__(self, name: str) -> Any:
        """Delegate everything but forward_from."""
        return getattr(self._net, name)

    def forward_from(self, layer: str, batch: Any, **options: Any) -> Any:
        """The network's forward_from, timed."""
        synchronize(self._device)
        start = time.perf_counter()
        out = self._net.forward_from(layer, batch, **options)
        synchronize(self._device)
        self.forward_s += time.perf_counter() - start
        return out


class TimedKnob:
    """A knob whose apply_batch calls are timed; sweep_ifm takes it as its knob."""

    def __init__(self, knob: Any, *, device: str) -> None:
        """Wrap one knob."""
        self._knob, self._device, self.sanitize_s = knob, device, 0.0

    def __getattr__(self, name: str) -> Any:
        """Delegate everything but apply_batch."""
        return getattr(self._knob, name)

    def apply_batch(self, *args: Any, **kwargs: Any) -> Any:
        """The knob's apply_batch, timed."""
        synchronize(self._device)
        start = time.perf_counter()
        out = self._knob.apply_batch(*args, **kwargs)
        synchronize(self._device)
        self.sanitize_s += time.perf_counter() - start
        return out


def sweep_layer(
    net: Any, ifm: Any, *, layer: str, windows: list[int], target: int, batch_size: int, device: str, head: bool = True
) -> tuple[dict[str, float], Any]:
    """One layer's sweep through ifmsan.steps.sweep.sweep_ifm: its timings, peak RSS, and p(n)."""
    from ifmsan.core.knobs import get_knob
    from ifmsan.steps.sweep import sweep_ifm

    timed = TimedNet(net, device=device)
    knob = TimedKnob(get_knob("nonzero_mean"), device=device)
    rss = PeakRss()
    with rss.watch():
        start = time.perf_counter()
        curves = sweep_ifm(
            timed,
            ifm,
            layer=layer,
            knob=knob,
            values=windows,
            target=target,
            batch_size=batch_size,
            progress=False,
            head=head,
        )
        wall = time.perf_counter() - start
    figures = {"sanitize_s": knob.sanitize_s, "forward_s": timed.forward_s, "sweep_s": wall, "peak_rss_mb": rss.peak_mb}
    return figures, curves["probability"]


class IdentityKnob:
    """A knob that holds every sample: the batch is the IFM repeated (the sweep's forwards without sanitizing)."""

    name, parameter = "identity", "window"

    def apply_batch(self, ifm: Any, values: Any, *, out: Any) -> Any:
        """out[i] = ifm for every value."""
        return out.copy_(ifm.expand(out.shape))


def bare_forward(net: Any, ifm: Any, *, layer: str, n_values: int, batch_size: int, device: str) -> float:
    """Forward time of the sweep's own batches (sweep_ifm: same sizes, same head) on the unsanitized IFM."""
    from ifmsan.steps.sweep import sweep_ifm

    timed = TimedNet(net, device=device)
    sweep_ifm(
        timed,
        ifm,
        layer=layer,
        knob=IdentityKnob(),
        values=list(range(2, 2 + n_values)),
        target=0,
        batch_size=batch_size,
        progress=False,
    )
    return timed.forward_s


def plain_batches_forward(
    net: Any, ifm: Any, *, layer: str, n_values: int, batch_size: int, device: str, channels_last: bool = False
) -> float:
    """Whole forwards of n_values copies of the unsanitized IFM in batches of batch_size (for --scan)."""
    import torch

    buffer = torch.empty((min(batch_size, n_values), *ifm.shape), dtype=ifm.dtype, device=ifm.device)
    if channels_last and buffer.dim() == 4:
        buffer = buffer.contiguous(memory_format=torch.channels_last)
    buffer.copy_(ifm.expand(buffer.shape))
    elapsed = 0.0
    with torch.inference_mode():
        for start in range(0, n_values, batch_size):
            batch = buffer[: min(batch_size, n_values - start)]
            synchronize(device)
            begin = time.perf_counter()
            torch.softmax(net.forward_from(layer, batch).double(), dim=1)
            synchronize(device)
            elapsed += time.perf_counter() - begin
    return elapsed


def torch_path_sanitize(ifm: Any, windows: list[int], *, batch_size: int, device: str) -> float:
    """Seconds of the sweep's sanitizer calls with the fused path switched off (the torch path, pre-issue algorithm)."""
    import torch

    from ifmsan.core.sanitize import sample_and_hold_sweep

    buffer = torch.empty((min(batch_size, len(windows)), *ifm.shape), dtype=ifm.dtype, device=ifm.device)
    elapsed = 0.0
    for first in range(0, len(windows), batch_size):
        chunk = windows[first : first + batch_size]
        synchronize(device)
        start = time.perf_counter()
        sample_and_hold_sweep(ifm, chunk, out=buffer[: len(chunk)], kernel=False)
        synchronize(device)
        elapsed += time.perf_counter() - start
    return elapsed


def naive_algorithm1_torch(stream: Any, n: int) -> Any:
    """Algorithm 1 transcribed window by window with torch ops: W, X = W[W != 0], E[X], argmin |X - E[X]|, hold."""
    import torch

    out = stream.clone()
    for start in range(0, stream.numel(), n):
        window = stream[start : start + n]
        nonzero = window[window != 0]
        if nonzero.numel():
            mean = nonzero.sum() / nonzero.numel()
            out[start : start + n] = nonzero[torch.argmin((nonzero - mean).abs())]
    return out


def naive_comparison(ifm: Any, windows: list[int], *, batch_size: int) -> dict[str, Any]:
    """Seconds for two naive per-window transcriptions and for the vectorized sanitizer on one IFM (outputs checked)."""
    import numpy as np
    import torch

    from ifmsan.core.sanitize import sample_and_hold_sweep
    from ifmsan.testing import naive_algorithm1  # the plain-Python reference the tests check the sanitizer against

    cpu = ifm.detach().cpu()
    buffer = torch.zeros((min(batch_size, len(windows)), *cpu.shape), dtype=cpu.dtype)
    start = time.perf_counter()
    rows = []
    for first in range(0, len(windows), batch_size):
        chunk = windows[first : first + batch_size]
        out = sample_and_hold_sweep(cpu, chunk, out=buffer[: len(chunk)])
        rows.append(out.reshape(len(chunk), -1).numpy().copy())
    fast_s = time.perf_counter() - start
    fast = np.concatenate(rows)
    stream64 = cpu.reshape(-1).to(torch.float64)
    start = time.perf_counter()
    by_torch = [naive_algorithm1_torch(stream64, n) for n in windows]
    torch_s = time.perf_counter() - start
    stream = [float(v) for v in cpu.reshape(-1).tolist()]
    start = time.perf_counter()
    by_python = [naive_algorithm1(stream, n) for n in windows]
    python_s = time.perf_counter() - start
    same = np.array_equal(fast, torch.stack(by_torch).float().numpy()) and np.array_equal(
        fast, np.array(by_python, dtype=np.float32)
    )
    return {
        "naive_s": torch_s,
        "python_s": python_s,
        "vectorized_s": fast_s,
        "naive_speedup": torch_s / fast_s,
        "python_speedup": python_s / fast_s,
        "outputs_equal": same,
    }


def check_paths(ifms: dict[str, Any], windows: list[int], *, batch_size: int) -> dict[str, Any]:
    """Compare the fused sanitizer with the torch path bit for bit on every IFM and window (nonzero_mean, first, random)."""
    import torch

    import ifmsan.core.sanitize as sanitize
    from ifmsan.core.kernels import compiled_kernels

    kernels = compiled_kernels()
    mismatches = []
    for select in ("nonzero_mean", "first", "random"):
        for layer, ifm in ifms.items():
            cpu = ifm.detach().cpu()
            for first in range(0, len(windows), batch_size):
                chunk = windows[first : first + batch_size]
                fused = sanitize.sample_and_hold_sweep(cpu, chunk, select=select, seed=1)
                plain = sanitize.sample_and_hold_sweep(cpu, chunk, select=select, seed=1, kernel=False)
                if not torch.equal(fused.view(torch.int32), plain.view(torch.int32)):
                    mismatches.append(f"{select} {layer} windows {chunk[0]}..{chunk[-1]}")
    return {"fused_path_active": kernels is not None, "bit_identical": not mismatches, "mismatches": mismatches}


@contextlib.contextmanager
def forward_before(net: Any) -> Iterator[int]:
    """Inside the block, the forward path before the fused layers: nn.LocalResponseNorm, torch max pooling.

    The sweeps run inside it also pass head=False (no gathered head), as the forward path was before.
    """
    import torch
    import torch.nn.functional as F

    from ifmsan.models.fused import CaffeLRN, CaffeMaxPool

    lrns = [m for m in net.modules() if isinstance(m, CaffeLRN)]
    pools = [m for m in net.modules() if isinstance(m, CaffeMaxPool)]
    for module in lrns:
        module.forward = lambda x, m=module: F.local_response_norm(x, m.size, alpha=m.alpha, beta=m.beta, k=m.k)
    for module in pools:
        flatten = type(module).__name__ == "MaxPoolFlatten"
        module.forward = lambda x, m=module, flat=flatten: (
            torch.flatten(torch.nn.MaxPool2d.forward(m, x), 1) if flat else torch.nn.MaxPool2d.forward(m, x)
        )
    try:
        yield len(lrns) + len(pools)
    finally:
        for module in lrns + pools:
            del module.forward


def scan_batches(
    net: Any, ifms: dict[str, Any], *, layers: list[str], n_values: int, sizes: list[int], reps: int, device: str
) -> dict[str, Any]:
    """Bare forward seconds per layer for each batch size, with contiguous and with channels_last tensors and weights."""
    import torch

    table: dict[str, dict[str, list[float]]] = {layer: {} for layer in layers}
    for _ in range(reps):
        for channels_last in (False, True):
            net.to(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
            for size in sizes:
                key = f"{size}{'_channels_last' if channels_last else ''}"
                for layer in layers:
                    seconds = plain_batches_forward(
                        net,
                        ifms[layer],
                        layer=layer,
                        n_values=n_values,
                        batch_size=size,
                        device=device,
                        channels_last=channels_last,
                    )
                    table[layer].setdefault(key, []).append(seconds)
    net.to(memory_format=torch.contiguous_format)
    result = {layer: {key: spread(values) for key, values in row.items()} for layer, row in table.items()}
    keys = list(next(iter(table.values())))
    totals = {key: spread([sum(table[layer][key][r] for layer in layers) for r in range(reps)]) for key in keys}
    print("bare forward by batch size (median s): " + ", ".join(f"{k} {v['median']:.2f}" for k, v in totals.items()))
    return {"layers": result, "total": totals}


def time_dag(config: Path, *, cores: list[int], reduce: bool) -> dict[str, Any]:
    """Wall time of `snakemake --cores N --configfile CONFIG` in a fresh temporary folder, once per N."""
    import yaml

    snakemake = shutil.which("snakemake", path=str(Path(sys.executable).parent)) or shutil.which("snakemake")
    if snakemake is None:
        raise FileNotFoundError("snakemake not found next to this Python or on PATH; install ifmsan's dev extras")
    settings = yaml.safe_load(config.read_text())
    if reduce:  # one image and a one-epoch model: every rule still runs, the sweeps dominate
        settings["images"] = settings["images"][:1]
        if isinstance(settings.get("train_mini"), dict):
            settings["train_mini"].update(epochs=1, train_per_class=20, test_per_class=10, min_accuracy=0.0)
    runs = []
    for n in cores:
        with tempfile.TemporaryDirectory(prefix="ifmsan-dag-") as tmp:
            config_copy = Path(tmp) / "config.yaml"
            config_copy.write_text(yaml.safe_dump(settings, sort_keys=False))
            command = [
                snakemake,
                "--snakefile",
                str(ROOT / "Snakefile"),
                "--directory",
                tmp,
                "--cores",
                str(n),
                "--configfile",
                str(config_copy),
                "--quiet",
            ]
            env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
            start = time.perf_counter()
            done = subprocess.run(command, cwd=tmp, env=env, capture_output=True, text=True)
            wall = time.perf_counter() - start
            if done.returncode != 0:
                raise RuntimeError(f"snakemake --cores {n} failed ({done.returncode}):\n{done.stderr[-3000:]}")
            jobs = sum(1 for _ in (Path(tmp) / "logs").rglob("*.log")) if (Path(tmp) / "logs").exists() else None
        runs.append({"cores": n, "wall_s": wall, "log_files": jobs, "command": " ".join(command[1:])})
        print(f"DAG --cores {n}: {wall:.1f} s", flush=True)
    return {"config": str(config), "reduced": reduce, "settings": settings, "runs": runs}


def run(args: argparse.Namespace) -> dict[str, Any]:
    """All measurements, in the order the JSON lists them."""
    if args.sanitizer == "torch":
        os.environ["IFMSAN_NO_NUMBA"] = "1"
    import numpy as np
    import torch

    torch.set_num_threads(args.threads)
    torch.backends.cuda.matmul.allow_tf32 = False  # fp32 everywhere: the limits and the CPU comparison assume it
    torch.backends.cudnn.allow_tf32 = False
    import ifmsan
    import ifmsan.core.sanitize as sanitize
    from ifmsan import models
    from ifmsan.core.kernels import compiled_kernels
    from ifmsan.core.metrics import eff_san
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
    sync = functools.partial(synchronize, args.device)
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

    per_layer: dict[str, dict[str, list[float]]] = {layer: {} for layer in layers}
    totals: dict[str, list[float]] = {}
    probabilities: dict[str, Any] = {}
    naive: list[dict[str, float]] = []
    scans: list[list[dict[str, Any]]] = []
    limit_sources: list[str] = []
    shapes: dict[tuple[int, int, int], dict[str, Any]] = {}
    for rep in range(args.reps):
        in_sweep: dict[str, dict[str, float]] = {}
        rep_figures: dict[str, dict[str, float]] = {}
        for layer in layers:
            clock = limits.OpClock(net, synchronize=sync)
            with clock.watch():
                figures, probability = sweep_layer(
                    net,
                    ifms[layer],
                    layer=layer,
                    windows=windows,
                    target=target,
                    batch_size=batch_size,
                    device=args.device,
                )
            in_sweep[layer] = clock.rates()
            shapes.update(clock.shapes)
            probabilities[layer] = probability
            figures["bare_forward_s"] = bare_forward(
                net, ifms[layer], layer=layer, n_values=len(windows), batch_size=batch_size, device=args.device
            )
            figures["useful_flops"] = flops[layer] * len(windows)
            figures["overhead"] = figures["sanitize_s"] / figures["bare_forward_s"]
            if args.before:
                figures["sanitize_before_s"] = torch_path_sanitize(
                    ifms[layer], windows, batch_size=batch_size, device=args.device
                )
                figures["overhead_before"] = figures["sanitize_before_s"] / figures["bare_forward_s"]
            rep_figures[layer] = figures
        scans.append(limits.gemm_scan(list(shapes.values()), device=args.device, reps=3, synchronize=sync))
        limit = limits.gemm_limit(scans[-1], in_sweep)
        limit_sources.append(limit["source"])
        summed = ("sanitize_s", "forward_s", "sweep_s", "bare_forward_s", "useful_flops")
        summed += ("sanitize_before_s",) if args.before else ()
        rep_totals = {key: sum(figures[key] for figures in rep_figures.values()) for key in summed}
        rep_totals["peak_rss_mb"] = max(figures["peak_rss_mb"] for figures in rep_figures.values())
        rep_totals["gemm_limit_gflops"] = limit["gflops"]
        rep_totals["best_scan_gflops"] = limit["best_scan_gflops"]
        for part in [*rep_figures.values(), rep_totals]:
            part["sweep_gflops"] = part["useful_flops"] / part["sweep_s"] / 1e9
            part["flop_efficiency"] = part["sweep_gflops"] / limit["gflops"]  # <= 1 by construction (machine_limits.py)
            if peak.get("gflops"):
                part["peak_efficiency"] = part["sweep_gflops"] / peak["gflops"]
        rep_totals["overhead"] = rep_totals["sanitize_s"] / rep_totals["bare_forward_s"]
        if args.before:
            rep_totals["overhead_before"] = rep_totals["sanitize_before_s"] / rep_totals["bare_forward_s"]
        for layer, figures in rep_figures.items():
            figures["forward_share"] = figures["bare_forward_s"] / rep_totals["bare_forward_s"]
            for key, value in figures.items():
                per_layer[layer].setdefault(key, []).append(value)
        for key, value in rep_totals.items():
            totals.setdefault(key, []).append(value)
        if not args.skip_naive:
            naive.append(naive_comparison(ifms[args.naive_layer], windows, batch_size=batch_size))
        speedup = f", naive_speedup {naive[-1]['naive_speedup']:.0f}x" if naive else ""
        if args.before:
            speedup += (
                f", torch-path sanitize {rep_totals['sanitize_before_s']:.2f} s ({rep_totals['overhead_before']:.4f})"
            )
        peak_part = f", {rep_totals['peak_efficiency']:.3f} of the peak" if "peak_efficiency" in rep_totals else ""
        print(
            f"rep {rep + 1}/{args.reps}: sanitize {rep_totals['sanitize_s']:.2f} s, forward {rep_totals['forward_s']:.2f} s, "
            f"bare forward {rep_totals['bare_forward_s']:.2f} s, overhead {rep_totals['overhead']:.4f}, "
            f"sweep {rep_totals['sweep_gflops']:.1f} GFLOP/s = {rep_totals['flop_efficiency']:.3f} of the GEMM limit "
            f"({limit['gflops']:.1f} GFLOP/s: {limit['source']}){peak_part}{speedup}",
            flush=True,
        )

    result: dict[str, Any] = {
        "meta": meta,
        "limits": {
            "gemm": "the best of the GEMM scan (torch.mm, same threads) and of every conv/fc layer's rate inside the "
            "measured sweeps; sweep FLOPs / sweep time cannot exceed it (see benchmarks/machine_limits.py)",
            "gemm_limit_source": limit_sources,
            "scan": scans,
            "peak": peak,
        },
        "total": {key: spread(values) for key, values in totals.items()},
        "layers": {
            layer: {key: spread(values) for key, values in figures.items()} for layer, figures in per_layer.items()
        },
    }
    if naive:
        keys = ("naive_s", "python_s", "vectorized_s", "naive_speedup", "python_speedup")
        result["naive"] = {
            "layer": args.naive_layer,
            "outputs_equal": all(n["outputs_equal"] for n in naive),
            "reference": "naive_s: Algorithm 1 window by window with torch ops (float64); "
            "python_s: the same in plain Python (ifmsan.testing, the tests' reference)",
            **{key: spread([n[key] for n in naive]) for key in keys},
        }
        result["total"]["naive_speedup"] = result["naive"]["naive_speedup"]
    if args.check:
        result["check"] = check_paths({layer: ifms[layer] for layer in layers}, windows, batch_size=batch_size)
        print(f"fused vs torch sanitizer, bit for bit on every IFM and window: {result['check']['bit_identical']}")
    if args.forward_before:
        result["forward_before"] = forward_before_experiment(
            net,
            ifms,
            layers=layers,
            windows=windows,
            target=target,
            batch_size=batch_size,
            device=args.device,
            baseline=probabilities,
            eff_san=eff_san,
            reps=args.reps,
        )
    if args.scan:
        result["scan"] = scan_batches(
            net,
            ifms,
            layers=layers,
            n_values=len(windows),
            reps=args.reps,
            device=args.device,
            sizes=[int(size) for size in args.scan.split(",")],
        )
    if args.profile:
        result["profile"] = profile_sanitizer.profile(
            {layer: ifms[layer] for layer in layers}, windows, batch_size=batch_size, reps=args.reps
        )
    if args.compare_cpu:
        result["compare_cpu"] = compare_with_cpu(
            net, ifms, layers=layers, windows=windows, target=target, batch_size=batch_size, probabilities=probabilities
        )
    if args.dag:
        result["dag"] = time_dag(args.dag_config, cores=[int(c) for c in args.cores.split(",")], reduce=args.dag_reduce)
    result["meta"]["load_average_end"] = os.getloadavg()
    result["meta"]["max_probability"] = {layer: float(np.max(p)) for layer, p in probabilities.items()}
    return result


def compare_with_cpu(
    net: Any,
    ifms: dict[str, Any],
    *,
    layers: list[str],
    windows: list[int],
    target: int,
    batch_size: int,
    probabilities: dict[str, Any],
) -> dict[str, Any]:
    """The same sweeps on a CPU copy of the network (max |Δp| per layer) and every sanitizer call on the CPU (how many
    windows' sanitized IFMs differ in any bit, and by how much at most)."""
    import copy

    import numpy as np
    import torch

    from ifmsan.core.sanitize import sample_and_hold_sweep

    cpu_net = copy.deepcopy(net).to("cpu")
    rows = {}
    for layer in layers:
        here = ifms[layer]
        there = here.detach().cpu()
        _, p_cpu = sweep_layer(
            cpu_net, there, layer=layer, windows=windows, target=target, batch_size=batch_size, device="cpu"
        )
        differing, largest = 0, 0.0
        for first in range(0, len(windows), batch_size):
            chunk = windows[first : first + batch_size]
            on_device = sample_and_hold_sweep(here, chunk).cpu()
            on_cpu = sample_and_hold_sweep(there, chunk)
            same = (on_device.view(torch.int32) == on_cpu.view(torch.int32)).reshape(len(chunk), -1).all(dim=1)
            differing += int((~same).sum())
            largest = max(largest, float((on_device - on_cpu).abs().max()))
        rows[layer] = {
            "max_abs_delta_p": float(np.max(np.abs(probabilities[layer] - p_cpu))),
            "windows_differing": differing,
            "max_abs_delta_sanitized": largest,
        }
    summary = {
        "max_abs_delta_p": max(row["max_abs_delta_p"] for row in rows.values()),
        "windows_differing": sum(row["windows_differing"] for row in rows.values()),
        "windows": len(windows) * len(layers),
    }
    print(
        f"{next(net.parameters()).device} against CPU: max |Δp| {summary['max_abs_delta_p']:.3g}, sanitized IFMs "
        f"differing in {summary['windows_differing']} of {summary['windows']} (layer, window) pairs",
        flush=True,
    )
    return {"layers": rows, **summary}


def forward_before_experiment(
    net: Any,
    ifms: dict[str, Any],
    *,
    layers: list[str],
    windows: list[int],
    target: int,
    batch_size: int,
    device: str,
    baseline: dict[str, Any],
    eff_san: Callable[..., float],
    reps: int,
) -> dict[str, Any]:
    """Per layer, the sweep now and with the earlier forward path back to back: sweep times, max |Δp|, eff_san changes."""
    import numpy as np

    now: list[float] = []
    before: list[float] = []
    max_delta, changes, modules = 0.0, {}, 0
    for _ in range(reps):
        rep_now = rep_before = 0.0
        for layer in layers:
            figures, _ = sweep_layer(
                net, ifms[layer], layer=layer, windows=windows, target=target, batch_size=batch_size, device=device
            )
            rep_now += figures["sweep_s"]
            with forward_before(net) as swapped:
                modules = swapped
                figures, probability = sweep_layer(
                    net,
                    ifms[layer],
                    layer=layer,
                    windows=windows,
                    target=target,
                    batch_size=batch_size,
                    device=device,
                    head=False,
                )
            rep_before += figures["sweep_s"]
            max_delta = max(max_delta, float(np.max(np.abs(probability - baseline[layer]))))
            old, new = eff_san(probability), eff_san(baseline[layer])
            if old != new:
                changes[layer] = {"before": old, "now": new}
        now.append(rep_now)
        before.append(rep_before)
    ratios = [n / b for n, b in zip(now, before, strict=False)]
    print(
        f"forward path ({modules} modules swapped back): sweep {statistics.median(now):.2f} s now against "
        f"{statistics.median(before):.2f} s before, back to back; max |Δp| {max_delta:.3g}, "
        f"eff_san changes: {changes or 'none'}",
        flush=True,
    )
    return {
        "modules": modules,
        "sweep_s": spread(now),
        "before_sweep_s": spread(before),
        "sweep_ratio": spread(ratios),
        "max_abs_delta_p": max_delta,
        "eff_san_changes": changes,
        "eff_san_decimals": 4,
    }


def _version(package: str) -> str | None:
    """An installed package's version, or None."""
    from importlib import metadata

    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


OVERHEAD_TARGET = 0.03
"""The sanitizer's share of the bare forward time, in total and per layer."""
SHARE_FOR_LAYER_TARGET = 0.02
"""A layer's overhead counts once its bare forward is at least this share of the total (tiny forwards are noise)."""


def verdict(result: dict[str, Any]) -> dict[str, Any]:
    """The overhead target in total and per layer (medians), and both FLOP ratios."""
    total = result["total"]
    layers = {
        layer: {
            "overhead": figures["overhead"]["median"],
            "forward_share": figures["forward_share"]["median"],
            "counts": figures["forward_share"]["median"] >= SHARE_FOR_LAYER_TARGET,
        }
        for layer, figures in result["layers"].items()
    }
    checked = {layer: row for layer, row in layers.items() if row["counts"]}
    return {
        "overhead_target": OVERHEAD_TARGET,
        "total_overhead": total["overhead"]["median"],
        "total_ok": total["overhead"]["median"] <= OVERHEAD_TARGET,
        "layers_checked": f"bare forward >= {SHARE_FOR_LAYER_TARGET:.0%} of the total",
        "layers": layers,
        "layers_ok": all(row["overhead"] <= OVERHEAD_TARGET for row in checked.values()),
        "flop_efficiency": total["flop_efficiency"]["median"],
        "peak_efficiency": total["peak_efficiency"]["median"] if "peak_efficiency" in total else None,
    }


def print_table(result: dict[str, Any]) -> None:
    """Per-layer medians, the totals with their min..max, and the targets, as plain text."""
    keys = (
        "sanitize_s",
        "bare_forward_s",
        "forward_share",
        "overhead",
        "flop_efficiency",
        "peak_efficiency",
        "peak_rss_mb",
    )
    keys = tuple(key for key in keys if key in result["total"] or key == "forward_share")
    if "overhead_before" in result["total"]:
        keys += ("overhead_before",)
    print(f"{'layer':8s}" + "".join(f"{key:>16s}" for key in keys))
    for layer, figures in result["layers"].items():
        print(f"{layer:8s}" + "".join(f"{figures[key]['median']:16.4f}" for key in keys))
    print("total (median [min, max]):")
    for key, value in result["total"].items():
        if key != "useful_flops":
            print(f"  {key:18s} {value['median']:.4f} [{value['min']:.4f}, {value['max']:.4f}]")
    check = result["verdict"]
    mark = {True: "ok", False: "ABOVE"}
    print(
        f"sweep FLOP rate: {check['flop_efficiency']:.3f} of the GEMM limit (cannot exceed 1), "
        + (
            f"{check['peak_efficiency']:.3f} of the theoretical peak"
            if check["peak_efficiency"]
            else "no peak computed"
        )
    )
    print(f"overhead <= {OVERHEAD_TARGET}: total {check['total_overhead']:.4f} {mark[check['total_ok']]}; per layer "
          f"({check['layers_checked']}): " + ", ".join(
              f"{layer} {row['overhead']:.4f} {mark[row['overhead'] <= OVERHEAD_TARGET]}"
              for layer, row in check["layers"].items() if row["counts"]))  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    """Measure, print, write the JSON atomically."""
    args = parse_args(argv)
    from ifmsan._shared.atomic import atomic_path
    from ifmsan.cli import use_openmp_advice

    use_openmp_advice()  # OMP_WAIT_POLICY=PASSIVE unless the user chose, before run() imports torch

    result = run(args)
    result["verdict"] = verdict(result)
    print_table(result)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = args.out or RESULTS / f"bench_{stamp}_t{args.threads}_{args.sanitizer}.json"
    with atomic_path(out) as tmp:
        tmp.write_text(json.dumps(result, indent=1, default=float) + "\n")
    print(f"-> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
