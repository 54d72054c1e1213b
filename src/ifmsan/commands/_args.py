"""Checks of command-line numbers and output paths, run first in each verb so bad values fail before any work."""

from __future__ import annotations

import math
from pathlib import Path


def check_int(flag: str, value: int, *, minimum: int, maximum: int | None = None) -> int:
    """The value, or a ValueError naming the flag, the value and the allowed range."""
    allowed = f">= {minimum}" if maximum is None else f"in {minimum}..{maximum}"
    if value < minimum or (maximum is not None and value > maximum):
        raise ValueError(f"{flag} must be an integer {allowed}, got {value}")
    return value


def check_real(
    flag: str, value: float, *, minimum: float, exclusive: bool = False, maximum: float | None = None
) -> float:
    """A finite value in the range, or a ValueError naming the flag, the value and the allowed range."""
    low_ok = value > minimum if exclusive else value >= minimum
    if not math.isfinite(value) or not low_ok or (maximum is not None and value > maximum):
        allowed = f"{'>' if exclusive else '>='} {minimum:g}" + ("" if maximum is None else f" and <= {maximum:g}")
        raise ValueError(f"{flag} must be a finite number {allowed}, got {value}")
    return value


def _first_existing(path: Path) -> Path | None:
    """The path itself or its nearest ancestor that exists (None if none does, e.g. a relative path's root)."""
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return None


def check_output_file(flag: str, path: Path) -> Path:
    """Refuse an output file path that is a directory or lies below a file, before any work."""
    if path.is_dir():
        raise ValueError(f"{flag} {path} is a directory; expected the path of a file to write")
    found = _first_existing(path.parent)
    if found is not None and not found.is_dir():
        raise ValueError(f"{flag} {path}: {found} is a file, not a directory, so nothing can be written below it")
    return path


def check_output_dir(flag: str, path: Path) -> Path:
    """Refuse an output folder that is an existing file or lies below a file, before any work."""
    found = _first_existing(path)
    if found is not None and not found.is_dir():
        what = "is a file" if found == path else f"lies below the file {found}"
        raise ValueError(f"{flag} {path} {what}, not a directory; expected a folder (existing or new)")
    return path
