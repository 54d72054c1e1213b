"""`ifmsan certify`: ĝ maps of one image at one layer (NetCDF), and its Fisher-information certificate per (n, σ)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ifmsan._shared.values import integer
from ifmsan.commands._common import add_model_options, load_model, parse_attrs

HELP = "Estimate the Fisher-information leakage of sanitized IFMs of one image: ĝ maps, dFIL, MSE floor, PSNR ceiling."


def configure(parser: argparse.ArgumentParser) -> None:
    """Declare the options of this verb."""
    add_model_options(parser)
    parser.add_argument("--image", required=True, help="image source: a local path, an https:// or file:// URL, "
                        "skimage:<name> or minidata:<split>:<index>")  # fmt: skip
    parser.add_argument("--image-sha256", help="expected sha256 of the image bytes (required for URLs)")
    parser.add_argument("--image-id", required=True, help="id of the image (letters, digits, '_', '.', '-')")
    parser.add_argument("--cache-dir", type=Path, default=Path("data/images"), help="where downloaded images are kept")
    parser.add_argument("--layer", required=True, help="the IFM layer")
    parser.add_argument("--windows", required=True, help="window sizes n: START:STOP[:STEP] or a comma list")
    parser.add_argument("--selects", default="nonzero_mean", help="selectors, comma-separated (default %(default)s)")
    parser.add_argument(
        "--resolutions", default="32,full",
        help="parametrizations of the image: sides r (r x r pixels) and/or 'full' (the network input), comma-separated "
        "(default %(default)s)",
    )  # fmt: skip
    parser.add_argument("--probes", type=integer, default=32, help="K random directions (default %(default)s)")
    parser.add_argument("--seed", type=integer, default=0, help="seed of the probes (and of `random` picks)")
    parser.add_argument("--out", type=Path, required=True, help="output .nc: the ĝ maps and held norms")
    parser.add_argument(
        "--calibration", type=Path,
        help="the layer's `ifmsan calibrate` JSON: with --knobs and --scales, the certificate table is written too",
    )  # fmt: skip
    parser.add_argument("--knobs", default="hold_gaussian", help="knobs certified in the table (default %(default)s)")
    parser.add_argument("--scales", help="noise scales: σ = scale x the calibration std, a comma list")
    parser.add_argument("--table", type=Path, help="output .csv of the certificate (needs --calibration and --scales)")


def resolutions(text: str) -> list[int | None]:
    """'32,full' -> [32, None]: each side an integer >= 4, or 'full'."""
    from ifmsan.certify.pixels import check_resolution

    out: list[int | None] = []
    for item in (part.strip() for part in text.split(",")):
        if item == "full":
            out.append(None)
            continue
        try:
            out.append(check_resolution(int(item), name="--resolutions entry"))
        except ValueError:
            raise ValueError(f"--resolutions entries must be integers >= 4 or 'full', got {item!r}") from None
    return out


def run(args: argparse.Namespace) -> int:
    """Check every option and file, compute the maps, write them (and the table) atomically."""
    from ifmsan._shared.values import parse_values
    from ifmsan.certify.maps import certify_maps, check_probes
    from ifmsan.certify.table import certificate_table, read_calibration, write_table
    from ifmsan.commands._args import check_output_file
    from ifmsan.steps.images import load_image_with_checksum
    from ifmsan.steps.io import all_or_none, check_id, check_user_attrs, write_netcdf
    from ifmsan.steps.sweep import check_layer

    check_id(args.image_id, name="--image-id")
    if args.out.suffix != ".nc":
        raise ValueError(f"--out must end in .nc, got {args.out}")
    check_output_file("--out", args.out)
    windows = [int(w) for w in parse_values(args.windows, flag="--windows", kind="window")]
    selects = [s.strip() for s in args.selects.split(",")]
    spaces = resolutions(args.resolutions)
    probes = check_probes(args.probes, name="--probes")
    attrs = check_user_attrs(parse_attrs(args.attr))
    table_wanted = args.table is not None
    if table_wanted:
        if args.table.suffix != ".csv" or args.calibration is None or args.scales is None:
            raise ValueError("--table must end in .csv and needs --calibration and --scales")
        check_output_file("--table", args.table)
        calibration = read_calibration(args.calibration, layer=args.layer, name="--calibration")
        scales = [float(s) for s in parse_values(args.scales, flag="--scales", kind="scale")]
        knobs = [k.strip() for k in args.knobs.split(",")]
    net = load_model(args)
    check_layer(net, args.layer, name="--layer")
    if table_wanted:
        from ifmsan.certify.table import check_calibration_network

        check_calibration_network(args.calibration, net, name="--calibration")
    image, checksum = load_image_with_checksum(args.image, sha256=args.image_sha256, cache_dir=args.cache_dir)
    maps = certify_maps(net, image, layer=args.layer, windows=windows, selects=selects, resolutions=spaces,
                        probes=probes, seed=args.seed, source=args.image)  # fmt: skip
    maps.attrs.update({"image_id": args.image_id, "image_source": args.image, "image_sha256": checksum, **attrs})
    table = (
        certificate_table([maps], calibration={args.layer: calibration}, knobs=knobs, scales=scales)
        if table_wanted
        else None
    )
    with all_or_none(args.out.parent) as written:
        write_netcdf(maps, args.out)
        written.append(args.out)
        if table is not None:
            write_table(table, args.table)
            written.append(args.table)
    print(f"{args.image_id} {args.layer}: ĝ maps over {', '.join(str(s) for s in maps['space'].values)} -> {args.out}")
    if table is not None:
        print(table.to_string(index=False))
    return 0
