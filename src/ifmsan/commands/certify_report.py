"""`ifmsan certify-report`: the certificate table, the bound beside the attackers, certified_summary and figures."""

from __future__ import annotations

import argparse
from pathlib import Path

from ifmsan._shared.values import real

HELP = "Write certificate.csv, certify_attacks.csv, certified_summary.csv/.md and certificate_<layer> figures."


def configure(parser: argparse.ArgumentParser) -> None:
    """Declare the options of this verb."""
    parser.add_argument("--maps", nargs="+", type=Path, required=True, help="`ifmsan certify` map files (.nc)")
    parser.add_argument(
        "--calibration", nargs="+", type=Path, required=True, help="`ifmsan calibrate` JSON, one per layer"
    )
    parser.add_argument("--attacks", nargs="+", type=Path, required=True,
                        help="`ifmsan attack --calibration` files, budgets b1 and b2 (--attr budget=...)")  # fmt: skip
    parser.add_argument("--knobs", default="hold_gaussian", help="certified knobs, comma-separated")
    parser.add_argument("--scales", required=True, help="noise scales, a comma list (σ = scale x calibration std)")
    parser.add_argument("--gammas", nargs="+", type=real, default=[1.0], help="γ each setting must meet")
    parser.add_argument("--psnr-targets", nargs="*", type=real, default=[20.0, 25.0], help="PSNR ceilings (dB)")
    parser.add_argument("--tables-dir", type=Path, required=True, help="folder of the tables")
    parser.add_argument("--figures-dir", type=Path, required=True, help="folder of the figures")


def check_certify_inputs(maps: list, attacks: list, *, map_paths: list[Path], attack_paths: list[Path]) -> None:
    """Maps and attack files of one run and network; attack files of one budget share every attack option, and the
    two budgets (b1, b2 = twice the images and epochs) every option but those."""
    from ifmsan.attacks.summary import ATTACK_RUN_KEYS, DOUBLED_KEYS, option_keys
    from ifmsan.report.consistency import check_same_attributes
    from ifmsan.steps.io import attr_text

    named = [(f"--maps {p}", m.attrs) for p, m in zip(map_paths, maps, strict=True)]
    attack_named = [(f"--attacks {p}", a.attrs) for p, a in zip(attack_paths, attacks, strict=True)]
    check_same_attributes([*named, *attack_named], keys=("run", "extract_hash", "model", "weights"),
                          what="certify inputs")  # fmt: skip
    same = [key for key in (*ATTACK_RUN_KEYS, *option_keys()) if key not in DOUBLED_KEYS]
    check_same_attributes(attack_named, keys=same, what="--attacks files")
    for budget in ("b1", "b2"):
        group = [item for item in attack_named if attr_text(item[1].get("budget")) == budget]
        check_same_attributes(group, keys=DOUBLED_KEYS, what=f"--attacks files of budget {budget}")


def run(args: argparse.Namespace) -> int:
    """Read and check every input, then write all outputs or none."""
    import json

    from ifmsan._shared.atomic import atomic_path
    from ifmsan._shared.values import parse_values
    from ifmsan.certify.figures import certificate_figure
    from ifmsan.certify.summary import attack_grid, bound_vs_attacks, certified_summary, summary_markdown
    from ifmsan.certify.table import certificate_table, read_calibration, write_table
    from ifmsan.commands._args import check_output_dir
    from ifmsan.core.metrics import check_gamma
    from ifmsan.steps.io import all_or_none, read_attack, read_certify_maps

    check_output_dir("--tables-dir", args.tables_dir)
    check_output_dir("--figures-dir", args.figures_dir)
    gammas = [check_gamma(g, name="--gammas value") for g in args.gammas]
    scales = [float(s) for s in parse_values(args.scales, flag="--scales", kind="scale")]
    maps = [read_certify_maps(path) for path in args.maps]
    calibration = {}
    for path in args.calibration:
        layer = json.loads(path.read_text()).get("layer") if path.is_file() else None
        calibration[str(layer)] = read_calibration(path, layer=str(layer), name="--calibration")
    attacks = [read_attack(path) for path in args.attacks]
    check_certify_inputs(maps, attacks, map_paths=args.maps, attack_paths=args.attacks)
    resolutions = {int(a.attrs["resolution"]) for a in attacks}
    if len(resolutions) != 1:
        raise ValueError(f"--attacks were decoded at different resolutions {sorted(resolutions)}; expected one")
    resolution = resolutions.pop()
    certificate = certificate_table(maps, calibration=calibration, knobs=args.knobs.split(","), scales=scales)
    table = bound_vs_attacks(certificate, attack_grid(attacks), resolution=resolution)
    summary = certified_summary(table, gammas=gammas, psnr_targets=args.psnr_targets)
    layers = list(dict.fromkeys(table["layer"]))
    with all_or_none(args.tables_dir, args.figures_dir) as written:
        written.append(write_table(certificate, args.tables_dir / "certificate.csv"))
        written.append(write_table(table, args.tables_dir / "certify_attacks.csv"))
        written.append(write_table(summary, args.tables_dir / "certified_summary.csv"))
        with atomic_path(args.tables_dir / "certified_summary.md") as tmp:
            tmp.write_text(summary_markdown(summary))
        written.append(args.tables_dir / "certified_summary.md")
        for layer in layers:
            written.extend(certificate_figure(table, layer=layer, out=args.figures_dir / f"certificate_{layer}").files)
    print(summary.to_string(index=False))
    return 0
