"""Checksums of files, and validated expected checksums: what downloads, weights and provenance are verified by."""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

CHUNK = 1 << 20
HEX_DIGITS = {"sha256": 64, "sha1": 40}


def file_checksum(path: str | os.PathLike[str], *, algorithm: str = "sha256") -> str:
    """Hex digest of a file, read in chunks, to verify downloads and record provenance."""
    if algorithm not in hashlib.algorithms_guaranteed:
        raise ValueError(f"algorithm must be one of {sorted(hashlib.algorithms_guaranteed)}, got {algorithm!r}")
    digest = hashlib.new(algorithm)
    with Path(path).open("rb") as handle:
        while block := handle.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


def checked_sums(sha256: str | None, sha1: str | None, *, what: str = "") -> dict[str, str]:
    """Validated expected checksums, lower-cased, by algorithm; a ValueError (its text starting with `what`) for
    anything but 64 / 40 hex digits."""
    expected: dict[str, str] = {}
    for algorithm, value in (("sha256", sha256), ("sha1", sha1)):
        if value is None:
            continue
        if not isinstance(value, str) or not re.fullmatch(rf"[0-9a-fA-F]{{{HEX_DIGITS[algorithm]}}}", value):
            raise ValueError(
                f"{what}{' ' if what else ''}{algorithm} must be {HEX_DIGITS[algorithm]} hexadecimal digits, got {value!r}"
            )
        expected[algorithm] = value.lower()
    return expected
