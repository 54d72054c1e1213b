"""`ifmsan gamma`: run the runtime γ controller (paper Figure 3) on an image's IFMs and check it against the sweeps."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from ifmsan._shared.values import integer, real
from ifmsan.commands._common import add_model_options, load_model, parse_attrs, timing_line

HELP = "Run the gamma controller (GammaSanitizer) per layer and gamma on one image; optionally compare with sweeps."


def configure(parser: argparse.ArgumentParser) -> None:
    """Declare the options of this verb."""
    from ifmsan.core.sanitize import SELECTORS

    add_model_options(parser)
    parser.add_argument("--ifms", type=Path, required=True, help="the image's IFMs, as written by 'ifmsan extract'")
    parser.add_argument("--layers", nargs="+", required=True, help="IFM layers to sanitize")
    parser.add_argument(
        "--gammas", nargs="+", type=real, default=[0.25, 0.5, 1.0, 2.0, 3.0, 4.0], help="degrees of sanitization"
    )
    parser.add_argument("--values", default="2:150", help="candidate windows START:STOP[:STEP] (default 2:150)")
    parser.add_argument("--knob", default="nonzero_mean", choices=SELECTORS, help="sample-and-hold knob (selector)")
    parser.add_argument("--batch-size", type=integer, default=16, help="candidate windows evaluated per forward batch")
    parser.add_argument(
        "--sweeps",
        nargs="*",
        type=Path,
        default=[],
        help="sweep files to check n*(gamma) against: unchained sweeps of --knob, at most one per layer of "
        "--layers, of the same image, model, weights, config_hash and target as --ifms (anything else is refused)",
    )
    parser.add_argument("--out", type=Path, required=True, help="output .csv")


def run(args: argparse.Namespace) -> int:
    """Check the options and files, run the controller (ifmsan.core.controller.controller_table), write the CSV atomically."""
    from ifmsan._shared.atomic import atomic_path
    from ifmsan._shared.values import parse_values
    from ifmsan.commands._args import check_int, check_output_file
    from ifmsan.core.controller import controller_table
    from ifmsan.core.metrics import check_gamma
    from ifmsan.report.consistency import (
        check_config_hash,
        check_p0_of_ifms,
        check_same_network,
        check_sweeps_match_ifms,
    )
    from ifmsan.steps.extract import ifms_of
    from ifmsan.steps.io import read_ifms, read_sweep

    if args.out.suffix != ".csv":
        raise ValueError(f"--out must end in .csv, got {args.out}")
    gammas = [check_gamma(g, name="--gammas value") for g in args.gammas]
    check_int("--batch-size", args.batch_size, minimum=1)
    check_output_file("--out", args.out)
    windows = [int(window) for window in parse_values(args.values)]  # kind='window': integers already
    attrs = parse_attrs(args.attr)
    source = read_ifms(args.ifms, layers=args.layers)
    check_config_hash(source.attrs, attrs, source=str(args.ifms))
    sweeps = [read_sweep(path) for path in args.sweeps]
    references = check_sweeps_match_ifms(source, sweeps, layers=args.layers, knob=args.knob)
    net = load_model(args)
    check_same_network(source.attrs, net, source=str(args.ifms))
    check_p0_of_ifms(
        net, {k: v.to(args.device) for k, v in ifms_of(source).items()}, layers=args.layers,
        target=int(source.attrs["target"]), p0=float(source.attrs["p0"]), source=str(args.ifms),
    )  # fmt: skip
    started = time.perf_counter()
    frame = controller_table(
        net, ifms_of(source), layers=args.layers, gammas=gammas, windows=windows, target=int(source.attrs["target"]),
        knob=args.knob, batch_size=args.batch_size, references=references, image_id=source.attrs.get("image_id", ""),
    )  # fmt: skip
    summary = frame[["layer", "gamma", "window", "status"]].to_string(index=False)  # before the write: it can fail
    computed = time.perf_counter()
    with atomic_path(args.out) as tmp:
        frame.to_csv(tmp, index=False)
    print(summary)
    print(timing_line(started=started, computed=computed))
    return 0
