"""`ifmsan calibrate`: a layer's calibration std, the fixed reference of every certified noise σ (ifmsan.certify)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ifmsan._shared.values import integer
from ifmsan.commands._common import add_model_options, load_model, parse_attrs

HELP = "Compute a layer's IFM std over minidata's calibration split (never a queried image), as JSON."


def configure(parser: argparse.ArgumentParser) -> None:
    """Declare the options of this verb."""
    add_model_options(parser)
    parser.add_argument("--layer", required=True, help="the IFM layer")
    parser.add_argument("--n-images", type=integer, default=64, help="calibration images (default %(default)s)")
    parser.add_argument("--seed", type=integer, default=0, help="seed of the calibration images (default %(default)s)")
    parser.add_argument("--out", type=Path, required=True, help="output .json")


def run(args: argparse.Namespace) -> int:
    """Check the options, compute the std, write the JSON atomically with its provenance."""
    import json

    from ifmsan._shared.atomic import atomic_path
    from ifmsan.certify.calibration import calibration_std
    from ifmsan.commands._args import check_int, check_output_file
    from ifmsan.steps.extract import provenance
    from ifmsan.steps.io import check_user_attrs
    from ifmsan.steps.sweep import check_layer

    if args.out.suffix != ".json":
        raise ValueError(f"--out must end in .json, got {args.out}")
    check_output_file("--out", args.out)
    check_int("--n-images", args.n_images, minimum=2)
    check_int("--seed", args.seed, minimum=0)
    attrs = check_user_attrs(parse_attrs(args.attr))
    net = load_model(args)
    check_layer(net, args.layer, name="--layer")
    result = {**provenance(net, ifmsan_kind="calibration"), **attrs,
              **calibration_std(net, layer=args.layer, n_images=args.n_images, seed=args.seed)}  # fmt: skip
    text = json.dumps(result, indent=2, sort_keys=True) + "\n"
    with atomic_path(args.out) as tmp:
        tmp.write_text(text)
    print(f"{args.layer}: calibration std {result['calibration_std']:.6g} over {args.n_images} images -> {args.out}")
    return 0
