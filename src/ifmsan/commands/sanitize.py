"""`ifmsan sanitize`: sanitize one IFM stored as .npy (or a variable of a .nc file)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from ifmsan._shared.values import integer, real

if TYPE_CHECKING:
    import numpy as np

HELP = "Sanitize one IFM file (.npy) with a sample-and-hold window or a noise knob."

NPY_MAGIC = b"\x93NUMPY"
"""The first bytes of every .npy file (numpy.lib.format)."""


def configure(parser: argparse.ArgumentParser) -> None:
    """Declare the options of this verb."""
    from ifmsan.core.knobs import KNOBS, RANDOMIZED

    parser.add_argument(
        "input", type=Path, metavar="IN", help="IFM as .npy (any shape, 0-d too, floating point, any byte order)"
    )
    parser.add_argument(
        "output", type=Path, metavar="OUT", help="where to write the sanitized IFM (.npy; not IN itself)"
    )
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument(
        "--window", metavar="N",
        help=(
            "sampling-window size n (an integer >= 1, e.g. 7 or 1e6; a window past the IFM is one window) "
            "for the sample-and-hold knobs"
        ),
    )  # fmt: skip
    group.add_argument(
        "--scale", type=real, help="noise scale (finite, >= 0) relative to the IFM's std, for laplace/gaussian"
    )
    parser.add_argument(
        "--knob",
        default="nonzero_mean",
        choices=KNOBS + RANDOMIZED,
        help="knob: nonzero_mean (the paper's Algorithm 1, default), first, mean, random, laplace, gaussian, "
        "hold_gaussian (Algorithm 1 plus one N(0, sigma^2) draw per window: needs --sigma)",
    )
    parser.add_argument(
        "--sigma", type=real,
        help="hold_gaussian only: the absolute noise std, fixed before any query (e.g. scale x `ifmsan calibrate`'s std)",
    )  # fmt: skip
    parser.add_argument(
        "--seed", type=integer, default=0, help="seed (>= 0) for the random selector and the noise knobs"
    )


def read_npy(path: Path, *, name: str = "IN") -> np.ndarray:
    """A floating-point array from a .npy file in native byte order, or a ValueError naming the file and the problem."""
    import numpy as np

    if path.is_dir():
        raise ValueError(f"{name} {path} is a directory; expected a .npy file")
    if not path.is_file():
        raise FileNotFoundError(f"{name} not found: {path}")
    with open(path, "rb") as handle:
        head = handle.read(len(NPY_MAGIC))
    if head != NPY_MAGIC:
        raise ValueError(f"{name} {path} is not a .npy array file (no NUMPY header: text, or another format?)")
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        reason = (
            "it holds Python objects, not numbers"
            if "pickle" in str(exc)
            else getattr(exc, "strerror", None) or str(exc)
        )
        raise ValueError(f"{name} {path} is not a readable .npy array: {reason}") from None
    if not np.issubdtype(array.dtype, np.floating):
        raise ValueError(f"{name} {path} holds dtype {array.dtype}; expected a floating-point IFM (float16/32/64)")
    return array.astype(array.dtype.newbyteorder("="), copy=False)  # big-endian files are read exactly


def run(args: argparse.Namespace) -> int:
    """Check the options and files, read, sanitize, and write atomically."""
    from ifmsan._shared.values import parse_window
    from ifmsan.commands._args import check_int, check_output_file, check_real

    if args.input.suffix != ".npy":
        raise ValueError(f"IN must be a .npy file, got {args.input}")
    if args.output.suffix != ".npy":
        raise ValueError(f"OUT must end in .npy, got {args.output}")
    check_output_file("OUT", args.output)
    from ifmsan.core.knobs import NOISES, get_knob

    is_noise = args.knob in NOISES
    if args.sigma is not None:
        from ifmsan.core.knobs import check_sigma

        check_sigma(args.sigma, name="--sigma")
    get_knob(args.knob, sigma=args.sigma)  # hold_gaussian without --sigma, or --sigma with another knob: refused now
    if is_noise and args.scale is None:
        raise ValueError(f"--knob {args.knob} is a noise knob: give --scale, not --window")
    if not is_noise and args.window is None:
        raise ValueError(f"--knob {args.knob} is a sample-and-hold knob: give --window, not --scale")
    value = check_real("--scale", args.scale, minimum=0.0) if is_noise else parse_window(args.window)
    check_int("--seed", args.seed, minimum=0)
    array = read_npy(args.input)
    if args.output.exists() and args.output.samefile(args.input):  # also through a symlink or a hard link
        raise ValueError(f"OUT {args.output} is IN itself; write the sanitized IFM to another file")
    return _sanitize(args, array, value)


def _sanitize(args: argparse.Namespace, array: np.ndarray, value: float) -> int:
    """Sanitize the checked array and write it through a temporary file."""
    import io

    import numpy as np
    import torch

    from ifmsan._shared.atomic import atomic_path
    from ifmsan.core.knobs import get_knob
    from ifmsan.core.sanitize import check_ifm

    check_ifm(torch.from_numpy(np.ascontiguousarray(array).reshape(-1)), name=f"IN {args.input}")
    result = get_knob(args.knob, seed=args.seed, sigma=args.sigma).apply(array, value)
    buffer = io.BytesIO()  # np.save to a path writes with C stdio and may not see a full disk or a size limit
    np.save(buffer, np.asarray(result))
    with atomic_path(args.output, suffix=".part.npy") as tmp, tmp.open("wb") as handle:
        handle.write(buffer.getbuffer())
    return 0
