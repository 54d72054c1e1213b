"""`ifmsan figures`: the paper's Figures 2, 4, 5 and the layer/knob overviews (PNG + PDF) from sweep files."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from ifmsan._shared.values import real
from ifmsan.commands.report import layer_list

HELP = "Draw the figures (PNG + PDF) that the given sweep files allow, for one model and image."

log = logging.getLogger(__name__)


def configure(parser: argparse.ArgumentParser) -> None:
    """Declare the options of this verb."""
    parser.add_argument(
        "--sweeps",
        nargs="+",
        type=Path,
        required=True,
        metavar="NC",
        help="sweep NetCDF files; the drawn (model, image) must come from one network (weights_sha or seeded init), "
        "configuration (config_hash) and target: a mixture is an error naming the files (draw each set in its own run)",
    )
    parser.add_argument("--out-dir", type=Path, required=True, help="folder for <figure>.png and <figure>.pdf")
    parser.add_argument("--model", default=None, help="model to draw when the sweeps hold several")
    parser.add_argument("--image", default=None, help="image id to draw when the sweeps hold several")
    parser.add_argument(
        "--gammas",
        nargs="+",
        type=real,
        default=[0.25, 0.5, 1.0, 2.0, 3.0, 4.0],
        metavar="GAMMA",
        help="degrees of sanitization marked in the knob-coverage figures (default: 0.25 0.5 1 2 3 4)",
    )
    parser.add_argument(
        "--layer-order",
        type=layer_list,
        default=None,
        help="order of the layers, comma-separated (default: AlexNet's conv1..fc8, others after)",
    )


def run(args: argparse.Namespace) -> int:
    """Validate the inputs, then draw and save every figure the sweeps allow."""
    from ifmsan.commands._args import check_output_dir
    from ifmsan.report import figures
    from ifmsan.report.curves import load_sweeps, select_image
    from ifmsan.report.gamma import check_gammas

    gammas = check_gammas(args.gammas, name="--gammas")
    check_output_dir("--out-dir", args.out_dir)
    sweeps = load_sweeps(args.sweeps)
    curves = select_image(sweeps, model=args.model, image=args.image)
    made = figures.write_figures(curves, out_dir=args.out_dir, gammas=gammas, layer_order=args.layer_order)
    log.info("wrote %d figure(s) to %s: %s", len(made), args.out_dir, ", ".join(made))
    return 0
