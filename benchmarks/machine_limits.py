"""The machine's limits that bench_sweep.py compares the sweep's FLOP rate against.

(a) `gemm_limit`: the best fp32 rate of a scan over GEMM shapes (square sizes, and the conv-as-GEMM and fully
    connected shapes the sweep's own batches run), with the same threads, together with the rate every convolution
    and linear layer reached inside the measured sweeps (`OpClock`). As the sweep's useful FLOPs are exactly those
    layers' FLOPs and their timed intervals lie inside the sweep's wall time, sweep FLOPs / sweep time <= the largest
    of those rates: an efficiency above 1 against (a) is impossible by construction, whatever the convolution
    algorithm.
The scan's shapes are the GEMMs the sweeps really ran (recorded by `OpClock`), so they follow the model and batch.
(b) `theoretical_peak`: cores x clock x fp32 lanes x 2 (FMA) x FMA units, from what the machine says (/proc/cpuinfo,
    the affinity mask) plus a table of FMA units per core for known x86 cores and a measured clock; every assumption
    is written into the JSON next to the number.
"""

from __future__ import annotations

import contextlib
import os
import re
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

SQUARE_SIZES = (256, 512, 1024, 2048, 3072)
"""Square GEMMs of the scan besides the sweep's own shapes (3072 was the earlier single reference)."""

# (vendor, family, first model, last model) -> (core, FMA units, datapath bits per unit). Vendors' optimisation manuals:
# AMD Zen 1 has two 128-bit FMA pipes, Zen 2 and 3 two 256-bit, Zen 4 two 256-bit that run AVX-512 as two halves, Zen 5
# two 512-bit (one 256-bit on some client parts: an upper bound there); Intel cores with AVX-512 on Xeon Scalable parts
# have two 512-bit FMA units (some Silver/Bronze parts one: an upper bound there), AVX2 cores two 256-bit.
FMA_TABLE: tuple[tuple[str, int, int, int, str, int, int], ...] = (
    ("AuthenticAMD", 0x17, 0x00, 0x2F, "Zen / Zen+", 2, 128),
    ("AuthenticAMD", 0x17, 0x30, 0xFF, "Zen 2", 2, 256),
    ("AuthenticAMD", 0x19, 0x00, 0x0F, "Zen 3", 2, 256),
    ("AuthenticAMD", 0x19, 0x10, 0x1F, "Zen 4", 2, 256),
    ("AuthenticAMD", 0x19, 0x20, 0x5F, "Zen 3", 2, 256),
    ("AuthenticAMD", 0x19, 0x60, 0xAF, "Zen 4", 2, 256),
    ("AuthenticAMD", 0x1A, 0x00, 0xFF, "Zen 5", 2, 512),
)


def cpu_facts(cpuinfo: str | None = None, *, cpus: int | None = None) -> dict[str, Any]:
    """What the machine says about its first CPU: vendor, family, model, name, nominal MHz, vector flags, CPUs usable."""
    if cpuinfo is None:
        path = Path("/proc/cpuinfo")
        cpuinfo = path.read_text() if path.exists() else ""
    first = cpuinfo.split("\n\n")[0]
    fields: dict[str, str] = {}
    for line in first.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields.setdefault(key.strip(), value.strip())
    if cpus is None:
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    flags = set(fields.get("flags", "").split())
    return {
        "vendor": fields.get("vendor_id", "unknown"),
        "family": int(fields["cpu family"]) if fields.get("cpu family", "").isdigit() else None,
        "model": int(fields["model"]) if fields.get("model", "").isdigit() else None,
        "model_name": fields.get("model name", "unknown"),
        "cpuinfo_mhz": float(fields["cpu MHz"]) if re.fullmatch(r"[0-9.]+", fields.get("cpu MHz", "")) else None,
        "siblings": int(fields["siblings"]) if fields.get("siblings", "").isdigit() else None,
        "cpu_cores": int(fields["cpu cores"]) if fields.get("cpu cores", "").isdigit() else None,
        "vector_bits": 512 if "avx512f" in flags else 256 if "avx2" in flags else 128 if "sse2" in flags else None,
        "fma": "fma" in flags or "avx512f" in flags,
        "usable_cpus": cpus,
    }


def max_clock_mhz() -> float | None:
    """The highest frequency the kernel reports (cpufreq), where there is one; virtual machines often have none."""
    path = Path("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq")
    try:
        return int(path.read_text()) / 1000
    except (OSError, ValueError):
        return None


def measured_clock_mhz(*, steps: int = 200_000_000, reps: int = 3) -> float | None:
    """Core clock from a chain of dependent integer adds and xors (one cycle each on every x86 core since 2003).

    Turbo clocks are not in /proc/cpuinfo (which shows the nominal or TSC rate in a VM); the peak must use the clock the
    cores really run at, or a sweep could beat its 'peak'. None without numba.
    """
    try:
        import numba
    except ImportError:
        return None

    @numba.njit(cache=False)
    def chain(n: int, a: int, b: int) -> int:
        """2 dependent one-cycle ops per step; the loop counter runs beside them."""
        x = a
        for _ in range(n):
            x = (x + b) ^ a
        return x

    chain(1000, 3, 5)
    seconds = []
    for _ in range(reps):
        start = time.perf_counter()
        chain(steps, 3, 5)
        seconds.append(time.perf_counter() - start)
    return 2 * steps / min(seconds) / 1e6


def fma_units(facts: dict[str, Any]) -> tuple[str, int, int, str]:
    """(core, FMA units, datapath bits) for the CPU, and where that came from."""
    for vendor, family, first, last, core, units, bits in FMA_TABLE:
        model = facts["model"]
        if facts["vendor"] == vendor and facts["family"] == family and model is not None and first <= model <= last:
            return core, units, bits, f"table: {vendor} family {family:#x} model {model:#x} = {core}"
    bits = facts["vector_bits"] or 128
    if facts["vendor"] == "GenuineIntel" and bits >= 256:
        return (
            "Intel",
            2,
            bits,
            f"assumed: Intel core with {bits}-bit vectors has two {bits}-bit FMA units (upper bound)",
        )
    return "unknown", 2, bits, f"assumed: two {bits}-bit FMA units per core (not in the table; upper bound)"


def theoretical_peak(
    threads: int, *, facts: dict[str, Any] | None = None, clock_mhz: float | None = None
) -> dict[str, Any]:
    """fp32 FLOP/s the cores the sweep uses could do at most, with every input and assumption next to it."""
    facts = cpu_facts() if facts is None else facts
    core, units, bits, source = fma_units(facts)
    vector_bits = min(facts["vector_bits"] or 128, 512)
    lanes_per_cycle = units * min(bits, vector_bits) // 32  # an instruction wider than the datapath takes more cycles
    cores = min(threads, facts["usable_cpus"])
    clocks = {
        "cpuinfo_mhz": facts["cpuinfo_mhz"],
        "cpufreq_max_mhz": max_clock_mhz(),
        "measured_mhz": measured_clock_mhz() if clock_mhz is None else None,
    }
    known = [value for value in clocks.values() if value]
    chosen = clock_mhz if clock_mhz is not None else max(known) if known else None
    if chosen is None:
        return {"gflops": None, "why": "no clock: no cpuinfo MHz, no cpufreq and no numba to measure one", **clocks}
    flops_per_cycle = 2 * lanes_per_cycle  # an FMA is two FLOPs
    return {
        "gflops": cores * chosen / 1e3 * flops_per_cycle,
        "cores": cores,
        "clock_mhz": chosen,
        "fp32_flops_per_cycle_per_core": flops_per_cycle,
        "fma_units_per_core": units,
        "fma_datapath_bits": bits,
        "vector_bits": vector_bits,
        "core": core,
        **clocks,
        "assumptions": [
            f"cores = min(--threads, CPUs in the affinity mask) = {cores}; each vCPU counted as a whole core "
            "(a VM does not say whether two vCPUs share a core; if they do, the true peak is half)",
            f"clock = the largest of cpuinfo MHz, cpufreq max and a measured dependent-add chain = {chosen:.0f} MHz "
            "(all cores assumed to hold it under load)",
            f"FMA units: {source}; {units} x {bits}-bit, fp32 lanes per cycle = {lanes_per_cycle}",
            "an FMA counts as 2 FLOPs; no other FP unit adds to a GEMM's rate",
        ],
        "facts": facts,
    }


def gemm_scan(
    shapes: Sequence[dict[str, Any]], *, device: str, reps: int, synchronize: Callable[[], None]
) -> list[dict[str, Any]]:
    """fp32 torch.mm rate of every shape (square sizes first), best of reps after a warm-up, with torch's threads."""
    import torch

    generator = torch.Generator().manual_seed(0)
    rows = [{"m": s, "k": s, "n": s, "source": f"square {s}"} for s in SQUARE_SIZES] + list(shapes)
    results = []
    for row in rows:
        a = torch.randn((row["m"], row["k"]), generator=generator).to(device)
        b = torch.randn((row["k"], row["n"]), generator=generator).to(device)
        torch.mm(a, b)
        seconds = []
        for _ in range(reps):
            synchronize()
            start = time.perf_counter()
            torch.mm(a, b)
            synchronize()
            seconds.append(time.perf_counter() - start)
        flops = 2.0 * row["m"] * row["k"] * row["n"]
        results.append(
            {**row, "gflops": flops / min(seconds) / 1e9, "median_gflops": flops / statistics.median(seconds) / 1e9}
        )
    return results


class OpClock:
    """Wall time and FLOPs of every convolution and linear layer while a block runs (forward hooks, per module).

    The intervals are disjoint and inside the block, so block FLOPs / block time <= max(module FLOPs / module time).
    On a GPU each hook synchronizes, so use it there only where that cost is acceptable.
    """

    def __init__(self, net: Any, *, synchronize: Callable[[], None]) -> None:
        """Watch net's Conv2d and Linear modules."""
        import torch

        self._modules = {m: n for n, m in net.named_modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))}
        self._synchronize = synchronize
        self.seconds: dict[str, float] = {}
        self.flops: dict[str, float] = {}
        self.shapes: dict[tuple[int, int, int], dict[str, Any]] = {}
        self._started: dict[Any, float] = {}

    def _before(self, module: Any, inputs: Any) -> None:
        """Start this module's clock."""
        self._synchronize()
        self._started[module] = time.perf_counter()

    def _after(self, module: Any, inputs: Any, output: Any) -> None:
        """Stop it and add the call's FLOPs (2 x multiply-accumulates, grouped convolutions per group)."""
        import torch

        self._synchronize()
        elapsed = time.perf_counter() - self._started.pop(module)
        name = self._modules[module]
        if isinstance(module, torch.nn.Conv2d):  # as a GEMM (im2col), per group: out x in*kh*kw x batch*oh*ow
            groups = module.groups
            m, k = (
                module.out_channels // groups,
                module.in_channels // groups * module.kernel_size[0] * module.kernel_size[1],
            )
            n = output.shape[0] * output.shape[2] * output.shape[3]
            source = f"conv {name} as GEMM, batch {output.shape[0]}" + (
                f", per group of {groups}" if groups > 1 else ""
            )
            flops = 2.0 * m * k * n * groups
        else:  # batch x in x out
            m, k, n = output.shape[0], module.in_features, module.out_features
            source = f"fc {name}, batch {m}"
            flops = 2.0 * m * k * n
        self.shapes.setdefault((m, k, n), {"m": m, "k": k, "n": n, "source": source})
        self.seconds[name] = self.seconds.get(name, 0.0) + elapsed
        self.flops[name] = self.flops.get(name, 0.0) + flops

    @contextlib.contextmanager
    def watch(self) -> Iterator[OpClock]:
        """Hooks on for the with-block."""
        handles = [m.register_forward_pre_hook(self._before) for m in self._modules]
        handles += [m.register_forward_hook(self._after) for m in self._modules]
        try:
            yield self
        finally:
            for handle in handles:
                handle.remove()

    def rates(self) -> dict[str, float]:
        """GFLOP/s per module over the block."""
        return {name: self.flops[name] / self.seconds[name] / 1e9 for name in self.flops if self.seconds[name] > 0}


def gemm_limit(scan: Sequence[dict[str, Any]], in_sweep: dict[str, dict[str, float]]) -> dict[str, Any]:
    """Reference (a): the best rate of the scan and of every layer inside the sweeps, and what reached it."""
    candidates = [(row["gflops"], f"torch.mm {row['m']}x{row['k']}x{row['n']} ({row['source']})") for row in scan]
    candidates += [
        (rate, f"{module} inside the sweep from {layer}")
        for layer, rates in in_sweep.items()
        for module, rate in rates.items()
    ]
    if not candidates:
        raise ValueError("gemm_limit needs a scan or in-sweep rates; got neither")
    best, source = max(candidates)
    best_scan = max((row["gflops"] for row in scan), default=float("nan"))
    return {"gflops": best, "source": source, "best_scan_gflops": best_scan}


# fp32 lanes (CUDA cores) per SM by compute capability major.minor: NVIDIA's CUDA C programming guide, "arithmetic
# instructions" table (32-bit floating-point add, multiply, multiply-add results per clock per SM).
FP32_LANES_PER_SM = {(7, 0): 64, (7, 5): 64, (8, 0): 64, (8, 6): 128, (8, 7): 128, (8, 9): 128, (9, 0): 128}


def gpu_peak() -> dict[str, Any]:
    """fp32 (non-tensor-core) FLOP/s of GPU 0: SMs x fp32 lanes x 2 x the maximum SM clock nvidia-smi reports."""
    import subprocess

    import torch

    props = torch.cuda.get_device_properties(0)
    lanes = FP32_LANES_PER_SM.get((props.major, props.minor))
    try:
        done = subprocess.run(
            ["nvidia-smi", "--query-gpu=clocks.max.sm", "--format=csv,noheader,nounits", "--id=0"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        clock_mhz: float | None = float(done.stdout.strip())
    except (OSError, subprocess.SubprocessError, ValueError):
        clock_mhz = None
    facts = {"name": props.name, "sms": props.multi_processor_count, "capability": f"{props.major}.{props.minor}"}
    if lanes is None or clock_mhz is None:
        return {"gflops": None, "why": f"unknown fp32 lanes per SM or clock for {facts}", "facts": facts}
    return {
        "gflops": props.multi_processor_count * lanes * 2 * clock_mhz / 1e3,
        "clock_mhz": clock_mhz,
        "facts": facts,
        "assumptions": [
            f"{props.multi_processor_count} SMs x {lanes} fp32 lanes (compute capability {props.major}.{props.minor}) "
            f"x 2 (FMA) x {clock_mhz:.0f} MHz (nvidia-smi clocks.max.sm)",
            "fp32 on CUDA cores; TF32 tensor cores are off in the bench (torch.backends.*.allow_tf32 = False), so "
            "no convolution or GEMM may use them",
        ],
    }


def device_peak(device: str, *, threads: int) -> dict[str, Any]:
    """The theoretical peak of where the network runs."""
    return gpu_peak() if device == "cuda" else theoretical_peak(threads)
