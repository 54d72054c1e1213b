"""A memory estimate from the options alone, so a run that cannot fit is refused before any job or work starts.

Each estimate is a lower bound of what the run holds at once (docs/scaling.md, "Limits and memory"): it counts the
arrays whose size the options fix and nothing else, so it refuses only runs that cannot fit, never one that might.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

IMAGE_SIDE = 227
"""The generated images (ifmsan.steps.minidata.IMAGE_SIZE, kept equal by a test): uint8 RGB, held for every image."""
MINIDATA_CLASSES = 10
"""len(ifmsan.steps.minidata.CLASS_NAMES), a layer above this one (a test keeps the two equal)."""
FLOAT_BYTES = 4
SWEEP_COPIES = 3
"""A sweep batch holds the sanitized IFMs, the next layer's activations and the head's gathered IFMs: at least 3x."""


def available_bytes() -> tuple[int, str] | None:
    """The memory this process may use and where that number comes from: IFMSAN_MEMORY_MB, the cgroup limit or
    MemTotal, whichever is smallest; None where none is known (then nothing is refused)."""
    found: list[tuple[int, str]] = []
    if text := os.environ.get("IFMSAN_MEMORY_MB", "").strip():
        try:
            found.append((int(text) * 2**20, "IFMSAN_MEMORY_MB"))
        except ValueError:
            raise ValueError(f"IFMSAN_MEMORY_MB must be a whole number of MiB, got {text!r}") from None
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            value = Path(path).read_text().strip()
        except OSError:
            continue
        if value.isdigit() and int(value) < 2**60:
            found.append((int(value), f"the cgroup limit ({path})"))
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                found.append((int(line.split()[1]) * 1024, "MemTotal in /proc/meminfo"))
    except (OSError, ValueError, IndexError):
        pass
    return min(found) if found else None


def gib(size: float) -> str:
    """'12.3 GiB' for messages."""
    return f"{size / 2**30:.3g} GiB"


def attack_bytes(*, n_train: int, n_test: int, resolution: int) -> int:
    """Images of both splits (uint8 227x227 RGB, twice: rendered one by one, then stacked) plus their decoded-size
    float32 targets: all held at once while the data is made."""
    images = n_train + n_test
    return images * (2 * IMAGE_SIDE * IMAGE_SIDE * 3 + 3 * resolution * resolution * FLOAT_BYTES)


def train_mini_bytes(*, train_per_class: int, test_per_class: int) -> int:
    """alexnet_mini's training and held-out images (uint8 227x227 RGB, 10 classes), all held while it trains."""
    return (train_per_class + test_per_class) * MINIDATA_CLASSES * IMAGE_SIDE * IMAGE_SIDE * 3


def sweep_bytes(*, batch_size: int, ifm_size: int) -> int:
    """SWEEP_COPIES float32 batches of the swept IFM."""
    return SWEEP_COPIES * batch_size * ifm_size * FLOAT_BYTES


def refuse_above(needed: int, what: str, *, limit: tuple[int, str] | None = None) -> None:
    """A ValueError naming `what` (the options and their values) when `needed` exceeds the memory available."""
    limit = limit if limit is not None else available_bytes()
    if limit is not None and needed > limit[0]:
        raise ValueError(
            f"{what} need at least {gib(needed)} of memory (a lower bound: docs/scaling.md, 'Limits and memory'), "
            f"more than the {gib(limit[0])} of {limit[1]}; lower them"
            + (f" or raise {limit[1]}" if limit[1].endswith("mem_mb") else "")
        )


def _ifm_size(path: object, layer: object) -> int | None:
    """Values of one image's IFM of `layer` in an IFM file, from its header; None where the file cannot say."""
    try:
        import netCDF4

        with netCDF4.Dataset(str(path)) as dataset:
            return int(dataset.variables[str(layer)].size)
    except Exception:  # noqa: BLE001 (the verb reads the file itself and names what is wrong with it)
        return None


def check_cli(verb: str, options: Mapping[str, Any]) -> None:
    """Refuse the options of `verb` whose arrays cannot fit in memory (attack: images; sweep: batches)."""
    if verb == "attack" and all(isinstance(options.get(k), int) for k in ("n_train", "n_test", "resolution")):
        needed = attack_bytes(n_train=options["n_train"], n_test=options["n_test"], resolution=options["resolution"])
        what = (
            f"--n-train {options['n_train']} and --n-test {options['n_test']} at --resolution {options['resolution']}"
        )
        refuse_above(needed, what)
    if verb == "train-mini" and all(isinstance(options.get(k), int) for k in ("train_per_class", "test_per_class")):
        needed = train_mini_bytes(train_per_class=options["train_per_class"], test_per_class=options["test_per_class"])
        refuse_above(
            needed, f"--train-per-class {options['train_per_class']} and --test-per-class {options['test_per_class']}"
        )
    if verb == "sweep" and isinstance(options.get("batch_size"), int) and options.get("ifms") is not None:
        size = _ifm_size(options["ifms"], options.get("layer"))
        if size is not None:
            needed = sweep_bytes(batch_size=options["batch_size"], ifm_size=size)
            refuse_above(needed, f"--batch-size {options['batch_size']} of {size}-value IFMs of {options['layer']}")


def config_problems(config: Mapping[str, Any]) -> list[str]:
    """The config's stages whose arrays cannot fit: in the job's declared mem_mb, and on this machine."""
    problems = []
    machine = available_bytes()
    model, mini = config.get("model") or {}, config.get("train_mini") or {}
    train, test = mini.get("train_per_class"), mini.get("test_per_class")
    if model.get("weights") == "train" and isinstance(train, int) and isinstance(test, int):
        what = f"train_mini.train_per_class {train} and train_mini.test_per_class {test}"
        try:
            refuse_above(train_mini_bytes(train_per_class=train, test_per_class=test), what, limit=machine)
        except ValueError as exc:
            problems.append(str(exc))
    for stage, doubled in (("attacks", 1), ("certify", 2)):
        options = config.get(stage) or {}
        n_train, n_test, resolution = (options.get(k) for k in ("n_train", "n_test", "resolution"))
        if not (isinstance(n_train, int) and isinstance(n_test, int) and isinstance(resolution, int)):
            continue
        needed = attack_bytes(n_train=doubled * n_train, n_test=n_test, resolution=resolution)
        limits = [machine] if machine is not None else []
        if isinstance(options.get("mem_mb"), int):
            limits.append((options["mem_mb"] * 2**20, f"{stage}.mem_mb"))
        what = f"{stage}.n_train {n_train} and {stage}.n_test {n_test} at {stage}.resolution {resolution}"
        if doubled > 1:
            what += " (the budget 2B doubles n_train)"
        try:
            refuse_above(needed, what, limit=min(limits) if limits else None)
        except ValueError as exc:
            problems.append(str(exc))
    return problems


__all__ = [
    "attack_bytes",
    "available_bytes",
    "check_cli",
    "config_problems",
    "refuse_above",
    "sweep_bytes",
    "train_mini_bytes",
]
