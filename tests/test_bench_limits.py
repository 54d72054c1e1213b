"""The benchmark's limits (benchmarks/machine_limits.py), its sanitizer profile, its verdict (sweep_report.py) and its
FLOP count (timing.py), on hand-made inputs."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))
machine_limits = importlib.import_module("machine_limits")
sweep_report = importlib.import_module("sweep_report")
timing = importlib.import_module("timing")

ZEN4 = """processor\t: 0
vendor_id\t: AuthenticAMD
cpu family\t: 25
model\t\t: 17
model name\t: AMD EPYC
cpu MHz\t\t: 2596.140
siblings\t: 2
cpu cores\t: 2
flags\t\t: fpu sse sse2 avx fma avx2 avx512f avx512dq

processor\t: 1
vendor_id\t: AuthenticAMD
"""
SKYLAKE_SP = ZEN4.replace("AuthenticAMD", "GenuineIntel").replace("25", "6").replace("17", "85")
AVX2_ONLY = ZEN4.replace("avx512f avx512dq", "").replace("17", "1")  # family 25 model 1: Zen 3
NEON = "processor\t: 0\nBogoMIPS\t: 50.00\nFeatures\t: fp asimd\nCPU implementer\t: 0x41\n"


def test_cpu_facts_reads_the_first_cpu() -> None:
    facts = machine_limits.cpu_facts(ZEN4, cpus=2)
    assert (facts["vendor"], facts["family"], facts["model"]) == ("AuthenticAMD", 25, 17)
    assert facts["cpuinfo_mhz"] == pytest.approx(2596.14)
    assert facts["vector_bits"] == 512 and facts["fma"] and facts["usable_cpus"] == 2
    bare = machine_limits.cpu_facts(NEON, cpus=4)
    assert bare["vendor"] == "unknown" and bare["cpuinfo_mhz"] is None and bare["vector_bits"] is None


@pytest.mark.parametrize(
    ("cpuinfo", "core", "flops_per_cycle"),
    [
        (ZEN4, "Zen 4", 32),  # two 256-bit FMA pipes: AVX-512 runs as two halves, 16 fp32 FMAs a cycle
        (AVX2_ONLY, "Zen 3", 32),
        (SKYLAKE_SP, "Intel", 64),  # two 512-bit FMA units
        (NEON, "unknown", 16),  # no vector flags known: two 128-bit units assumed and said so
    ],
)
def test_theoretical_peak_is_cores_times_clock_times_flops_per_cycle(
    cpuinfo: str, core: str, flops_per_cycle: int
) -> None:
    facts = machine_limits.cpu_facts(cpuinfo, cpus=2)
    peak = machine_limits.theoretical_peak(4, facts=facts, clock_mhz=3000.0)
    assert peak["core"] == core and peak["fp32_flops_per_cycle_per_core"] == flops_per_cycle
    assert peak["cores"] == 2  # no more than the CPUs the process may use, whatever --threads says
    assert peak["gflops"] == pytest.approx(2 * 3.0 * flops_per_cycle)
    text = " ".join(peak["assumptions"])
    assert "vCPU" in text and "3000 MHz" in text and "FMA" in text


def test_the_measured_clock_is_a_plausible_core_clock() -> None:
    pytest.importorskip("numba")
    mhz = machine_limits.measured_clock_mhz(steps=20_000_000, reps=2)
    assert mhz is not None and 300 < mhz < 7000


def tiny_net() -> torch.nn.Module:
    """Two convolutions (one grouped) and a linear layer: FLOPs and GEMM shapes are easy to count by hand."""
    return torch.nn.Sequential(
        torch.nn.Conv2d(4, 6, kernel_size=3),  # 8x8 -> 6x6
        torch.nn.Conv2d(6, 8, kernel_size=2, groups=2),  # -> 5x5
        torch.nn.Flatten(),
        torch.nn.Linear(8 * 5 * 5, 10),
    )


def test_op_clock_counts_flops_and_gemm_shapes_by_hand() -> None:
    net = tiny_net()
    clock = machine_limits.OpClock(net, synchronize=lambda: None)
    with clock.watch(), torch.inference_mode():
        net(torch.randn(3, 4, 8, 8))
    assert clock.flops == {
        "0": 2 * 3 * 6 * 6 * 6 * (4 * 3 * 3),
        "1": 2 * 3 * 5 * 5 * 8 * (3 * 2 * 2),
        "3": 2 * 3 * 200 * 10,
    }
    assert set(clock.shapes) == {(6, 36, 3 * 36), (4, 12, 3 * 25), (3, 200, 10)}  # per group: 8 / 2 outputs, 6 / 2 * 4
    assert all(seconds > 0 for seconds in clock.seconds.values())
    assert not net._forward_hooks and not net[0]._forward_hooks  # the hooks are gone after the block


def test_the_gemm_limit_bounds_the_rate_of_the_timed_block() -> None:
    """The construction: the block's FLOPs are its layers' FLOPs and their intervals lie inside it, so its rate is at
    most the fastest layer's, which the limit includes; measured here on a real run, with a scan slower than the layers."""
    net = tiny_net()
    clock = machine_limits.OpClock(net, synchronize=lambda: None)
    with clock.watch(), torch.inference_mode():
        start = __import__("time").perf_counter()
        for _ in range(5):
            net(torch.randn(16, 4, 8, 8))
        block_s = __import__("time").perf_counter() - start
    slow_scan = [{"m": 1, "k": 1, "n": 1, "source": "square 1", "gflops": 1e-9}]
    limit = machine_limits.gemm_limit(slow_scan, {"block": clock.rates()})
    assert limit["source"].endswith("inside the sweep from block")
    assert sum(clock.flops.values()) / block_s / 1e9 <= limit["gflops"]
    fast_scan = [{**slow_scan[0], "gflops": 1e9}]
    assert machine_limits.gemm_limit(fast_scan, {"block": clock.rates()})["source"].startswith("torch.mm 1x1x1")
    with pytest.raises(ValueError, match="neither"):
        machine_limits.gemm_limit([], {})


def test_gemm_scan_times_every_shape_and_the_square_sizes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(machine_limits, "SQUARE_SIZES", (8, 16))
    rows = machine_limits.gemm_scan(
        [{"m": 4, "k": 5, "n": 6, "source": "conv x"}], device="cpu", reps=2, synchronize=lambda: None
    )
    assert [(r["m"], r["k"], r["n"]) for r in rows] == [(8, 8, 8), (16, 16, 16), (4, 5, 6)]
    assert all(r["gflops"] >= r["median_gflops"] > 0 for r in rows)


def fake_result(shares: dict[str, float], overheads: dict[str, float]) -> dict[str, Any]:
    """The parts of a bench result that the verdict reads."""
    one = lambda value: {"median": value, "min": value, "max": value, "values": [value]}  # noqa: E731
    return {
        "layers": {
            layer: {"overhead": one(overheads[layer]), "forward_share": one(share)} for layer, share in shares.items()
        },
        "total": {"overhead": one(0.02), "flop_efficiency": one(0.6), "peak_efficiency": one(0.5)},
    }


def test_the_verdict_checks_every_layer_whose_forward_is_not_tiny() -> None:
    shares = {"conv1": 0.6, "conv5": 0.385, "fc8": 0.015}
    ok = sweep_report.verdict(fake_result(shares, {"conv1": 0.01, "conv5": 0.029, "fc8": 0.2}))
    assert ok["total_ok"] and ok["layers_ok"]  # fc8's 0.2 does not count: its forward is 1.5 % of the total
    assert [layer for layer, row in ok["layers"].items() if row["counts"]] == ["conv1", "conv5"]
    above = sweep_report.verdict(fake_result(shares, {"conv1": 0.01, "conv5": 0.031, "fc8": 0.0}))
    assert not above["layers_ok"]


def test_the_sanitizer_profile_splits_a_call_into_parts() -> None:
    pytest.importorskip("numba")
    profile_sanitizer = importlib.import_module("profile_sanitizer")
    ifm = torch.relu(torch.randn(16, 30, 30, generator=torch.Generator().manual_seed(0)))
    parts = profile_sanitizer.profile_ifm(ifm, list(range(2, 40)), batch_size=16, reps=2)
    assert parts["mean_and_distance_s"] == pytest.approx(parts["hold_s"] - parts["fill_s"])
    assert 0 < parts["short_windows_s"] < parts["hold_s"] and parts["stream_tables_s"] > 0
    assert parts["samples_x_windows"] == ifm.numel() * 38


def test_useful_flops_on_a_fresh_network_count_each_layer_once() -> None:
    """The first ifm_shape call runs the network to learn the shapes: that run must not be counted."""
    from ifmsan import models

    net = models.load("alexnet_mini")
    flops = timing.useful_flops(net, net.ifm_layers[:2])
    conv1 = net.conv1
    out_h, out_w = net.ifm_shape(net.ifm_layers[1])[1:]
    by_hand = 2 * conv1.out_channels * out_h * out_w * conv1.in_channels * conv1.kernel_size[0] * conv1.kernel_size[1]
    assert flops[net.ifm_layers[0]] - flops[net.ifm_layers[1]] == by_hand


def test_the_harness_script_imports_its_parts_and_parses_every_option() -> None:
    """bench_sweep.py pulls its measurements from sweep_experiments/ and timing.py; its options parse as before."""
    bench_sweep = importlib.import_module("bench_sweep")
    args = bench_sweep.parse_args(["--windows", "2:5", "--layers", "fc8", "--check", "--profile", "--compare-cpu"])
    assert (args.threads, args.reps, args.windows, args.layers) == (2, 3, "2:5", "fc8")
    assert args.check and args.profile and args.compare_cpu and not args.dag
    with pytest.raises(SystemExit):
        bench_sweep.parse_args(["--windows", "5:2"])
