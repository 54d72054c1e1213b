"""`ifmsan sweep`: p(n) of the target class for one layer, one knob and a range of windows or noise scales."""

from __future__ import annotations

import argparse
from pathlib import Path

from ifmsan.commands._common import add_model_options, load_model, parse_attrs

HELP = "Sweep one layer's IFM over one or more knobs (windows 2..150 by default) and write p(n) as NetCDF."


def parse_values(text: str) -> list[float]:
    """'2:150' (inclusive range), '2:150:2', or a comma list '0,0.5,1'."""
    try:
        if ":" in text:
            parts = [int(p) for p in text.split(":")]
            if len(parts) not in (2, 3):
                raise ValueError
            start, stop, step = parts[0], parts[1], parts[2] if len(parts) == 3 else 1
            if step < 1 or stop < start:
                raise ValueError
            return list(range(start, stop + 1, step))
        return [float(v) if any(c in v for c in ".eE") else int(v) for v in text.split(",")]
    except ValueError:
        raise ValueError(f"--values must be START:STOP[:STEP] (inclusive) or a comma list, got {text!r}") from None


def configure(parser: argparse.ArgumentParser) -> None:
    """Declare the options of this verb."""
    from ifmsan.knobs import KNOBS

    add_model_options(parser)
    parser.add_argument("--ifms", type=Path, required=True, help="the image's IFMs, as written by 'ifmsan extract'")
    parser.add_argument("--layer", required=True, help="the IFM layer to sweep, e.g. pool5")
    parser.add_argument(
        "--knob", nargs="+", default=["nonzero_mean"], choices=KNOBS, metavar="KNOB",
        help=f"sanitization knob(s), one file each: {', '.join(KNOBS)} (default: nonzero_mean)",
    )
    parser.add_argument("--values", default="2:150", help="windows for the sample-and-hold knobs, START:STOP[:STEP] or a list (default 2:150)")
    parser.add_argument("--scales", help="noise scales for laplace/gaussian, e.g. 0,0.5,1 (default: 0..5 in steps of 0.1)")
    parser.add_argument("--chain", default="", help="pre-sanitize steps before the swept layer, e.g. norm2@3 or norm2@3+pool2@4")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random selector and the noise knobs")
    parser.add_argument("--batch-size", type=int, default=32, help="sanitized IFMs per forward batch (bounds memory)")
    outputs = parser.add_mutually_exclusive_group(required=True)
    outputs.add_argument("--out", type=Path, help="output .nc file (one knob)")
    outputs.add_argument("--out-dir", type=Path, help="output folder: one <knob>.nc per knob")


def run(args: argparse.Namespace) -> int:
    """Check everything, sweep, write the Dataset atomically."""
    from ifmsan.io import read_netcdf, write_netcdf
    from ifmsan.sweep import parse_chain, sweep_dataset

    from ifmsan.knobs import get_knob

    knobs = list(dict.fromkeys(args.knob))
    if args.out is not None and len(knobs) != 1:
        raise ValueError(f"--out takes one knob; for {len(knobs)} knobs give --out-dir")
    if args.out is not None and args.out.suffix != ".nc":
        raise ValueError(f"--out must end in .nc, got {args.out}")
    targets = {knob: args.out if args.out is not None else args.out_dir / f"{knob}.nc" for knob in knobs}
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {args.batch_size}")
    windows = parse_values(args.values)
    scales = parse_values(args.scales) if args.scales else None
    chain = parse_chain(args.chain)
    attrs = parse_attrs(args.attr)
    ifms = read_netcdf(args.ifms)
    net = load_model(args)
    for knob, out in targets.items():
        values = windows if get_knob(knob).parameter == "window" else scales
        dataset = sweep_dataset(
            net, ifms, layer=args.layer, knob=knob, values=values, chain=chain, seed=args.seed,
            batch_size=args.batch_size, attrs=attrs,
        )
        write_netcdf(dataset, out)
        p = dataset["probability"].values
        print(f"{args.layer} {knob} chain={args.chain or '-'}: p0={dataset.attrs['p0']:.4f} p in [{p.min():.4f}, {p.max():.4f}] -> {out}")
    return 0
