"""`ifmsan gamma`: run the runtime γ controller (paper Figure 3) on an image's IFMs and check it against the sweeps."""

from __future__ import annotations

import argparse
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ifmsan._shared.values import integer, real
from ifmsan.commands._common import add_model_options, load_model, parse_attrs, timing_line

if TYPE_CHECKING:
    from pandas import DataFrame
    from xarray import Dataset

    from ifmsan.models.base import LayeredNet

HELP = "Run the gamma controller (GammaSanitizer) per layer and gamma on one image; optionally compare with sweeps."


def configure(parser: argparse.ArgumentParser) -> None:
    """Declare the options of this verb."""
    from ifmsan.core.sanitize import SELECTORS

    add_model_options(parser)
    parser.add_argument("--ifms", type=Path, required=True, help="the image's IFMs, as written by 'ifmsan extract'")
    parser.add_argument("--layers", nargs="+", required=True, help="IFM layers to sanitize")
    parser.add_argument(
        "--gammas", nargs="+", type=real, default=[0.25, 0.5, 1.0, 2.0, 3.0, 4.0], help="degrees of sanitization"
    )
    parser.add_argument("--values", default="2:150", help="candidate windows START:STOP[:STEP] (default 2:150)")
    parser.add_argument("--knob", default="nonzero_mean", choices=SELECTORS, help="sample-and-hold knob (selector)")
    parser.add_argument("--batch-size", type=integer, default=16, help="candidate windows evaluated per forward batch")
    parser.add_argument(
        "--sweeps",
        nargs="*",
        type=Path,
        default=[],
        help="sweep files to check n*(gamma) against: unchained sweeps of --knob, at most one per layer of "
        "--layers, of the same image, model, weights, config_hash and target as --ifms (anything else is refused)",
    )
    parser.add_argument("--out", type=Path, required=True, help="output .csv")


def check_options(
    *, gammas: Sequence[float], batch_size: int, values: str, out: Path, flag: str = "--out"
) -> tuple[list[float], list[int]]:
    """Check the gammas, batch size, windows and output path before any work; return the gammas and the windows."""
    from ifmsan._shared.values import parse_values
    from ifmsan.commands._args import check_int, check_output_file
    from ifmsan.core.metrics import check_gamma

    if out.suffix != ".csv":
        raise ValueError(f"{flag} must end in .csv, got {out}")
    checked = [check_gamma(g, name="--gammas value") for g in gammas]
    check_int("--batch-size", batch_size, minimum=1)
    check_output_file(flag, out)
    return checked, [int(window) for window in parse_values(values)]  # kind='window': integers already


def check_controller_ifms(net: LayeredNet, source: Dataset, *, layers: Sequence[str], device: str) -> None:
    """The IFMs were made by this network (its p0 comes back from each of `layers`), before the controller trusts them."""
    from ifmsan.report.consistency import check_p0_of_ifms, check_same_network
    from ifmsan.steps.extract import ifms_of

    where = str(source.encoding.get("source") or "the IFMs")
    check_same_network(source.attrs, net, source=where)
    check_p0_of_ifms(
        net, {k: v.to(device) for k, v in ifms_of(source).items()}, layers=layers,
        target=int(source.attrs["target"]), p0=float(source.attrs["p0"]), source=where,
    )  # fmt: skip


def controller_frame(
    net: LayeredNet,
    source: Dataset,
    *,
    layers: Sequence[str],
    gammas: Sequence[float],
    windows: Sequence[int],
    knob: str,
    batch_size: int,
    references: dict[str, Dataset],
    device: str,
    searched: Mapping[str, Mapping[float, Any]] | None = None,
) -> tuple[DataFrame, str]:
    """Check the IFMs against the network, run the controller; return its table and the log summary, unwritten.

    searched: each layer's search already run (core.controller.controller_searches, with its p0 checked by
    check_controller_ifms), as `ifmsan image` does on its threads; the table is then built from them.
    """
    from ifmsan.core.controller import controller_table
    from ifmsan.steps.extract import ifms_of

    if searched is None:
        check_controller_ifms(net, source, layers=layers, device=device)
    frame = controller_table(
        net, ifms_of(source), layers=layers, gammas=gammas, windows=windows, target=int(source.attrs["target"]),
        knob=knob, batch_size=batch_size, references=references, image_id=source.attrs.get("image_id", ""),
        searched=searched,
    )  # fmt: skip
    summary = frame[["layer", "gamma", "window", "status"]].to_string(index=False)  # before the write: it can fail
    return frame, summary


def run(args: argparse.Namespace) -> int:
    """Check the options and files, run the controller (ifmsan.core.controller.controller_table), write the CSV atomically."""
    from ifmsan._shared.atomic import atomic_path
    from ifmsan.report.consistency import check_config_hash, check_sweeps_match_ifms
    from ifmsan.steps.io import read_ifms, read_sweep

    gammas, windows = check_options(gammas=args.gammas, batch_size=args.batch_size, values=args.values, out=args.out)
    attrs = parse_attrs(args.attr)
    source = read_ifms(args.ifms, layers=args.layers)
    check_config_hash(source.attrs, attrs, source=str(args.ifms))
    sweeps = [read_sweep(path) for path in args.sweeps]
    references = check_sweeps_match_ifms(source, sweeps, layers=args.layers, knob=args.knob)
    net = load_model(args)
    started = time.perf_counter()
    frame, summary = controller_frame(
        net, source, layers=args.layers, gammas=gammas, windows=windows, knob=args.knob, batch_size=args.batch_size,
        references=references, device=args.device,
    )  # fmt: skip
    computed = time.perf_counter()
    with atomic_path(args.out) as tmp:
        frame.to_csv(tmp, index=False)
    print(summary)
    print(timing_line(started=started, computed=computed))
    return 0
