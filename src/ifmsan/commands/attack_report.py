"""`ifmsan attack-report`: the attack summary table and the attack figures from the attack files of one run."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "Write attack_summary (.csv, .md) and the privacy-utility frontier and reconstruction figures."


def configure(parser: argparse.ArgumentParser) -> None:
    """Declare the options of this verb."""
    parser.add_argument("--attacks", nargs="+", type=Path, required=True, help="attack files from 'ifmsan attack'")
    parser.add_argument(
        "--doubled", nargs="*", type=Path, default=[],
        help="the same attacks with twice the training images and epochs: a verdict holds only if it holds at both",
    )  # fmt: skip
    parser.add_argument("--tables-dir", type=Path, required=True, help="where attack_summary.csv and .md go")
    parser.add_argument("--figures-dir", type=Path, required=True, help="where the attack figures (.png, .pdf) go")
    parser.add_argument("--layer-order", help="comma-separated layer order of the rows (default: first seen)")


def check_doubled(attacks: list, doubled: list, paths: list[str], base_paths: list[str]) -> None:
    """Each 2B file pairs with the B file of its layer and knob: the same run and options, twice the budget."""
    from ifmsan.attacks.summary import check_twin
    from ifmsan.steps.io import attr_text

    base = {
        (attr_text(a.attrs["layer"]), attr_text(a.attrs["knob"])): (a, path)
        for a, path in zip(attacks, base_paths, strict=True)
    }
    for twin, path in zip(doubled, paths, strict=True):
        key = (attr_text(twin.attrs["layer"]), attr_text(twin.attrs["knob"]))
        if key not in base:
            raise ValueError(f"--doubled {path}: layer {key[0]}, knob {key[1]} has no --attacks file at budget B")
        check_twin(twin, base[key][0], twin_name=f"--doubled {path}", base_name=f"--attacks {base[key][1]}")


def run(args: argparse.Namespace) -> int:
    """Read and check every file first, then write the table and the figures, all or none."""
    from ifmsan._shared.atomic import atomic_path
    from ifmsan.attacks.figures import write_attack_figures
    from ifmsan.attacks.summary import attack_summary, attack_summary_markdown, check_same_run
    from ifmsan.commands._args import check_output_dir
    from ifmsan.steps.io import all_or_none, read_attack
    from ifmsan.workflow.plan import ATTACK_TABLE

    check_output_dir("--tables-dir", args.tables_dir)
    check_output_dir("--figures-dir", args.figures_dir)
    attacks = [read_attack(path) for path in args.attacks]
    check_same_run(attacks, [str(p) for p in args.attacks])
    doubled = [read_attack(path) for path in args.doubled]
    check_same_run(doubled, [str(p) for p in args.doubled], what="--doubled")
    check_doubled(attacks, doubled, [str(p) for p in args.doubled], [str(p) for p in args.attacks])
    order = [layer for layer in (args.layer_order or "").split(",") if layer] or None
    frame = attack_summary(attacks, layer_order=order, doubled=doubled)
    markdown = attack_summary_markdown(frame)
    with all_or_none(args.tables_dir, args.figures_dir) as written:
        for suffix, write in (("csv", lambda tmp: frame.to_csv(tmp, index=False)),
                              ("md", lambda tmp: tmp.write_text(markdown))):  # fmt: skip
            path = args.tables_dir / f"{ATTACK_TABLE}.{suffix}"
            with atomic_path(path) as tmp:
                write(tmp)
            written.append(path)
        written.extend(write_attack_figures(attacks, args.figures_dir))
    print(markdown)
    return 0
