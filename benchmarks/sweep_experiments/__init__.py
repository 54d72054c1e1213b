"""The measurements bench_sweep.py runs, one module each.

- `overhead`: the sweeps themselves, per layer and repetition: sanitizer and forward time, the bare forward,
  FLOP rates against the machine's limits, peak memory, and with --before the torch sanitizer path;
- `naive`: the vectorized sanitizer against per-window transcriptions of Algorithm 1;
- `fused_check`: the fused sanitizer against the torch path, bit for bit (--check);
- `forward_before`: the forward path before the fused layers, back to back with today's (--forward-before);
- `batch_scan`: the bare forward per batch size and memory format (--scan);
- `compare_cpu`: a device's sweeps and sanitizer calls against the CPU's (--compare-cpu);
- `dag`: a whole Snakemake run of a config through bench_dag.run_dag (--dag).

The modules import each other relatively and `timing` and `machine_limits` as top-level modules: benchmarks/ is on
sys.path when a benchmark runs as a script, and tests/test_bench_limits.py puts it there.
"""
