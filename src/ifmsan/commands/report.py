"""`ifmsan report`: paper Tables 1 and 2 and the γ-bound verification report from sweep NetCDF files."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable
from pathlib import Path

HELP = "Write Table 1, Table 2 and the gamma-bound report (CSV + Markdown) from sweep files."

log = logging.getLogger(__name__)


def layer_list(text: str) -> list[str]:
    """Parse --layer-order "conv1,norm1,..." into names; empty names are an error."""
    names = [name.strip() for name in text.split(",")]
    if not text.strip() or any(not name for name in names):
        raise argparse.ArgumentTypeError(f"expected comma-separated layer names like conv1,norm1,pool1; got {text!r}")
    return names


def configure(parser: argparse.ArgumentParser) -> None:
    """Declare the options of this verb."""
    parser.add_argument("--sweeps", nargs="+", type=Path, required=True, metavar="NC", help="sweep NetCDF files")
    parser.add_argument("--out-dir", type=Path, required=True, help="folder for the tables and reports")
    parser.add_argument(
        "--gammas",
        nargs="+",
        type=float,
        default=[0.25, 0.5, 1.0, 2.0, 3.0, 4.0],
        metavar="GAMMA",
        help="degrees of sanitization to verify (default: 0.25 0.5 1 2 3 4)",
    )
    parser.add_argument(
        "--decimals",
        type=int,
        default=4,
        help="decimals p(n) is rounded to before counting distinct values (default 4)",
    )
    parser.add_argument(
        "--layer-order",
        type=layer_list,
        default=None,
        help="row order of the layers, comma-separated (default: AlexNet's conv1..fc8, others after)",
    )
    parser.add_argument(
        "--allow-mixed",
        action="store_true",
        help="compare sweeps of different models, weights (weights_sha, or the seeded source of untrained weights), "
        "configurations (config_hash) or target sources in one report on purpose: each differing key becomes a "
        "column and rows are never merged across it. Without this flag such a mixture is an error naming the files. "
        "Many images of one model, weights and configuration need no flag; one image with two targets or two image "
        "files is always an error",
    )


def run(args: argparse.Namespace) -> int:
    """Validate, compute every table in memory, then write each file atomically."""
    from ifmsan import gamma_report, tables
    from ifmsan.atomic import atomic_path
    from ifmsan.commands._args import check_output_dir
    from ifmsan.consistency import check_mixture
    from ifmsan.curves import as_curves, load_sweeps
    from ifmsan.io import all_or_none
    from ifmsan.metrics import check_decimals
    from ifmsan.plan import table_names

    decimals = check_decimals(args.decimals, name="--decimals")
    gammas = gamma_report.check_gammas(args.gammas, name="--gammas")
    check_output_dir("--out-dir", args.out_dir)
    sweeps = as_curves(load_sweeps(args.sweeps))
    check_mixture(sweeps, allow_mixed=args.allow_mixed)
    options = {"layer_order": args.layer_order}
    table1 = tables.table1(sweeps, decimals=decimals, **options)
    table2 = tables.table2(sweeps, decimals=decimals, **options)
    report = gamma_report.gamma_report(sweeps, gammas=gammas, **options)
    summary = gamma_report.gamma_summary(report)
    per_image = tables.table1_per_image(sweeps, decimals=decimals, **options)
    texts: dict[str, Callable[[], str]] = {
        "table1.csv": lambda: table1.to_csv(index=False),
        "table1.md": lambda: tables.table1_markdown(table1),
        "gamma_report.csv": lambda: report.to_csv(index=False),
        "gamma_report.md": lambda: gamma_report.gamma_report_markdown(report),
        "gamma_summary.csv": lambda: summary.to_csv(index=False),
        "gamma_summary.md": lambda: gamma_report.gamma_summary_markdown(summary),
        "table2.csv": lambda: table2.to_csv(index=False),
        "table2.md": lambda: tables.table2_markdown(table2),
        "table1_per_image.csv": lambda: per_image.to_csv(index=False),
    }
    n_images = 0 if per_image.empty else per_image["image_id"].nunique()
    outputs = {name: texts[name]() for name in table_names(chains=not table2.empty, n_images=n_images)}
    with all_or_none(args.out_dir) as written:  # a failed command leaves none of its files
        for name, text in outputs.items():
            with atomic_path(args.out_dir / name) as tmp:
                tmp.write_text(text, encoding="utf-8")
            written.append(args.out_dir / name)
    log.info("wrote %s to %s", ", ".join(outputs), args.out_dir)
    return 0
