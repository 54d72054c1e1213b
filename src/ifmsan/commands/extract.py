"""`ifmsan extract`: every IFM of one image, its softmax and target class, as NetCDF."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from ifmsan._shared.values import integer
from ifmsan.commands._common import add_model_options, load_model, parse_attrs

if TYPE_CHECKING:
    from xarray import Dataset

    from ifmsan.models.base import LayeredNet

HELP = "Extract the IFMs of every layer for one image into a NetCDF file (with softmax, top-5, target, provenance)."


def configure(parser: argparse.ArgumentParser) -> None:
    """Declare the options of this verb."""
    add_model_options(parser)
    add_image_options(parser)
    parser.add_argument("--out", type=Path, required=True, help="output .nc file")


def add_image_options(parser: argparse.ArgumentParser) -> None:
    """--image, --image-sha256, --image-id, --target and --cache-dir, as `extract` and `image` take them."""
    parser.add_argument(
        "--image",
        required=True,
        help="image source: a local path, an https:// or file:// URL, or skimage:<name>; at least 32 px on its shorter "
        "side (smaller images are refused; below the network's input size, 224-299 px, a warning is logged)",
    )
    parser.add_argument("--image-sha256", help="expected sha256 of the image bytes (required for URLs)")
    parser.add_argument("--image-id", required=True, help="id of the image (letters, digits, '_', '.', '-')")
    parser.add_argument("--target", type=integer, help="ground-truth class index (default: the original top-1)")
    parser.add_argument("--cache-dir", type=Path, default=Path("data/images"), help="where downloaded images are kept")


def check_options(args: argparse.Namespace, *, out: Path, flag: str = "--out") -> dict[str, str]:
    """Check the image id, the output path and --attr before any work; return the extra attributes."""
    from ifmsan.commands._args import check_output_file
    from ifmsan.steps.io import check_id

    check_id(args.image_id, name="--image-id")
    if out.suffix != ".nc":
        raise ValueError(f"{flag} must end in .nc, got {out}")
    check_output_file(flag, out)
    return parse_attrs(args.attr)


def extract_image(
    net: LayeredNet, args: argparse.Namespace, *, attrs: dict[str, str], out: Path
) -> tuple[Dataset, str]:
    """Load and preprocess the image the options name, run the network once; return the Dataset and the log line."""
    from ifmsan.steps.extract import extract_ifms
    from ifmsan.steps.images import load_image_with_checksum

    image, checksum = load_image_with_checksum(args.image, sha256=args.image_sha256, cache_dir=args.cache_dir)
    x = net.preprocess(image, source=args.image)
    if args.target is not None and args.target < 0:
        raise ValueError(f"--target must be a class index >= 0, got {args.target}")
    dataset = extract_ifms(
        net,
        x,
        target=args.target,
        attrs={"image_id": args.image_id, "image_source": args.image, "image_sha256": checksum, **attrs},
        target_name="--target",
    )
    message = (  # formatted before the write: a command that fails leaves no output
        f"{args.image_id}: {net.name} top-1 {dataset.attrs['original_top1']} ({dataset.attrs['original_top1_name']}), "
        f"target {dataset.attrs['target']} p0={dataset.attrs['p0']:.4f} -> {out}"
    )
    return dataset, message


def run(args: argparse.Namespace) -> int:
    """Load model and image, run once, write the Dataset atomically."""
    from ifmsan.steps.io import write_netcdf

    attrs = check_options(args, out=args.out)
    net = load_model(args)
    dataset, message = extract_image(net, args, attrs=attrs, out=args.out)
    write_netcdf(dataset, args.out)
    print(message)
    return 0
