"""The `ifmsan` command line: one verb per pipeline step, each a thin shell over the library."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import os
import sys
from collections.abc import Sequence

OPENMP_ADVICE = {"OMP_WAIT_POLICY": "PASSIVE"}
"""Set for the command unless the user chose: idle OpenMP threads sleep, so the fused kernels' threads get the cores
(benchmarks/README.md). Read when torch loads, so it is set before any verb imports torch."""


def use_openmp_advice() -> None:
    """Set OPENMP_ADVICE in this process's environment where the user did not and torch is not loaded yet."""
    if "torch" in sys.modules:  # too late to take effect: leave the environment alone
        return
    for key, value in OPENMP_ADVICE.items():
        os.environ.setdefault(key, value)


MALLOC_MMAP_THRESHOLD = 1 << 30
"""glibc serves each allocation above its mmap threshold (32 MiB at most by default) with a fresh mmap and returns freed
heap tops to the system, so every forward batch of large IFMs faults its pages in again (efficientnet_lite0's bn1
batch of 32: 51 MB). With both thresholds at 1 GiB for the command, such buffers stay on the heap and are reused
instead of being mapped and faulted in for every batch; the output is byte-identical. The user's own
MALLOC_*_THRESHOLD_ or glibc.malloc tunables win."""


def use_malloc_advice() -> bool:
    """Raise glibc's mmap and trim thresholds in this process (MALLOC_MMAP_THRESHOLD); False where they were not set."""
    user = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")
    if any(key in os.environ for key in user) or "glibc.malloc." in os.environ.get("GLIBC_TUNABLES", ""):
        return False  # the user's own malloc settings win
    if not sys.platform.startswith("linux"):
        return False
    import ctypes

    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # noqa: B018 (glibc only: musl's mallopt does nothing)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # malloc.h; freed heap memory is kept too, not returned and refaulted
    trim = mallopt(ctypes.c_int(m_trim_threshold), ctypes.c_int(MALLOC_MMAP_THRESHOLD))
    return bool(trim and mallopt(ctypes.c_int(m_mmap_threshold), ctypes.c_int(MALLOC_MMAP_THRESHOLD)))


def commands() -> dict[str, str]:
    """Verb -> module of ifmsan.commands (HELP, configure(parser), run(args)); `train_mini` is `train-mini`."""
    import pkgutil

    import ifmsan.commands as package

    names = sorted(info.name for info in pkgutil.iter_modules(package.__path__) if not info.name.startswith("_"))
    return {name.replace("_", "-"): f"ifmsan.commands.{name}" for name in names}


def chosen_verb(argv: Sequence[str]) -> str | None:
    """The verb `argv` names (its first word that is not an option), or None: only that verb's options are built."""
    verbs = commands()
    for word in argv:
        if not word.startswith("-"):
            return word if word in verbs else None
    return None


def build_parser(verb: str | None = None) -> argparse.ArgumentParser:
    """The top-level parser with one sub-parser per verb; with `verb`, only that one declares its options.

    A verb's options may need heavy imports (torch, the attack models): a job that runs `ifmsan sweep` should not pay
    for the other verbs' (`ifmsan attack`'s configure alone imports torch and torchvision).
    """
    from ifmsan import __version__

    parser = argparse.ArgumentParser(
        prog="ifmsan",
        description=(
            "Sanitize the input feature maps (IFMs) of CNN layers by sample-and-hold approximation, "
            "and measure the privacy loss it buys (epsilon >= gamma * ln 2)."
        ),
        epilog="Run 'ifmsan VERB --help' for the options of one verb.",
    )
    parser.add_argument("--version", action="version", version=f"ifmsan {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    verbs = parser.add_subparsers(dest="verb", metavar="VERB", required=True)
    for name, module_name in commands().items():
        module = importlib.import_module(module_name)
        sub = verbs.add_parser(name, help=module.HELP, description=module.HELP)
        if verb is None or name == verb:
            module.configure(sub)
            sub.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the arguments, run one verb, and turn expected errors into a one-line message."""
    use_openmp_advice()
    use_malloc_advice()
    words = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(chosen_verb(words))
    args = parser.parse_args(words)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(asctime)s %(levelname)s %(message)s"
    )
    from ifmsan._shared.parentwatch import PARENT_GONE_EXIT, parent_gone, watch_parent
    from ifmsan.steps.fetch import FetchError

    try:
        watch_parent()  # a job whose Snakemake was killed stops instead of finishing unnoticed
        check_limits(args)
        return int(args._run(args) or 0)
    except (ValueError, OSError, KeyError, FetchError) as exc:
        print(f"ifmsan {args.verb}: error: {error_message(exc)}", file=sys.stderr)
        return PARENT_GONE_EXIT if parent_gone() else 2
    except KeyboardInterrupt:
        if not parent_gone():
            raise
        return PARENT_GONE_EXIT


def console() -> None:
    """The `ifmsan` command: main() on sys.argv, then end the process without the interpreter's teardown.

    Tearing down torch, xarray and HDF5 after the work is done is a fixed cost on every DAG job, and a large share of
    a short one (docs/scaling.md has the numbers). Every output is complete and renamed into place before
    main() returns (ifmsan._shared.atomic), so the command flushes its streams and logging and exits at once.
    IFMSAN_NO_FAST_EXIT=1 keeps the normal exit (for debuggers and coverage tools that save data at exit).
    """
    code = main()
    if os.environ.get("IFMSAN_NO_FAST_EXIT"):
        sys.exit(code)
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed or broken pipe: nothing more can reach it
            stream.flush()
    os._exit(code)


def check_limits(args: argparse.Namespace) -> None:
    """Refuse any numeric option above the limit the code honours, and a run that cannot fit in memory, before work."""
    from ifmsan._shared import limits, memory

    if problems := limits.cli_problems(vars(args)):
        raise ValueError("; ".join(problems))
    memory.check_cli(args.verb, vars(args))


def error_message(exc: BaseException) -> str:
    """One line for an expected error: a KeyError's key text; an OSError's reason and file, not '[Errno 28] ...'."""
    if isinstance(exc, KeyError) and exc.args:
        return str(exc.args[0])
    if isinstance(exc, OSError) and exc.strerror:
        names = [str(name) for name in (exc.filename, exc.filename2) if name is not None]
        return ": ".join([exc.strerror, *names])
    return str(exc)


if __name__ == "__main__":  # pragma: no cover
    console()
