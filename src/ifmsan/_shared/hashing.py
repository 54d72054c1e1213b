"""Checksums of files, and validated expected checksums: what downloads, weights and provenance are verified by."""

from __future__ import annotations

import hashlib
import os
import re
import time
from pathlib import Path

CHUNK = 1 << 20
HEX_DIGITS = {"sha256": 64, "sha1": 40}


_MEMO: dict[tuple[tuple[int, ...], str], str] = {}
"""Digests this process computed, by (file identity, algorithm): in memory only, so no file on disk can vouch for
another file's bytes."""
RACY_NS = 2_000_000_000
"""A file changed less than this long before it is hashed is not memoized: file times tick coarsely (a few ms), so a
write right after the hash could leave the identity unchanged (git's "racily clean" entries)."""


def file_identity(path: str | os.PathLike[str]) -> tuple[int, ...]:
    """What a memoized digest is bound to: device, inode, size, mtime and ctime in ns. A write, a replacement by
    rename or a touch changes one of them; ctime cannot be set from user space."""
    stat = os.stat(path)
    return (stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)


def file_checksum(path: str | os.PathLike[str], *, algorithm: str = "sha256") -> str:
    """Hex digest of a file, read in chunks, to verify downloads and record provenance; hashed once per process and
    file identity (file_identity), so a job that verifies a file and then records its sum reads it once."""
    if algorithm not in hashlib.algorithms_guaranteed:
        raise ValueError(f"algorithm must be one of {sorted(hashlib.algorithms_guaranteed)}, got {algorithm!r}")
    started, identity = time.time_ns(), file_identity(path)
    if (identity, algorithm) in _MEMO:
        return _MEMO[identity, algorithm]
    digest = hashlib.new(algorithm)
    with Path(path).open("rb") as handle:
        while block := handle.read(CHUNK):
            digest.update(block)
    if file_identity(path) == identity and started - max(identity[3], identity[4]) > RACY_NS:
        _MEMO[identity, algorithm] = digest.hexdigest()
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


DIGEST_SUFFIX = ".xxh3"
"""The suffix of a digest file: `<file>.xxh3` beside the file it vouches for (write_digest_file)."""
DIGEST_FORMAT = "ifmsan.xxh3_128"


def file_xxh3(path: str | os.PathLike[str]) -> tuple[str, int]:
    """xxh3-128 hex digest and size of a file, read through a memory map: about 10 GB/s on a warm page cache, so a
    job can check a 233 MB weights file in a few tens of milliseconds (docs/models.md)."""
    import mmap

    import xxhash

    digest = xxhash.xxh3_128()
    with Path(path).open("rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        if size:
            with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
                digest.update(mapped)
    return digest.hexdigest(), size


def digest_path(path: str | os.PathLike[str]) -> Path:
    """Where write_digest_file puts the digest of `path`: `<path>.xxh3` beside it."""
    path = Path(path)
    return path.with_name(path.name + DIGEST_SUFFIX)


def write_digest_file(path: str | os.PathLike[str], *, name: str | None = None) -> Path:
    """Write `<path>.xxh3` (one line of JSON: format, file name, size, xxh3-128) atomically; returns its path.

    `name` is the file name to record (default: path's); a converter that writes into a temporary sibling records
    the final name.
    """
    import json

    from ifmsan._shared.atomic import atomic_path

    digest, size = file_xxh3(path)
    record = {"format": DIGEST_FORMAT, "file": name or Path(path).name, "bytes": size, "xxh3_128": digest}
    target = digest_path(Path(path).with_name(name) if name else path)
    with atomic_path(target, suffix=".part") as tmp:
        tmp.write_text(json.dumps(record, sort_keys=True) + "\n", encoding="utf-8")
    return target


def check_digest_file(path: str | os.PathLike[str], digest_file: str | os.PathLike[str]) -> str:
    """Check a file's bytes against a digest file of write_digest_file; returns the xxh3-128. A ValueError names both
    files and both digests (or what is wrong with the digest file)."""
    import json

    path, digest_file = Path(path), Path(digest_file)
    if not digest_file.is_file():
        raise FileNotFoundError(f"digest file not found: {digest_file} (written beside {path} by its converter)")
    try:
        record = json.loads(digest_file.read_text(encoding="utf-8"))
        expected, size = record["xxh3_128"], record["bytes"]
        if record.get("format") != DIGEST_FORMAT or not isinstance(expected, str) or type(size) is not int:
            raise TypeError("unexpected fields")
        if not re.fullmatch(r"[0-9a-f]{32}", expected) or size < 0:
            raise TypeError("malformed digest or size")
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(
            f"digest file {digest_file} is not a digest of {DIGEST_FORMAT!r} (a JSON line with format, file, bytes and "
            f"32 hex digits of xxh3_128: {type(exc).__name__}: {exc}); make it again with the file it vouches for"
        ) from exc
    found, found_size = file_xxh3(path)
    if (found, found_size) != (expected, size):
        raise ValueError(
            f"{path} does not match its digest file {digest_file}: its bytes have xxh3_128 {found} ({found_size} bytes), "
            f"the digest file records {expected} ({size} bytes); the file was changed after it was written: delete "
            f"{path} and make it again (the workflow does it)"
        )
    return found
