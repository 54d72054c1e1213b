"""`ifmsan attack`: train the three adversaries on sanitized IFMs of one layer and score them (ifmsan.attacks)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ifmsan._shared.values import integer, real
from ifmsan.commands._common import add_model_options, load_model, parse_attrs

HELP = "Score an adaptive server, an image decoder and an attribute probe on sanitized IFMs of one layer."


def configure(parser: argparse.ArgumentParser) -> None:
    """Declare the options of this verb."""
    from ifmsan.attacks import AttackOptions
    from ifmsan.core.knobs import KNOBS, RANDOMIZED

    defaults = AttackOptions()
    add_model_options(parser)
    parser.add_argument("--layer", required=True, help="the IFM layer whose sanitized IFMs the adversaries see")
    parser.add_argument("--knob", required=True, choices=KNOBS + RANDOMIZED, help="how the IFM is sanitized")
    parser.add_argument(
        "--calibration", type=Path,
        help="the layer's `ifmsan calibrate` JSON: hold_gaussian's σ is --noise-scale x its std; the noise knobs then "
        "scale by that fixed std instead of each IFM's own",
    )  # fmt: skip
    parser.add_argument("--noise-scale", type=real, help="hold_gaussian only: σ = this x the calibration std")
    parser.add_argument(
        "--values", required=True,
        help="knob values: windows START:STOP[:STEP] or a comma list, scales a comma list; 'unsanitized' (window 1, "
        "scale 0) is always scored first and may not be listed",
    )  # fmt: skip
    parser.add_argument(
        "--sweeps", nargs="*", type=Path, default=[],
        help="sweep files of --layer and --knob (unchained, one per image): n*(gamma) of each --gammas, the largest "
        "over these images, is scored too",
    )  # fmt: skip
    parser.add_argument("--gammas", nargs="*", type=real, default=[1.0, 2.0], help="gammas whose n* is scored")
    for name, help_text in (
        ("n_train", "training images (minidata train split)"),
        ("n_test", "held-out images (minidata test split)"),
        ("epochs_adaptive", "fine-tuning epochs of the adaptive server (0: the unchanged network)"),
        ("epochs_inversion", "training epochs of the decoder"),
        ("epochs_attribute", "training epochs of the attribute probe"),
        ("resolution", "side of the decoded image (32, 64, 128, ...)"),
        ("batch_size", "training and evaluation batch size"),
        ("n_examples", "held-out reconstructions kept in the file"),
        ("seed", "seed of the data, the initialisations, the shuffles and the per-image sanitizer seeds"),
        ("optimize_images", "held-out images the white-box optimization attack reconstructs (0: it does not run)"),
        ("optimize_iterations", "Adam steps of the optimization attack"),
    ):
        flag = "--" + name.replace("_", "-")
        parser.add_argument(
            flag, type=integer, default=getattr(defaults, name), help=f"{help_text} (default %(default)s)"
        )
    parser.add_argument("--lr-adaptive", type=real, default=defaults.lr_adaptive, help="(default %(default)s)")
    parser.add_argument(
        "--lr-attack", type=real, default=defaults.lr_attack, help="decoder and probe (default %(default)s)"
    )
    parser.add_argument("--optimize-lr", type=real, default=defaults.optimize_lr, help="(default %(default)s)")
    parser.add_argument(
        "--optimize-tv", type=real, default=defaults.optimize_tv,
        help="total-variation prior weight of the optimization attack (default %(default)s: none)",
    )  # fmt: skip
    parser.add_argument("--out", type=Path, required=True, help="output .nc (scores: parameter x metric)")


NStar = int | float | None


def n_star_rows(
    sweeps: list[Any], *, layer: str, knob: str, gammas: list[float]
) -> tuple[dict[str, NStar], dict[str, dict[str, NStar]]]:
    """n*(γ) per γ: the largest over the sweeps' images (None when some image never meets γ), and per image."""
    from ifmsan.core.metrics import n_star_for_gamma
    from ifmsan.report.curves import as_curves

    curves = as_curves(sweeps)
    wrong = [f"{c.image_id}: layer {c.layer}, knob {c.knob}, chain {c.chain!r}" for c in curves
             if (c.layer, c.knob, c.chain) != (layer, knob, "")]  # fmt: skip
    if wrong:
        raise ValueError(f"--sweeps must be unchained sweeps of layer {layer} and knob {knob}; got {'; '.join(wrong)}")
    per_image = {
        f"{g:g}": {c.image_id: n_star_for_gamma(c.values, c.probabilities, p0=c.p0, gamma=g) for c in curves}
        for g in gammas
    }
    chosen: dict[str, NStar] = {}
    for gamma, images in per_image.items():
        found = [v for v in images.values() if v is not None]
        chosen[gamma] = max(found) if len(found) == len(images) and found else None
    return chosen, per_image


def calibrated_options(args: argparse.Namespace) -> dict[str, float]:
    """get_knob's sigma (hold_gaussian: --noise-scale x the calibration std) or calibration_std (noise knobs)."""
    from ifmsan.certify.table import read_calibration
    from ifmsan.commands._args import check_real
    from ifmsan.core.knobs import NOISES, RANDOMIZED

    if args.knob in RANDOMIZED:
        if args.calibration is None or args.noise_scale is None:
            raise ValueError(f"--knob {args.knob} needs --calibration and --noise-scale (σ = scale x calibration std)")
        scale = check_real("--noise-scale", args.noise_scale, minimum=0.0, exclusive=True)
        return {"sigma": scale * read_calibration(args.calibration, layer=args.layer, name="--calibration")}
    if args.noise_scale is not None:
        raise ValueError(
            f"--noise-scale applies to {', '.join(RANDOMIZED)} only; the values of --knob {args.knob} are its scales"
        )
    if args.calibration is None:
        return {}
    if args.knob not in NOISES:
        raise ValueError(f"--calibration applies to {', '.join(RANDOMIZED + NOISES)}, not to --knob {args.knob}")
    return {"calibration_std": read_calibration(args.calibration, layer=args.layer, name="--calibration")}


def run(args: argparse.Namespace) -> int:
    """Check every option and file, then train and score the adversaries, and write the NetCDF atomically."""
    import json

    from ifmsan._shared.values import parse_values
    from ifmsan.attacks import IDENTITY, AttackOptions, run_attacks
    from ifmsan.commands._args import check_output_file
    from ifmsan.core.knobs import knob_with
    from ifmsan.core.metrics import check_gamma
    from ifmsan.report.consistency import check_given_attributes, check_same_attributes, check_same_network
    from ifmsan.steps.io import check_user_attrs, read_sweep, write_netcdf
    from ifmsan.steps.sweep import check_layer

    if args.device != "cpu":
        raise ValueError(f"--device {args.device}: the attack stage runs on the CPU only; use --device cpu")
    if args.out.suffix != ".nc":
        raise ValueError(f"--out must end in .nc, got {args.out}")
    check_output_file("--out", args.out)
    knob_options = calibrated_options(args)
    knob = knob_with(args.knob, knob_options)
    values = list(parse_values(args.values, kind=knob.parameter))
    identity = IDENTITY[knob.parameter]
    if identity in values:
        raise ValueError(
            f"--values holds {identity:g}, the identity ({knob.parameter} {identity:g}); 'unsanitized' is always scored "
            "as the first row: leave it out"
        )
    gammas = [check_gamma(g, name="--gammas value") for g in args.gammas]
    options = AttackOptions(
        n_train=args.n_train, n_test=args.n_test, epochs_adaptive=args.epochs_adaptive,
        epochs_inversion=args.epochs_inversion, epochs_attribute=args.epochs_attribute, lr_adaptive=args.lr_adaptive,
        lr_attack=args.lr_attack, resolution=args.resolution, batch_size=args.batch_size, n_examples=args.n_examples,
        seed=args.seed, threads=args.threads or 1, optimize_images=args.optimize_images,
        optimize_iterations=args.optimize_iterations, optimize_lr=args.optimize_lr, optimize_tv=args.optimize_tv,
    ).check()  # fmt: skip
    attrs = check_user_attrs(parse_attrs(args.attr))
    sweeps = [read_sweep(path) for path in args.sweeps]
    named = [(f"--sweeps {path}", sweep.attrs) for path, sweep in zip(args.sweeps, sweeps, strict=True)]
    check_same_attributes(named, what="--sweeps files")  # n* over one run, configuration, network and target rule
    check_given_attributes(named, attrs, keys=("run", "config_hash", "extract_hash"), option="--attr")
    chosen, per_image = n_star_rows(sweeps, layer=args.layer, knob=args.knob, gammas=gammas) if sweeps else ({}, {})
    roles: dict[int | float, list[str]] = {value: ["grid"] for value in values}
    for gamma, n_star in chosen.items():
        if n_star is not None:
            roles.setdefault(n_star, []).append(f"n_star gamma={gamma}")
    ordered = sorted(roles)
    net = load_model(args)
    if args.calibration is not None:
        from ifmsan.certify.table import check_calibration_network

        check_calibration_network(args.calibration, net, name="--calibration")
    check_layer(net, args.layer, name="--layer")
    for path, sweep in zip(args.sweeps, sweeps, strict=True):
        check_same_network(sweep.attrs, net, source=f"--sweeps {path}")
    dataset = run_attacks(net, layer=args.layer, knob=args.knob, values=ordered,
                          roles=["; ".join(roles[v]) for v in ordered], options=options, knob_options=knob_options)  # fmt: skip
    if args.noise_scale is not None:
        dataset.attrs["noise_scale"] = args.noise_scale
    dataset.attrs.update(attrs)
    dataset.attrs["gammas"] = json.dumps([f"{g:g}" for g in gammas])
    dataset.attrs["n_star"] = json.dumps(chosen)
    dataset.attrs["n_star_per_image"] = json.dumps(per_image)
    write_netcdf(dataset, args.out)
    print(dataset["scores"].to_pandas().to_string())
    return 0
