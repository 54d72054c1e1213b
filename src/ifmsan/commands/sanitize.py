"""`ifmsan sanitize`: sanitize one IFM stored as .npy (or a variable of a .nc file)."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "Sanitize one IFM file (.npy) with a sample-and-hold window or a noise knob."


def configure(parser: argparse.ArgumentParser) -> None:
    """Declare the options of this verb."""
    from ifmsan.knobs import KNOBS

    parser.add_argument("input", type=Path, metavar="IN", help="IFM as .npy (any shape, floating point)")
    parser.add_argument("output", type=Path, metavar="OUT", help="where to write the sanitized IFM (.npy)")
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--window", type=int, help="sampling-window size n (>= 1) for the sample-and-hold knobs")
    group.add_argument("--scale", type=float, help="noise scale relative to the IFM's std, for laplace/gaussian")
    parser.add_argument(
        "--select",
        default="nonzero_mean",
        choices=KNOBS,
        help="knob: nonzero_mean (the paper's Algorithm 1, default), first, mean, random, laplace, gaussian",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed for the random selector and the noise knobs")


def run(args: argparse.Namespace) -> int:
    """Read, sanitize, and write atomically."""
    import numpy as np

    from ifmsan.atomic import atomic_path
    from ifmsan.knobs import NOISES, get_knob

    if args.input.suffix != ".npy":
        raise ValueError(f"IN must be a .npy file, got {args.input}")
    if args.output.suffix != ".npy":
        raise ValueError(f"OUT must end in .npy, got {args.output}")
    is_noise = args.select in NOISES
    if is_noise and args.scale is None:
        raise ValueError(f"--select {args.select} is a noise knob: give --scale, not --window")
    if not is_noise and args.window is None:
        raise ValueError(f"--select {args.select} is a sample-and-hold knob: give --window, not --scale")
    if not args.input.is_file():
        raise FileNotFoundError(f"IN not found: {args.input}")
    try:
        ifm = np.load(args.input, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise ValueError(f"IN {args.input} is not a readable .npy array: {exc}") from exc
    knob = get_knob(args.select, seed=args.seed)
    result = knob.apply(ifm, args.scale if is_noise else args.window)
    with atomic_path(args.output, suffix=".part.npy") as tmp:
        np.save(tmp, np.asarray(result))
    return 0
