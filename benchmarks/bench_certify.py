"""Performance harness of the certificate: what a ĝ map costs against one forward pass, and how precise it is.

For each layer and each parametrization z of the image (r x r pixels and the full input) it times, through
`ifmsan.certify.probes` (the estimator behind `ifmsan certify`): one forward pass of the release z -> IFM (batch 1,
the layers' torch form, no gradient), one forward pass of the whole network, and a ĝ map (`probe_products` +
`row_norms`) with each K of --probes; and reports the ratios map / forward measured side by side in one run, and the
relative standard error of the ||J_s||_F^2 estimate (`held_norm`) at window --window with --select, for each K.
Prints a table and writes JSON to benchmarks/results/. Timing does not depend on the weights, so alexnet_mini runs
with seeded random weights unless --weights is given; the image is minidata's first test image.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Options: model, layers, resolutions, probe counts, window, selector, repetitions and threads."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="alexnet_mini", help="model name as `ifmsan certify` takes it")
    parser.add_argument("--weights", help="weights file (default: seeded random weights)")
    parser.add_argument("--layers", default="norm1,conv2,norm2,conv3,conv5", help="comma list of IFM layers")
    parser.add_argument("--resolutions", default="32,full", help="comma list of sides r, or 'full' (default 32,full)")
    parser.add_argument("--probes", default="32,128", help="comma list of K (default 32,128)")
    parser.add_argument("--window", type=int, default=8, help="window n of the held norm's error (default 8)")
    parser.add_argument("--select", default="nonzero_mean", help="selector of the held norm (default nonzero_mean)")
    parser.add_argument("--chunk", type=int, default=16, help="probes per forward-mode pass (default 16)")
    parser.add_argument("--reps", type=int, default=3, help="repetitions of each map (median, min, max; default 3)")
    parser.add_argument("--image", default="minidata:test:0", help="image source (default minidata:test:0)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the probes (default 0)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1, as the workflow's jobs)")
    parser.add_argument("--out", type=Path, help="JSON output (default benchmarks/results/certify-<time>.json)")
    return parser.parse_args(argv)


def seconds(task: Callable[[], object], *, reps: int) -> dict[str, Any]:
    """Median, min and max wall seconds of `reps` runs of task."""
    times = []
    for _ in range(reps):
        started = time.perf_counter()
        task()
        times.append(time.perf_counter() - started)
    return {"median": statistics.median(times), "min": min(times), "max": max(times), "values": times}


def forward_seconds(task: Callable[[], object]) -> float:
    """The median of a short forward pass, repeated until it has run at least 0.5 s (and at least 5 times)."""
    times: list[float] = []
    while len(times) < 5 or sum(times) < 0.5:
        started = time.perf_counter()
        task()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def measure_space(
    net: Any, image: Any, *, layer: str, resolution: int | None, args: argparse.Namespace
) -> dict[str, Any]:
    """One layer in one parametrization: the forwards, each K's map time and ratios, each K's relative error."""
    import torch

    from ifmsan.certify import probes as P
    from ifmsan.certify.pixels import image_pixels, release_function
    from ifmsan.core.hold import holding
    from ifmsan.models.fused import torch_form

    release = release_function(net, layer=layer, resolution=resolution)
    z = image_pixels(image, net=net, resolution=resolution)
    x = net.preprocess(image, source=args.image)[None]
    with torch.no_grad(), torch_form():
        ifm = release(z[None])[0]
        release_s = forward_seconds(lambda: release(z[None]))
        network_s = forward_seconds(lambda: net(x))
    hold = holding(ifm, args.window, select=args.select, seed=args.seed)
    row: dict[str, Any] = {
        "layer": layer, "space": "full" if resolution is None else f"r{resolution}", "dims": z.numel(),
        "ifm_size": ifm.numel(), "released": hold.released, "release_forward_s": release_s, "network_forward_s": network_s,
        "maps": [],
    }  # fmt: skip
    for count in (int(k) for k in args.probes.split(",")):
        products: list[torch.Tensor] = []

        def one_map(count: int = count, products: list[torch.Tensor] = products) -> None:
            products[:] = [P.probe_products(release, z, probes=count, seed=args.seed, chunk=args.chunk)]
            P.row_norms(products[0])

        timing = seconds(one_map, reps=args.reps)
        estimate, se = P.held_norm(products[0], hold)
        row["maps"].append({
            "probes": count, "map_s": timing, "ratio_to_release_forward": timing["median"] / release_s,
            "ratio_to_network_forward": timing["median"] / network_s, "held_norm": estimate, "held_norm_se": se,
            "relative_se": se / estimate if estimate > 0 else float("nan"),
        })  # fmt: skip
    return row


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Time every (layer, space); return the report."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import torch

    from ifmsan import models
    from ifmsan.certify import probes as P
    from ifmsan.certify.pixels import check_resolution, image_pixels, release_function
    from ifmsan.steps.images import minidata_image

    torch.set_num_threads(args.threads)
    net = models.load(args.model, weights=args.weights)
    image = minidata_image(args.image)
    spaces = [None if r == "full" else check_resolution(int(r)) for r in args.resolutions.split(",")]
    layers = args.layers.split(",")
    warm = release_function(net, layer=layers[0], resolution=spaces[0])  # the first JVP's one-off imports, untimed
    P.probe_products(warm, image_pixels(image, net=net, resolution=spaces[0]), probes=2, seed=0)
    rows = [measure_space(net, image, layer=layer, resolution=r, args=args) for layer in layers for r in spaces]
    return {
        "benchmark": "certify",
        "when": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "processor": platform.processor(), "cpus": os.cpu_count()},
        "torch": torch.__version__,
        "model": args.model,
        "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "rows": rows,
    }


def table(report: dict[str, Any]) -> str:
    """One line per (layer, space, K): sizes, forward seconds, map seconds, the two ratios, the relative error."""
    head = (f"{'layer':<8} {'space':<5} {'d':>7} {'D':>7} {'fwd ms':>7} {'net ms':>7} {'K':>4} {'map s':>7} "
            f"{'/fwd':>7} {'/net':>7} {'rel se':>7}")  # fmt: skip
    lines = [head]
    for row in report["rows"]:
        for m in row["maps"]:
            lines.append(
                f"{row['layer']:<8} {row['space']:<5} {row['dims']:>7} {row['ifm_size']:>7} "
                f"{1e3 * row['release_forward_s']:7.2f} {1e3 * row['network_forward_s']:7.2f} {m['probes']:>4} "
                f"{m['map_s']['median']:7.2f} {m['ratio_to_release_forward']:7.0f} {m['ratio_to_network_forward']:7.0f} "
                f"{m['relative_se']:7.4f}"
            )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Run, print, write JSON."""
    args = parse_args(argv)
    report = run(args)
    print(table(report))
    out = args.out or RESULTS / f"certify-{report['when'].replace(':', '')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
