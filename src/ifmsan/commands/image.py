"""`ifmsan image`: one image's extract, sweeps, chains and γ controller in one process, with the separate verbs' files."""

from __future__ import annotations

import argparse
import functools
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ifmsan._shared.values import integer, real
from ifmsan.commands._common import add_model_options, load_model, parse_attrs, timing_line
from ifmsan.commands.extract import add_image_options

if TYPE_CHECKING:
    from xarray import Dataset

    from ifmsan.models.base import LayeredNet
    from ifmsan.steps.sweep import ChainStep

HELP = (
    "One image's whole job: extract its IFMs, sweep layers over knobs, chained sweeps and the gamma controller, "
    "loading the model once; the files are those of extract, sweep and gamma, byte for byte."
)


def configure(parser: argparse.ArgumentParser) -> None:
    """Declare the options of this verb."""
    from ifmsan.core.knobs import KNOBS

    add_model_options(parser)
    add_image_options(parser)
    parser.add_argument("--ifms-out", type=Path, required=True, help="the IFM file (.nc), as `ifmsan extract --out`")
    parser.add_argument(
        "--sweep-attr",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra provenance attribute of the sweeps, chains and controller check only, not of the IFM file "
        "(repeatable), e.g. config_hash=...; --attr goes into every output",
    )
    parser.add_argument("--layers", nargs="*", default=[], help="layers to sweep over every --knobs, e.g. conv3 pool5")
    parser.add_argument(
        "--knobs", nargs="+", default=["nonzero_mean"], choices=KNOBS, metavar="KNOB",
        help=f"knobs of the --layers sweeps, one file each: {', '.join(KNOBS)} (default: nonzero_mean)",
    )  # fmt: skip
    parser.add_argument("--sweeps-dir", type=Path, help="sweep outputs: <sweeps-dir>/<layer>/<knob>.nc")
    parser.add_argument(
        "--values", default="2:150", help="windows of sweeps, chains and controller, START:STOP[:STEP] or a list"
    )
    parser.add_argument("--scales", help="noise scales for laplace/gaussian, e.g. 0,0.5,1 (default: 0..5 by 0.1)")
    parser.add_argument("--seed", type=integer, default=0, help="seed of the --layers sweeps' selector and noise")
    parser.add_argument(
        "--chain",
        action="append",
        default=[],
        metavar="LAYER:STEPS",
        help="a chained nonzero_mean sweep of LAYER after STEPS, e.g. pool5:conv2@3 or pool5:norm2@3+pool2@4 "
        "(repeatable), written to <chains-dir>/<LAYER>/<STEPS>.nc",
    )
    parser.add_argument("--chains-dir", type=Path, help="chain outputs: <chains-dir>/<layer>/<steps>.nc")
    parser.add_argument(
        "--chain-seed", type=integer, default=0, help="seed recorded by the chained sweeps (default 0, as the "
        "workflow's chain rule, which passes no --seed)",
    )  # fmt: skip
    parser.add_argument(
        "--batch-size", type=integer, default=32, help="sanitized IFMs (controller: candidate windows) per batch"
    )
    parser.add_argument("--controller-layers", nargs="*", default=[], help="layers the gamma controller runs on")
    parser.add_argument(
        "--gammas", nargs="+", type=real, default=[0.25, 0.5, 1.0, 2.0, 3.0, 4.0], help="degrees of sanitization"
    )
    parser.add_argument("--controller-out", type=Path, help="the controller's .csv, as `ifmsan gamma --out`")
    parser.add_argument(
        "--workers", type=integer, default=1, help="pieces (a layer's sweeps, a chain, a layer's controller search) "
        "run at once, each on --threads torch threads; the files do not depend on it (default 1)",
    )  # fmt: skip


def parse_chain_option(text: str) -> tuple[str, str, tuple[ChainStep, ...]]:
    """'pool5:conv2@3' into the swept layer, the steps as written and the parsed steps."""
    from ifmsan.steps.sweep import parse_chain

    layer, sep, steps = text.partition(":")
    if not sep or not layer or not steps:
        raise ValueError(f"--chain must look like LAYER:STEPS, e.g. pool5:conv2@3, got {text!r}")
    return layer, steps, parse_chain(steps)


KINDS = ("sweep", "controller")
Task = tuple[str, int, str, int]
"""(kind, order, layer, index): sweeps of a layer, chains and the controller's search of a layer."""


def thread_timed(task: Callable[[], Any]) -> tuple[Any, float]:
    """The task's result and the CPU seconds its thread spent on it (torch threads beyond one are not counted)."""
    started = time.thread_time()
    result = task()
    return result, time.thread_time() - started


def image_tasks(
    net: LayeredNet,
    source: Dataset,
    *,
    sweeps: dict[str, dict[str, Path]],
    chains: list[tuple[tuple[str, str, tuple[ChainStep, ...]], Path]],
    controller_layers: list[str],
    gammas: list[float],
    windows: Sequence[float],
    scales: Sequence[float] | None,
    controller_windows: list[int],
    args: argparse.Namespace,
    attrs: dict[str, str],
) -> dict[Task, Callable[[], Any]]:
    """The image's independent pieces, costliest first (a sweep from an earlier layer runs more of the network), each
    computing what the separate verb would; run_tasks spreads them over --workers threads."""
    from ifmsan.commands import gamma, sweep
    from ifmsan.core.controller import controller_searches
    from ifmsan.steps.extract import ifms_of
    from ifmsan.steps.io import ifms_subset

    position = {layer: i for i, layer in enumerate(net.ifm_layers)}
    tasks: dict[Task, Callable[[], Any]] = {}
    for layer, targets in sweeps.items():
        tasks["sweep", position[layer], layer, 0] = functools.partial(
            sweep.sweep_layer, net, ifms_subset(source, [layer]), layer=layer, targets=targets, windows=windows,
            scales=scales, chain=(), seed=args.seed, batch_size=args.batch_size, attrs=attrs,
        )  # fmt: skip
    for index, ((layer, _, steps), out) in enumerate(chains):
        tasks["sweep", position[layer], layer, 1 + index] = functools.partial(
            sweep.sweep_layer, net, ifms_subset(source, [layer, *(step.layer for step in steps)]), layer=layer,
            targets={"nonzero_mean": out}, windows=windows, scales=None, chain=steps, seed=args.chain_seed,
            batch_size=args.batch_size, attrs=attrs,
        )  # fmt: skip
    if controller_layers:
        searches = controller_searches(
            net, ifms_of(ifms_subset(source, controller_layers)), layers=controller_layers, gammas=gammas,
            windows=controller_windows, target=int(source.attrs["target"]), knob="nonzero_mean",
            batch_size=args.batch_size,
        )  # fmt: skip

        def checked_search(layer: str) -> Any:
            gamma.check_controller_ifms(net, ifms_subset(source, [layer]), layers=[layer], device=args.device)
            return searches[layer]()

        for layer in searches:
            tasks["controller", position[layer], layer, 0] = functools.partial(checked_search, layer)
    order = sorted(tasks, key=lambda key: (key[1], key[0] == "controller", key[3]))
    return {key: tasks[key] for key in order}


def run(args: argparse.Namespace) -> int:
    """Check every option and output, load the model once, compute everything, then write all outputs or none."""
    from ifmsan._shared.atomic import atomic_path
    from ifmsan._shared.tasks import run_tasks
    from ifmsan._shared.values import parse_values
    from ifmsan.commands import extract, gamma, sweep
    from ifmsan.commands._args import check_int, check_output_file
    from ifmsan.report.consistency import check_config_hash
    from ifmsan.steps.io import all_or_none, check_id, ifms_subset, read_ifms, write_netcdf
    from ifmsan.steps.sweep import check_chain, check_layer

    ifm_attrs = extract.check_options(args, out=args.ifms_out, flag="--ifms-out")
    attrs = parse_attrs([*args.attr, *args.sweep_attr])
    check_int("--batch-size", args.batch_size, minimum=1)
    check_int("--seed", args.seed, minimum=0)
    check_int("--chain-seed", args.chain_seed, minimum=0)
    check_int("--workers", args.workers, minimum=1)
    windows = parse_values(args.values)
    scales = parse_values(args.scales, flag="--scales", kind="scale") if args.scales else None
    layers = list(dict.fromkeys(args.layers))
    if layers and args.sweeps_dir is None:
        raise ValueError("--layers needs --sweeps-dir")
    sweeps = {
        layer: sweep.sweep_targets(
            knobs=list(dict.fromkeys(args.knobs)), out=None, out_dir=args.sweeps_dir / check_id(layer, name="--layers")
        )
        for layer in layers
    }
    chains = [parse_chain_option(text) for text in dict.fromkeys(args.chain)]
    if chains and args.chains_dir is None:
        raise ValueError("--chain needs --chains-dir")
    chain_outs = [args.chains_dir / check_id(layer, name="--chain layer") / f"{steps}.nc" for layer, steps, _ in chains]
    for out in chain_outs:
        check_output_file("--chains-dir", out)
    controller_layers = list(dict.fromkeys(args.controller_layers))
    if bool(controller_layers) != (args.controller_out is not None):
        raise ValueError("--controller-layers and --controller-out go together")
    gammas: list[float] = []
    controller_windows: list[int] = []
    if args.controller_out is not None:
        gammas, controller_windows = gamma.check_options(
            gammas=args.gammas, batch_size=args.batch_size, values=args.values, out=args.controller_out,
            flag="--controller-out",
        )  # fmt: skip
    outputs = [args.ifms_out, *(out for targets in sweeps.values() for out in targets.values()), *chain_outs]
    outputs += [] if args.controller_out is None else [args.controller_out]
    resolved = [out.resolve() for out in outputs]
    if len(set(resolved)) != len(resolved):
        raise ValueError(f"two outputs are the same file among {', '.join(map(str, outputs))}")

    net = load_model(args)
    for layer in layers:
        check_layer(net, layer, name="--layers value")
    for (layer, _, steps), _ in zip(chains, chain_outs, strict=True):
        check_chain(net, steps, layer=layer)
    for layer in controller_layers:
        check_layer(net, layer, name="--controller-layers value")
    started = time.perf_counter()
    dataset, message = extract.extract_image(net, args, attrs=ifm_attrs, out=args.ifms_out)
    frame = summary = None
    with all_or_none(*{out.parent for out in outputs}) as written:
        with atomic_path(args.ifms_out) as ifms_tmp:
            write_netcdf(dataset, ifms_tmp)  # read back: the other steps see the bits `ifmsan extract` writes
            del dataset  # the read-back copy is the one kept
            source = read_ifms(ifms_tmp)
            source.encoding["source"] = str(args.ifms_out)
            if args.controller_out is not None:
                check_config_hash(source.attrs, attrs, source=str(args.ifms_out))
            tasks = image_tasks(
                net, source, sweeps=sweeps, chains=list(zip(chains, chain_outs, strict=True)),
                controller_layers=controller_layers, gammas=gammas, windows=windows, scales=scales,
                controller_windows=controller_windows, args=args, attrs=attrs,
            )  # fmt: skip
            timed = run_tasks([functools.partial(thread_timed, task) for task in tasks.values()], workers=args.workers)
            done = {key: result for key, (result, _) in zip(tasks, timed, strict=True)}
            cpu = {kind: sum(t for key, (_, t) in zip(tasks, timed, strict=True) if key[0] == kind) for kind in KINDS}
            results = [result for key in sorted(k for k in done if k[0] != "controller") for result in done[key]]
            if args.controller_out is not None:
                frame, summary = gamma.controller_frame(
                    net, ifms_subset(source, controller_layers), layers=controller_layers, gammas=gammas,
                    windows=controller_windows, knob="nonzero_mean", batch_size=args.batch_size, references={},
                    device=args.device, searched={key[2]: value for key, value in done.items() if key[0] == "controller"},
                )  # fmt: skip
            computed = time.perf_counter()
        written.append(args.ifms_out)
        for result, out, _ in results:
            written.append(write_netcdf(result, out))
        if frame is not None:
            with atomic_path(args.controller_out) as tmp:
                frame.to_csv(tmp, index=False)
            written.append(args.controller_out)
    print(message)
    for _, _, line in results:
        print(line)
    if summary is not None:
        print(summary)
    print(timing_line(started=started, computed=computed))
    print("pieces: " + " ".join(f"{kind}_cpu_s={seconds:.2f}" for kind, seconds in cpu.items()))
    return 0
