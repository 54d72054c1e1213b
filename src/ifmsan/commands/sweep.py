"""`ifmsan sweep`: p(n) of the target class for one layer, one knob and a range of windows or noise scales."""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ifmsan._shared.values import integer, parse_values
from ifmsan.commands._args import check_int, check_output_dir, check_output_file
from ifmsan.commands._common import add_model_options, load_model, parse_attrs, timing_line

if TYPE_CHECKING:
    from xarray import Dataset

    from ifmsan.models.base import LayeredNet
    from ifmsan.steps.sweep import ChainStep

HELP = "Sweep one layer's IFM over one or more knobs (windows 2..150 by default) and write p(n) as NetCDF."


def configure(parser: argparse.ArgumentParser) -> None:
    """Declare the options of this verb."""
    from ifmsan.core.knobs import KNOBS

    add_model_options(parser)
    parser.add_argument("--ifms", type=Path, required=True, help="the image's IFMs, as written by 'ifmsan extract'")
    parser.add_argument("--layer", required=True, help="the IFM layer to sweep, e.g. pool5")
    parser.add_argument(
        "--knob",
        nargs="+",
        default=["nonzero_mean"],
        choices=KNOBS,
        metavar="KNOB",
        help=f"sanitization knob(s), one file each: {', '.join(KNOBS)} (default: nonzero_mean)",
    )
    parser.add_argument(
        "--values",
        default="2:150",
        help="windows for the sample-and-hold knobs, START:STOP[:STEP] or a list (default 2:150)",
    )
    parser.add_argument(
        "--scales", help="noise scales for laplace/gaussian, e.g. 0,0.5,1 (default: 0..5 in steps of 0.1)"
    )
    parser.add_argument(
        "--chain", default="", help="pre-sanitize steps before the swept layer, e.g. norm2@3 or norm2@3+pool2@4"
    )
    parser.add_argument("--seed", type=integer, default=0, help="seed of the random selector and the noise knobs")
    parser.add_argument(
        "--batch-size", type=integer, default=32, help="sanitized IFMs per forward batch (bounds memory)"
    )
    outputs = parser.add_mutually_exclusive_group(required=True)
    outputs.add_argument("--out", type=Path, help="output .nc file (one knob)")
    outputs.add_argument("--out-dir", type=Path, help="output folder: one <knob>.nc per knob")


def sweep_targets(*, knobs: list[str], out: Path | None, out_dir: Path | None) -> dict[str, Path]:
    """The output of each knob (--out for one knob, else <out-dir>/<knob>.nc), checked before any work."""
    if out is not None and len(knobs) != 1:
        raise ValueError(f"--out takes one knob; for {len(knobs)} knobs give --out-dir")
    if out is not None and out.suffix != ".nc":
        raise ValueError(f"--out must end in .nc, got {out}")
    if out is not None:
        check_output_file("--out", out)
    elif out_dir is not None:
        check_output_dir("--out-dir", out_dir)
    else:
        raise ValueError("give --out or --out-dir")
    targets = {knob: out if out is not None else out_dir / f"{knob}.nc" for knob in knobs}  # type: ignore[operator]
    for path in targets.values():
        check_output_file("--out-dir" if out is None else "--out", path)
    return targets


def sweep_layer(
    net: LayeredNet,
    ifms: Dataset,
    *,
    layer: str,
    targets: dict[str, Path],
    windows: Sequence[float],
    scales: Sequence[float] | None,
    chain: Sequence[ChainStep],
    seed: int,
    batch_size: int,
    attrs: dict[str, str],
) -> list[tuple[Dataset, Path, str]]:
    """Sweep one layer's IFM over every knob of `targets`; return (Dataset, output, log line) per knob, unwritten."""
    from ifmsan.core.knobs import get_knob
    from ifmsan.steps.sweep import chain_label, sweep_dataset

    results = []  # every knob is swept before any file is written: a failed command leaves no output
    for knob, out in targets.items():
        values = windows if get_knob(knob).parameter == "window" else scales
        dataset = sweep_dataset(
            net,
            ifms,
            layer=layer,
            knob=knob,
            values=values,
            chain=chain,
            seed=seed,
            batch_size=batch_size,
            attrs=attrs,
        )
        p = dataset["probability"].values
        message = (
            f"{layer} {knob} chain={chain_label(chain) or '-'}: p0={dataset.attrs['p0']:.4f} "
            f"p in [{p.min():.4f}, {p.max():.4f}] -> {out}"
        )
        results.append((dataset, out, message))
    return results


def run(args: argparse.Namespace) -> int:
    """Check everything, sweep, write the Dataset atomically."""
    from ifmsan.steps.io import all_or_none, read_ifms, write_netcdf
    from ifmsan.steps.sweep import parse_chain

    targets = sweep_targets(knobs=list(dict.fromkeys(args.knob)), out=args.out, out_dir=args.out_dir)
    check_int("--batch-size", args.batch_size, minimum=1)
    check_int("--seed", args.seed, minimum=0)
    windows = parse_values(args.values)
    scales = parse_values(args.scales, flag="--scales", kind="scale") if args.scales else None
    chain = parse_chain(args.chain)
    attrs = parse_attrs(args.attr)
    for out in targets.values():
        if out.resolve() == args.ifms.resolve():
            raise ValueError(f"the output {out} is the input --ifms {args.ifms}; write the sweep elsewhere")
    ifms = read_ifms(args.ifms, layers=[args.layer, *(step.layer for step in chain)])  # only what the sweep runs on
    net = load_model(args)
    started = time.perf_counter()
    results = sweep_layer(
        net, ifms, layer=args.layer, targets=targets, windows=windows, scales=scales, chain=chain, seed=args.seed,
        batch_size=args.batch_size, attrs=attrs,
    )  # fmt: skip
    computed = time.perf_counter()
    with all_or_none(*{out.parent for out in targets.values()}) as written:
        for dataset, out, _ in results:
            written.append(write_netcdf(dataset, out))
    for _, _, message in results:
        print(message)
    print(timing_line(started=started, computed=computed))
    return 0
