"""`ifmsan train-mini`: train the offline alexnet_mini stand-in on synthetic shapes and write its weights."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ifmsan._shared.values import integer, real

HELP = "Train alexnet_mini (a small offline stand-in for BVLC AlexNet) on generated shapes; write weights + metrics."

# Kept in step with ifmsan.steps.train.DEFAULTS (a test checks it) so `--help` does not import torch.
_DEFAULTS = {"epochs": 6, "train_per_class": 160, "test_per_class": 50, "seed": 0, "threads": 2, "min_accuracy": 0.0}


def configure(parser: argparse.ArgumentParser) -> None:
    """Declare the options of this verb."""
    parser.add_argument(
        "--out", type=Path, required=True, metavar="DIR",
        help="output folder: alexnet_mini.pt, alexnet_mini.pt.sha256, metrics.json, examples/ (PNG + manifest.tsv)",
    )  # fmt: skip
    parser.add_argument(
        "--epochs", type=integer, default=_DEFAULTS["epochs"], help="passes over the training set (default %(default)s)"
    )
    parser.add_argument(
        "--train-per-class",
        type=integer,
        default=_DEFAULTS["train_per_class"],
        metavar="N",
        help="training images per class (default %(default)s)",
    )
    parser.add_argument(
        "--test-per-class",
        type=integer,
        default=_DEFAULTS["test_per_class"],
        metavar="M",
        help="held-out images per class (default %(default)s)",
    )
    parser.add_argument(
        "--seed",
        type=integer,
        default=_DEFAULTS["seed"],
        help="seed of the data, the init and the training (default %(default)s)",
    )
    parser.add_argument(
        "--threads",
        type=integer,
        default=_DEFAULTS["threads"],
        help="torch CPU threads; the weights depend on it (default %(default)s)",
    )
    parser.add_argument(
        "--min-accuracy", type=real, default=_DEFAULTS["min_accuracy"], metavar="A",
        help="fail (exit 1, metrics.json written, no weights) when held-out accuracy is below A (default %(default)s)",
    )  # fmt: skip


def run(args: argparse.Namespace) -> int:
    """Train, report the held-out accuracy, and fail when it is under --min-accuracy."""
    import math

    from ifmsan.commands._args import check_output_dir
    from ifmsan.steps.train import AccuracyTooLow, train_mini

    check_output_dir("--out", args.out)
    for flag, value, minimum in (
        ("--epochs", args.epochs, 1),
        ("--train-per-class", args.train_per_class, 1),
        ("--test-per-class", args.test_per_class, 1),
        ("--seed", args.seed, 0),
        ("--threads", args.threads, 1),
    ):
        if value < minimum:
            raise ValueError(f"{flag} must be >= {minimum}, got {value}")
    if not (math.isfinite(args.min_accuracy) and 0.0 <= args.min_accuracy <= 1.0):
        raise ValueError(f"--min-accuracy must be a fraction in [0, 1], got {args.min_accuracy}")
    try:
        metrics = train_mini(
            out_dir=args.out,
            epochs=args.epochs,
            n_train_per_class=args.train_per_class,
            n_test_per_class=args.test_per_class,
            seed=args.seed,
            threads=args.threads,
            min_accuracy=args.min_accuracy,
        )
    except AccuracyTooLow as exc:
        print(f"ifmsan train-mini: error: {exc}", file=sys.stderr)
        return 1
    print(
        f"alexnet_mini (stand-in for BVLC AlexNet): held-out accuracy {metrics['held_out_accuracy']:.4f} "
        f"on {metrics['n_test']} images, {metrics['wall_seconds']:.0f} s; weights sha256 {metrics['weights_sha256']} "
        f"in {Path(args.out) / 'alexnet_mini.pt'}"
    )
    return 0
