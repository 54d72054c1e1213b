"""`ifmsan fetch`: download one file, verified by its checksum, resumable, written atomically."""

from __future__ import annotations

import argparse
from pathlib import Path

from ifmsan._shared.values import integer, real

HELP = "Download a URL (https, http, file) to a path, verified by sha256 or sha1; resumes and retries."


def configure(parser: argparse.ArgumentParser) -> None:
    """Declare the options of this verb."""
    parser.add_argument("url", metavar="URL", help="http://, https:// or file:// URL")
    parser.add_argument("dest", type=Path, metavar="DEST", help="where to put it, e.g. data/bvlc_alexnet.caffemodel")
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--sha256", metavar="HEX", help="expected SHA-256 of the file (64 hex digits)")
    group.add_argument("--sha1", metavar="HEX", help="expected SHA-1 of the file (40 hex digits)")
    parser.add_argument("--retries", type=integer, default=3, help="retries after network errors, >= 0 (default 3)")
    parser.add_argument("--timeout", type=real, default=60.0, help="seconds to wait for the server, > 0 (default 60)")


def run(args: argparse.Namespace) -> int:
    """Fetch; a failed download becomes the one-line error cli.main prints."""
    from ifmsan.commands._args import check_int, check_output_file, check_real
    from ifmsan.steps.fetch import FetchError, fetch

    check_int("--retries", args.retries, minimum=0)
    check_real("--timeout", args.timeout, minimum=0.0, exclusive=True)
    check_output_file("DEST", args.dest)
    try:
        path = fetch(
            args.url, args.dest, sha256=args.sha256, sha1=args.sha1, retries=args.retries, timeout=args.timeout
        )
    except FetchError as exc:
        hint = (
            "No network here? The offline demo needs no download: make demo "
            "(or snakemake --configfile config/demo.yaml)."
        )
        raise ValueError(f"{exc}\n{hint}") from exc
    print(path)
    return 0
