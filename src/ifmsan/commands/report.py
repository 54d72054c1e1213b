"""`ifmsan report`: paper Tables 1 and 2 and the γ-bound verification report from sweep NetCDF files."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from ifmsan._shared.values import integer, real

HELP = "Write Table 1, Table 2 and the gamma-bound report (CSV + Markdown) from sweep files."

if TYPE_CHECKING:
    import pandas as pd

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
        type=real,
        default=[0.25, 0.5, 1.0, 2.0, 3.0, 4.0],
        metavar="GAMMA",
        help="degrees of sanitization to verify (default: 0.25 0.5 1 2 3 4)",
    )
    parser.add_argument(
        "--decimals",
        type=integer,
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
        "--image-groups",
        type=Path,
        default=None,
        metavar="YAML",
        help="class group of every image, for rows per group in gamma_summary next to the rows over all images: a "
        "YAML/JSON mapping image_id: group, or a workflow config whose images have a group (e.g. "
        "config/imagenet1000.yaml)",
    )
    parser.add_argument(
        "--image-group",
        action="append",
        default=[],
        metavar="ID=GROUP",
        help="class group of one image (repeatable; the workflow passes its config's groups this way); with "
        "--image-groups, these win",
    )
    parser.add_argument(
        "--controller",
        nargs="*",
        type=Path,
        default=[],
        metavar="CSV",
        help="results of 'ifmsan gamma' (the runtime controller) to check against the sweeps' n*(gamma): any "
        "disagreement, or a row without its sweep, is an error and nothing is written",
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
    from ifmsan._shared.atomic import atomic_path
    from ifmsan.commands._args import check_output_dir
    from ifmsan.core.metrics import check_decimals
    from ifmsan.report import gamma as gamma_report
    from ifmsan.report import tables
    from ifmsan.report.consistency import check_controller, check_mixture
    from ifmsan.report.curves import as_curves, load_sweeps
    from ifmsan.report.gamma_markdown import gamma_report_markdown, gamma_summary_markdown
    from ifmsan.report.groups import load_image_groups
    from ifmsan.steps.io import all_or_none
    from ifmsan.workflow.plan import table_names

    decimals = check_decimals(args.decimals, name="--decimals")
    gammas = gamma_report.check_gammas(args.gammas, name="--gammas")
    check_output_dir("--out-dir", args.out_dir)
    image_groups = getattr(args, "image_groups", None)  # a Namespace built by hand (tests) may lack it
    groups = None if image_groups is None else load_image_groups(image_groups)
    for item in getattr(args, "image_group", None) or []:
        image, sep, group = item.partition("=")
        if not sep or not image or not group:
            raise ValueError(f"--image-group must look like ID=GROUP, got {item!r}")
        groups = {**(groups or {}), image: group}
    sweeps = as_curves(load_sweeps(args.sweeps))
    check_mixture(sweeps, allow_mixed=args.allow_mixed)
    checked = 0
    for path in getattr(args, "controller", None) or []:
        checked += check_controller(sweeps, read_controller(path), source=str(path))
    options = {"layer_order": args.layer_order}
    table1 = tables.table1(sweeps, decimals=decimals, **options)
    table2 = tables.table2(sweeps, decimals=decimals, **options)
    report = gamma_report.gamma_report(sweeps, gammas=gammas, **options)
    summary = gamma_report.gamma_summary(report, groups=groups)
    per_image = tables.table1_per_image(sweeps, decimals=decimals, **options)
    texts: dict[str, Callable[[], str]] = {
        "table1.csv": lambda: table1.to_csv(index=False),
        "table1.md": lambda: tables.table1_markdown(table1),
        "gamma_report.csv": lambda: report.to_csv(index=False),
        "gamma_report.md": lambda: gamma_report_markdown(report),
        "gamma_summary.csv": lambda: summary.to_csv(index=False),
        "gamma_summary.md": lambda: gamma_summary_markdown(summary),
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
    if checked:
        log.info("the gamma controller agrees with the sweeps' n*(gamma) in all %d rows checked", checked)
    return 0


def read_controller(path: Path) -> pd.DataFrame:
    """One controller CSV (ifmsan gamma's), or a ValueError naming the file."""
    import pandas as pd

    if path.suffix != ".csv" or not path.is_file():
        raise ValueError(f"--controller {path} is not a .csv file; expected a CSV written by ifmsan gamma")
    try:
        return pd.read_csv(path, dtype={"image_id": str, "model": str, "layer": str, "knob": str})  # ids like 007
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise ValueError(f"--controller {path} is not a readable CSV ({exc})") from None
