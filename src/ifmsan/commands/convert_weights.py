"""`ifmsan convert-weights`: parse BVLC AlexNet's .caffemodel once into a memory-mapped .safetensors file."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = (
    "Convert bvlc_alexnet's .caffemodel once into a .safetensors file that jobs memory-map (its sha1 recorded inside) "
    "and its digest FILE.safetensors.xxh3 beside it (for --weights-digest)."
)


def configure(parser: argparse.ArgumentParser) -> None:
    """Declare the options of this verb."""
    parser.add_argument(
        "caffemodel", type=Path, metavar="CAFFEMODEL", help="BVLC AlexNet's weights, e.g. data/bvlc_alexnet.caffemodel"
    )
    parser.add_argument(
        "--out", type=Path, required=True, metavar="FILE.safetensors",
        help="the converted file to write (atomically), e.g. data/bvlc_alexnet.safetensors",
    )  # fmt: skip
    parser.add_argument("--sha1", metavar="HEX", help="expected SHA-1 of CAFFEMODEL, checked before it is parsed")
    parser.add_argument("--sha256", metavar="HEX", help="expected SHA-256 of CAFFEMODEL, checked before it is parsed")


def run(args: argparse.Namespace) -> int:
    """Convert; print the path written, the caffemodel sha1 it records and the digest file written beside it."""
    from ifmsan.commands._args import check_output_file
    from ifmsan.models.converted import SUFFIX, convert_caffemodel, digest_path, read_converted_metadata

    check_output_file("--out", args.out)
    if args.out.suffix != SUFFIX:
        raise ValueError(f"--out {args.out} must end in {SUFFIX}, e.g. {args.out.with_suffix(SUFFIX)}")
    path = convert_caffemodel(args.caffemodel, args.out, sha1=args.sha1, sha256=args.sha256)
    metadata = read_converted_metadata(path)
    print(f"{path}\tconverted from {metadata['caffemodel']} (sha1 {metadata['caffemodel_sha1']})")
    print(f"{digest_path(path)}\tdigest of {path.name} (give it as --weights-digest)")
    return 0
